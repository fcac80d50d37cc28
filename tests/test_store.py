"""The store on real files in a temporary folder: accounts, messages, history,
unread counts, read markers, restarts and concurrent senders. No sockets.

Faults (torn writes, corruption, failing disks, power loss) are in
test_store_faults.py.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import threading
from typing import Dict, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat import protocol as p
from chat.dblock import DatabaseLocked
from chat.store import Store, StoreCorrupt, User
from chat.store.fileio import OsFile, OsFileLayer


class Clock:
    """A clock that moves one second a call, so timestamps are predictable."""

    def __init__(self, start: float = 1_700_000_000.5) -> None:
        self._times = itertools.count()
        self.start = start

    def __call__(self) -> float:
        return self.start + next(self._times)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "db"


@pytest.fixture
def store(db):
    s = Store(db, clock=Clock())
    yield s
    s.close()


def with_users(s: Store, *names: str) -> Store:
    for name in names:
        s.add_user(name, f"hash-of-{name}")
    return s


def send(s: Store, sender: str, to: str, text: str, reply_to: Optional[int] = None) -> int:
    msg_id, _ = s.append_message(sender, to, text, reply_to)
    s.wait_durable(msg_id)
    return msg_id


def ids(messages: List[str]) -> List[int]:
    return [json.loads(m)["id"] for m in messages]


# ---------------------------------------------------------------- accounts

def test_users_are_found_in_any_case_and_keep_their_first_spelling(store):
    assert store.add_user("Alice", "h1") == "Alice"
    assert store.get_user("ALICE") == User("Alice", "h1")
    assert store.canonical_name("alice") == "Alice"
    assert store.get_user("bob") is None and store.canonical_name("bob") is None


def test_a_name_taken_in_any_case_is_refused(store):
    store.add_user("Alice", "h1")
    for name in ("Alice", "alice", "aLICE"):
        with pytest.raises(p.ChatError) as err:
            store.add_user(name, "h2")
        assert err.value.code == p.USERNAME_TAKEN
    assert store.get_user("alice").password_hash == "h1"


def test_an_invalid_username_is_refused(store):
    with pytest.raises(p.ChatError) as err:
        store.add_user('bad"name', "h")
    assert err.value.code == p.INVALID_USERNAME
    assert store.usernames() == []


def test_usernames_are_sorted_case_insensitively(store):
    with_users(store, "carol", "Bob", "alice", "Dave")
    assert store.usernames() == ["alice", "Bob", "carol", "Dave"]


def test_set_password_hash(store):
    with_users(store, "Alice")
    store.set_password_hash("ALICE", "new")
    assert store.get_user("alice") == User("Alice", "new")
    with pytest.raises(p.ChatError) as err:
        store.set_password_hash("nobody", "x")
    assert err.value.code == p.UNKNOWN_USER


def test_the_snapshot_is_keyed_by_lower_case_name(store, db):
    with_users(store, "Alice", "bob")
    send(store, "bob", "Alice", "hi")
    store.mark_read("alice", "BOB", 1)
    assert not (db / "users.json").exists()          # three changes, all in the journal
    assert (db / "accounts.jsonl").read_bytes().count(b"\n") == 3
    assert store.compact_accounts()
    doc = json.loads((db / "users.json").read_text())
    assert doc["version"] == 2 and doc["seq"] == 3
    assert doc["users"]["alice"]["name"] == "Alice"
    assert doc["users"]["alice"]["hash"] == "hash-of-Alice"
    assert doc["read"] == {"alice": {"bob": 1}}
    assert (db / "accounts.jsonl").read_bytes() == b""


# ---------------------------------------------------------------- messages

def test_append_assigns_ids_from_one_and_builds_the_wire_json(store):
    with_users(store, "Alice", "bob")
    msg_id, body = store.append_message("alice", "BOB", 'line one\nand "two" \u00e9')
    assert msg_id == 1 and store.last_id == 1
    store.wait_durable(msg_id)
    assert json.loads(body) == {"id": 1, "from": "Alice", "to": "bob",
                                "text": 'line one\nand "two" \u00e9',
                                "ts": 1_700_000_002.5, "reply_to": None}  # third clock call
    assert body.isascii()
    assert store.get_message(1) == p.Message.from_dict(json.loads(body))
    assert store.get_message(2) is None and store.get_message(0) is None
    assert send(store, "bob", "alice", "back") == 2


def test_append_to_an_unknown_user_is_refused(store):
    with_users(store, "alice")
    with pytest.raises(p.ChatError) as err:
        store.append_message("alice", "nobody", "hi")
    assert err.value.code == p.UNKNOWN_USER
    assert store.last_id == 0


def test_reply_to_must_be_a_message_the_sender_sent_or_received(store):
    with_users(store, "alice", "bob", "carol")
    to_bob = send(store, "alice", "bob", "1")
    from_carol = send(store, "carol", "alice", "2")
    between_others = send(store, "bob", "carol", "3")
    assert send(store, "alice", "bob", "re own", reply_to=to_bob) == 4
    assert send(store, "alice", "carol", "re received", reply_to=from_carol) == 5
    for bad in (between_others, 99, 0, -1):
        with pytest.raises(p.ChatError) as err:
            store.append_message("alice", "bob", "no", reply_to=bad)
        assert err.value.code == p.UNKNOWN_MESSAGE
    assert store.last_id == 5
    assert json.loads(store.history("alice", limit=1)[0])["reply_to"] == from_carol


def test_history_follows_the_protocol(store):
    with_users(store, "alice", "bob", "carol")
    plan = [("alice", "bob"), ("bob", "alice"), ("carol", "alice"), ("alice", "bob"),
            ("bob", "carol"), ("alice", "carol"), ("bob", "alice"), ("alice", "bob")]
    for i, (a, b) in enumerate(plan):
        send(store, a, b, f"m{i + 1}")
    mine = [1, 2, 3, 4, 6, 7, 8]
    assert ids(store.history("alice")) == mine
    assert ids(store.history("ALICE", "Bob")) == [1, 2, 4, 7, 8]
    assert ids(store.history("alice", limit=3)) == [6, 7, 8]                # newest 3
    assert ids(store.history("alice", after=2, limit=3)) == [3, 4, 6]       # oldest 3 after 2
    assert ids(store.history("alice", before=7, limit=2)) == [4, 6]         # newest 2 before 7
    assert ids(store.history("alice", "bob", after=4)) == [7, 8]
    assert ids(store.history("alice", after=8)) == []
    assert ids(store.history("alice", before=1)) == []
    assert ids(store.history("alice", after=0, before=3, limit=2)) == [1, 2]  # after wins
    assert ids(store.history("carol", "carol")) == []
    assert store.history("nobody") == [] and store.history("alice", "nobody") == []


HISTORY_USERS = ["alice", "Bob", "carol"]


@pytest.fixture(scope="module")
def history_store(tmp_path_factory):
    """One store with a varied mix of messages (self-messages too) and their records."""
    s = Store(tmp_path_factory.mktemp("history"), clock=Clock())
    with_users(s, *HISTORY_USERS)
    pairs = list(itertools.product(HISTORY_USERS, repeat=2))
    records = []
    for i in range(90):
        a, b = pairs[(i * 7 + i // 5) % len(pairs)]
        msg_id = send(s, a, b, f"text {i}")
        records.append({"id": msg_id, "from": a.lower(), "to": b.lower()})
    yield s, records
    s.close()


def reference_history(records: List[Dict], user: str, with_user: Optional[str],
                      after: Optional[int], before: Optional[int], limit: int) -> List[int]:
    """PROTOCOL-v1's history, written as plainly as possible."""
    mine = [r for r in records if user in (r["from"], r["to"])]
    if with_user is not None:
        mine = [r for r in mine if {r["from"], r["to"]} == {user, with_user}]
    if after is not None:
        return [r["id"] for r in mine if r["id"] > after][:limit]
    if before is not None:
        mine = [r for r in mine if r["id"] < before]
    return [r["id"] for r in mine][-limit:]


