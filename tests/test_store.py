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
from chat.fileio import OsFile, OsFileLayer
from chat.store import Store, User


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


def test_users_json_is_keyed_by_lower_case_name(store, db):
    with_users(store, "Alice", "bob")
    send(store, "bob", "Alice", "hi")
    store.mark_read("alice", "BOB", 1)
    doc = json.loads((db / "users.json").read_text())
    assert doc["version"] == 1
    assert doc["users"]["alice"]["name"] == "Alice"
    assert doc["users"]["alice"]["hash"] == "hash-of-Alice"
    assert doc["read"] == {"alice": {"bob": 1}}


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
    store.mark_read("alice", "carol", 10_000)     # capped at the newest message
    assert store.read_marker("alice", "carol") == 5
    assert store.unread_counts("alice") == {"Bob": 1}
    send(store, "carol", "alice", "new")
    assert store.unread_counts("alice") == {"Bob": 1, "carol": 1}
    with pytest.raises(p.ChatError) as err:
        store.mark_read("alice", "nobody", 1)
    assert err.value.code == p.UNKNOWN_USER
    assert store.unread_counts("nobody") == {}


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
    """The real layer, but the journal's fsync is held until ``gate`` is set."""

    def __init__(self) -> None:
        self.gate, self.entered = threading.Event(), threading.Event()

    def open_append(self, path: str) -> GatedFile:  # type: ignore[override]
        return GatedFile(super().open_append(path), self.gate, self.entered)


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
    """The real layer, noting which thread does each write or sync of the journal."""

    def __init__(self) -> None:
        self.threads: List[str] = []

    def open_append(self, path: str) -> "RecordingFile":  # type: ignore[override]
        return RecordingFile(super().open_append(path), self.threads)


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
        assert os.path.isfile(os.path.join(folder, "users.json"))
        assert os.path.isfile(os.path.join(folder, "messages.jsonl"))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_the_files_are_private(db):
    with Store(db) as s:
        with_users(s, "alice")   # users.json holds password hashes
    for name in ("messages.jsonl", "users.json"):
        assert (db / name).stat().st_mode & 0o077 == 0