@settings(max_examples=300, deadline=None)
@given(user=st.sampled_from(HISTORY_USERS),
       with_user=st.one_of(st.none(), st.sampled_from(HISTORY_USERS)),
       after=st.one_of(st.none(), st.integers(-2, 95)),
       before=st.one_of(st.none(), st.integers(-2, 95)),
       limit=st.integers(1, 40))
def test_history_matches_the_reference(history_store, user, with_user, after, before, limit):
    s, records = history_store
    got = s.history(user.upper(), with_user, after=after, before=before, limit=limit)
    want = reference_history(records, user.lower(), with_user and with_user.lower(),
                             after, before, limit)
    assert ids(got) == want


# ---------------------------------------------------------------- unread and read markers

def test_unread_counts_and_forward_only_markers(store):
    with_users(store, "Alice", "Bob", "carol")
    for _ in range(3):
        send(store, "bob", "alice", "x")
    send(store, "carol", "alice", "y")
    send(store, "alice", "bob", "z")
    assert store.unread_counts("alice") == {"Bob": 3, "carol": 1}
    assert store.unread_counts("bob") == {"Alice": 1}
    store.mark_read("alice", "bob", 2)
    assert store.unread_counts("ALICE") == {"Bob": 1, "carol": 1}
    store.mark_read("alice", "bob", 1)            # backwards: ignored
    assert store.read_marker("alice", "bob") == 2
    store.mark_read("alice", "carol", 10_000)     # capped at carol's newest to alice
    assert store.read_marker("alice", "carol") == 4
    assert store.unread_counts("alice") == {"Bob": 1}
    send(store, "carol", "alice", "new")
    assert store.unread_counts("alice") == {"Bob": 1, "carol": 1}
    with pytest.raises(p.ChatError) as err:
        store.mark_read("alice", "nobody", 1)
    assert err.value.code == p.UNKNOWN_USER
    assert store.unread_counts("nobody") == {}


class CountingLayer(OsFileLayer):
    """The real layer, counting every write: bytes written to any file, and renames."""

    def __init__(self) -> None:
        self.writes = 0

    def open_append(self, path: str) -> "CountingFile":  # type: ignore[override]
        return CountingFile(super().open_append(path), self)

    def create_temp(self, directory: str, prefix: str):  # type: ignore[override]
        path, handle = super().create_temp(directory, prefix)
        return path, CountingFile(handle, self)

    def rename(self, src: str, dst: str) -> None:
        self.writes += 1
        super().rename(src, dst)


class CountingFile:
    def __init__(self, inner: OsFile, layer: CountingLayer) -> None:
        self.inner, self.layer = inner, layer

    def write(self, data: bytes) -> None:
        self.layer.writes += 1
        self.inner.write(data)

    def sync(self) -> None:
        self.inner.sync()

    def close(self) -> None:
        self.inner.close()


def test_a_marker_is_capped_at_the_peers_newest_message_to_the_reader(db):
    files = CountingLayer()
    with with_users(Store(db, files=files), "alice", "bob", "carol") as s:
        from_bob = send(s, "bob", "alice", "1")
        send(s, "alice", "bob", "2")
        send(s, "carol", "alice", "3")
        send(s, "bob", "carol", "4")
        s.mark_read("alice", "bob", 10_000)
        assert s.read_marker("alice", "bob") == from_bob       # not 2, 3 or 4
        assert s.unread_counts("alice") == {"carol": 1}
        s.mark_read("carol", "alice", 10_000)                  # alice never wrote to carol
        assert s.read_marker("carol", "alice") == 0


def test_a_marker_that_does_not_move_writes_nothing(db):
    """`read` with any name must not make markers (and the files) grow with users squared."""
    files = CountingLayer()
    names = [f"user{i}" for i in range(20)]
    with with_users(Store(db, files=files), *names) as s:
        send(s, "user1", "user0", "hi")
        s.mark_read("user0", "user1", 1)
        writes = files.writes
        for reader in names:
            for peer in names:
                s.mark_read(reader, peer, 1)             # only user0/user1 could move
                s.mark_read(reader, peer, 0)
        assert files.writes == writes
        assert s.read_marker("user5", "user6") == 0 and s.read_marker("user0", "user1") == 1
    with Store(db) as again:
        assert again.read_marker("user0", "user1") == 1


# ---------------------------------------------------------------- look-alike names

@pytest.mark.parametrize("lookalike", ["VlCTlM", "vict1m", "VICTIM", "v1ct1m",
                                        "victirn"])
def test_a_name_too_like_an_existing_account_is_refused(store, lookalike):
    store.add_user("victim", "h")
    with pytest.raises(p.ChatError) as err:
        store.add_user(lookalike, "h2")
    assert err.value.code == p.USERNAME_TAKEN
    if lookalike.lower() != "victim":
        assert err.value.message == (f"the name '{lookalike}' is too like the existing "
                                     "account 'victim'")
    assert store.usernames() == ["victim"]
    assert store.add_user("victor", "h3") == "victor"


def test_look_alikes_already_stored_still_load(db):
    db.mkdir()
    users = {"victim": {"name": "victim", "hash": "h1", "created": 1.0},
             "vlctlm": {"name": "VlCTlM", "hash": "h2", "created": 2.0}}
    (db / "users.json").write_text(json.dumps({"version": 1, "users": users, "read": {}}))
    with Store(db) as s:
        assert s.usernames() == ["victim", "VlCTlM"]
        assert s.get_user("vlctlm") == User("VlCTlM", "h2")
        with pytest.raises(p.ChatError) as err:
            s.add_user("VICTlM", "h3")
        assert err.value.code == p.USERNAME_TAKEN


# ---------------------------------------------------------------- storage per sender

def test_sent_bytes_counts_the_json_each_user_authored_across_restarts(db):
    with with_users(Store(db, clock=Clock()), "Alice", "bob") as s:
        assert s.sent_bytes("alice") == 0
        bodies = [s.append_message("alice", "bob", "x" * n)[1] for n in (1, 10, 100)]
        s.wait_durable(s.last_id)
        body = s.append_message("bob", "alice", "back")[1]
        s.wait_durable(s.last_id)
        assert s.sent_bytes("ALICE") == sum(len(b) for b in bodies)
        assert s.sent_bytes("bob") == len(body)
        assert s.sent_bytes("nobody") == 0
    with Store(db) as again:
        assert again.sent_bytes("alice") == sum(len(b) for b in bodies)
        assert again.sent_bytes("bob") == len(body)


# ---------------------------------------------------------------- restart

def test_restart_keeps_users_messages_markers_and_the_id_sequence(db):
    with Store(db, clock=Clock()) as s:
        with_users(s, "Alice", "bob")
        first = [send(s, "alice", "bob", f"m{i}") for i in range(5)]
        reply = send(s, "bob", "alice", "re", reply_to=first[0])
        s.mark_read("bob", "alice", 3)
        before = s.history("alice")
    with Store(db, clock=Clock()) as s:
        assert s.usernames() == ["Alice", "bob"]
        assert s.get_user("alice") == User("Alice", "hash-of-Alice")
        assert s.history("alice") == before
        assert s.read_marker("bob", "alice") == 3
        assert s.unread_counts("bob") == {"Alice": 2}
        assert s.last_id == reply == 6
        assert send(s, "alice", "bob", "after restart", reply_to=reply) == 7
    with Store(db) as s:
        assert ids(s.history("bob")) == list(range(1, 8))


def test_close_commits_what_is_pending_and_is_idempotent(db):
    s = with_users(Store(db), "alice", "bob")
    for i in range(50):
        s.append_message("alice", "bob", f"m{i}")   # nobody waits
    s.close()
    s.close()
    with pytest.raises(p.ChatError) as err:
        s.append_message("alice", "bob", "too late")
    assert err.value.code == p.SERVER_ERROR
    s.wait_durable(50)                                # already durable: returns
    with Store(db) as again:
        assert again.last_id == 50


def test_wait_durable_for_an_id_never_handed_out(store):
    with pytest.raises(ValueError):
        store.wait_durable(1)


# ---------------------------------------------------------------- a version 1 folder

#: A folder as the store wrote it before the accounts journal: users.json version 1
#: (rewritten whole on every change) and the message journal. Carol's marker for bob
#: is one that store allowed (capped at the newest id of all, not bob's to her).
V1_USERS = (
    b'{"read":{"alice":{"bob":2},"bob":{"alice":4},"carol":{"bob":3}},"users":{"alice":'
    b'{"created":1700000000.5,"hash":"$scrypt$n=16384,r=8,p=1$c2FsdA$aGFzaA","name":"Alice"},'
    b'"bob":{"created":1700000001.5,"hash":"$scrypt$n=16384,r=8,p=1$c2FsdDI$aGFzaDI","name":'
    b'"bob"},"carol":{"created":1700000002.5,"hash":"h-c","name":"Carol"}},"version":1}\n')
V1_JOURNAL = (
    b'{"m":{"id":1,"from":"Alice","to":"bob","text":"hi bob","ts":1700000003.5,'
    b'"reply_to":null},"c":207435947}\n'
    b'{"m":{"id":2,"from":"bob","to":"Alice","text":"hi \\"Alice\\" \\u00e9","ts":1700000004.5,'
    b'"reply_to":null},"c":1052967601}\n'
    b'{"m":{"id":3,"from":"Carol","to":"Alice","text":"yo","ts":1700000005.5,'
    b'"reply_to":null},"c":3040008166}\n'
    b'{"m":{"id":4,"from":"Alice","to":"bob","text":"second","ts":1700000006.5,'
    b'"reply_to":null},"c":1137175088}\n')


def check_v1_content(s: Store) -> None:
    assert s.usernames() == ["Alice", "bob", "Carol"]
    assert s.get_user("ALICE") == User("Alice", "$scrypt$n=16384,r=8,p=1$c2FsdA$aGFzaA")
    assert ids(s.history("alice")) == [1, 2, 3, 4]
    assert s.get_message(2).text == 'hi "Alice" \u00e9'
    assert s.read_marker("alice", "bob") == 2 and s.read_marker("carol", "bob") == 3
    assert s.unread_counts("bob") == {}


def test_a_version_1_folder_opens_unchanged_and_keeps_working(db):
    db.mkdir()
    (db / "users.json").write_bytes(V1_USERS)
    (db / "messages.jsonl").write_bytes(V1_JOURNAL)
    with Store(db, clock=Clock()) as s:
        check_v1_content(s)
        assert s.unread_counts("alice") == {"Carol": 1}
        s.add_user("dave", "h-d")
        s.set_password_hash("bob", "h-b2")
        s.mark_read("alice", "carol", 10)
        assert send(s, "dave", "alice", "new") == 5
    assert (db / "users.json").read_bytes() == V1_USERS      # the changes are in the journal
    assert (db / "messages.jsonl").read_bytes().startswith(V1_JOURNAL)
    for _ in range(2):
        with Store(db) as s:
            assert s.usernames() == ["Alice", "bob", "Carol", "dave"]
            assert ids(s.history("alice")) == [1, 2, 3, 4, 5]
            assert s.get_user("bob").password_hash == "h-b2"
            assert s.read_marker("alice", "carol") == 3
            assert s.unread_counts("alice") == {"dave": 1}
            assert s.read_marker("carol", "bob") == 3
            assert s.compact_accounts()
        doc = json.loads((db / "users.json").read_bytes())
        assert doc["version"] == 2 and doc["seq"] == 3


# ---------------------------------------------------------------- one owner per folder

def test_a_second_store_on_an_open_folder_is_refused_and_repairs_nothing(db):
    """The second opener must not take the first one's write in progress for a torn
    tail and cut it away: it is refused before it reads or changes any file."""
    first = with_users(Store(db), "alice", "bob")
    send(first, "alice", "bob", "stored")
    half = b'{"m":{"id":2,"from":"alice","to":"bob","te'      # a write in progress
    with open(db / "messages.jsonl", "ab") as journal:
        journal.write(half)
    before = {path.name: path.read_bytes() for path in db.iterdir()}
    with pytest.raises(DatabaseLocked) as err:
        Store(db)
    assert str(db) in str(err.value) and f"process {os.getpid()}" in str(err.value)
    assert {path.name: path.read_bytes() for path in db.iterdir()} == before
    first.close()
    with Store(db) as again:                                 # the owner is gone: it opens
        assert again.last_id == 1
    assert (db / "messages.jsonl").read_bytes() == before["messages.jsonl"][:-len(half)]


def test_a_failed_open_gives_the_folder_back(db):
    db.mkdir()
    (db / "users.json").write_bytes(b"not json")
    with pytest.raises(StoreCorrupt):
        Store(db)
    (db / "users.json").unlink()
    with Store(db) as s:                                     # not locked by the failed one
        with_users(s, "alice")


# ---------------------------------------------------------------- concurrency

def test_concurrent_senders_get_unique_contiguous_durable_ids(db):
    threads_n, each = 8, 150
    names = [f"user{i}" for i in range(threads_n)]
    s = with_users(Store(db), *names)
    got: Dict[int, List[int]] = {}
    errors: List[BaseException] = []

    def sender(k: int) -> None:
        mine = got.setdefault(k, [])
        try:
            for i in range(each):
                msg_id, _ = s.append_message(names[k], names[(k + 1) % threads_n], f"{k}:{i}")
                s.wait_durable(msg_id)
                mine.append(msg_id)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    all_ids = sorted(i for mine in got.values() for i in mine)
    assert all_ids == list(range(1, threads_n * each + 1))
    assert all(mine == sorted(mine) for mine in got.values())
    assert s.stats()["commits"] <= threads_n * each
    s.close()
    with Store(db) as again:
        for k, mine in got.items():
            history = again.history(names[k], names[(k + 1) % threads_n], limit=1000)
            texts = {m["id"]: m["text"] for m in map(json.loads, history)}
            assert [texts[i] for i in mine] == [f"{k}:{i}" for i in range(each)]


class GatedFile:
    """A journal whose fsync waits for the test to open the gate."""

    def __init__(self, inner: OsFile, gate: threading.Event, entered: threading.Event) -> None:
        self.inner, self.gate, self.entered = inner, gate, entered

    def write(self, data: bytes) -> None:
        self.inner.write(data)

    def sync(self) -> None:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        self.inner.sync()

    def close(self) -> None:
        self.inner.close()


class GatedLayer(OsFileLayer):
    """The real layer, but the message journal's fsync is held until ``gate`` is set."""

    def __init__(self) -> None:
        self.gate, self.entered = threading.Event(), threading.Event()

    def open_append(self, path: str):  # type: ignore[override]
        inner = super().open_append(path)
        if not path.endswith("messages.jsonl"):
            return inner
        return GatedFile(inner, self.gate, self.entered)


def test_only_durable_messages_are_shown_and_waiters_share_one_fsync(db):
    files = GatedLayer()
    s = with_users(Store(db, files=files), "alice", "bob")
    first, _ = s.append_message("alice", "bob", "first")
    assert files.entered.wait(10)          # the committer is inside fsync for [first]
    later = [s.append_message("bob", "alice", f"m{i}")[0] for i in range(100)]
    assert s.history("alice") == [] and s.unread_counts("bob") == {}
    assert s.get_message(first) is None
    waiter_done = threading.Event()
    threading.Thread(target=lambda: (s.wait_durable(later[-1]), waiter_done.set()),
                     daemon=True).start()
    assert not waiter_done.wait(0.05)
    files.gate.set()
    s.wait_durable(later[-1])
    assert waiter_done.wait(5)
    assert ids(s.history("alice", limit=1000)) == [first] + later
    assert s.unread_counts("alice") == {"bob": 100}
    assert s.stats()["commits"] == 2       # [first], then the 100 queued meanwhile, in one
    s.close()


class RecordingLayer(OsFileLayer):
    """The real layer, noting which thread does each write or sync of the message journal."""

    def __init__(self) -> None:
        self.threads: List[str] = []

    def open_append(self, path: str):  # type: ignore[override]
        inner = super().open_append(path)
        if not path.endswith("messages.jsonl"):
            return inner
        return RecordingFile(inner, self.threads)


class RecordingFile:
    def __init__(self, inner: OsFile, threads: List[str]) -> None:
        self.inner, self.threads = inner, threads

    def write(self, data: bytes) -> None:
        self.threads.append(threading.current_thread().name)
        self.inner.write(data)

    def sync(self) -> None:
        self.threads.append(threading.current_thread().name)
        self.inner.sync()

    def close(self) -> None:
        self.inner.close()


def test_append_does_no_io_so_its_cost_does_not_grow_with_the_store(db):
    """Append only queues a line and extends the indexes; the journal is written by the
    committer alone, so a sender never waits on the disk, however large the store."""
    files = RecordingLayer()
    s = with_users(Store(db, files=files), "alice", "bob")
    for i in range(3000):
        s.append_message("alice", "bob", f"m{i}")
    s.wait_durable(3000)
    assert files.threads and set(files.threads) == {"store-committer"}
    assert s.stats()["committed_bytes"] == os.path.getsize(db / "messages.jsonl")
    s.close()


def test_path_objects_and_strings_both_work(tmp_path):
    for folder in (tmp_path / "a", str(tmp_path / "b")):
        with Store(folder) as s:
            with_users(s, "alice")
        assert os.path.isfile(os.path.join(folder, "accounts.jsonl"))
        assert os.path.isfile(os.path.join(folder, "messages.jsonl"))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_the_files_are_private(db):
    with Store(db) as s:
        with_users(s, "alice")   # the accounts journal and users.json hold password hashes
        s.compact_accounts()
        with_users(s, "bob")
    names = sorted(path.name for path in db.iterdir())
    assert names == ["LOCK", "accounts.jsonl", "messages.jsonl", "users.json"]
    for name in names:
        assert (db / name).stat().st_mode & 0o077 == 0


def test_append_many_answers_each_send_in_order_and_the_bad_ones_with_their_error(store):
    store.add_user("alice", "h")
    store.add_user("bob", "h")
    outcomes = store.append_many([
        ("alice", "bob", "one", None, None),
        ("alice", "nobody", "lost", None, None),
        ("alice", "bob", "two", None, "n-1"),
        ("alice", "bob", "two again", None, "n-1"),     # a resend: the stored one
        ("alice", "#nowhere", "x", None, None),
    ])
    first, unknown, second, resend, room = outcomes
    assert first[0] == 1 and first[2] is True and '"text":"one"' in first[1]
    assert isinstance(unknown, p.ChatError) and unknown.code == p.UNKNOWN_USER
    assert second[0] == 2 and second[2] is True
    assert resend == (2, second[1], False)
    assert isinstance(room, p.ChatError) and room.code == p.UNKNOWN_ROOM
    store.wait_durable(2)
    assert [json.loads(m)["text"] for m in store.history("bob")] == ["one", "two"]
