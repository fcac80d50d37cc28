"""Every durability promise of the store, tested with injected faults.

- a journal (messages or accounts) cut short inside its last record (a torn
  write) is repaired;
- damage with good records after it is refused, the files untouched;
- a compaction of the accounts journal into users.json loses nothing
  whichever step of it fails;
- a failed account change changes nothing and is not acknowledged;
- a power cut loses nothing that was acknowledged (a simulated disk that
  forgets whatever was not fsynced), at random moments and at every step of
  account changes and compactions;
- a failing or full disk makes senders fail instead of acknowledging, loses
  only that batch, and the store recovers by itself.

The fault layers are subclasses of the file layer, the seam the store does
all its I/O through; everything else is the real store on real files.
"""
from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import random
import threading
import time
import zlib
from typing import Callable, Dict, List, Optional, Tuple

import pytest

from chat import protocol as p
from chat.dblock import LOCK_FILE
from chat.store import ACCOUNTS_FILE, JOURNAL_FILE, USERS_FILE, Store, StoreCorrupt
from chat.store.fileio import CHUNK_BYTES, FileLayer, OsFile, OsFileLayer

N_MESSAGES = 6


def disk_error() -> OSError:
    return OSError(errno.EIO, "injected I/O error")


def build_db(folder) -> Tuple[bytes, bytes, List[str]]:
    """A small database: (journal bytes, users.json bytes, message JSON by id - 1).

    Its accounts are all in the snapshot (users.json): the accounts journal is empty.
    """
    with Store(folder) as s:
        s.add_user("Alice", "h-a")
        s.add_user("bob", "h-b")
        for i in range(N_MESSAGES):
            sender, to = ("alice", "bob") if i % 2 else ("bob", "ALICE")
            msg_id, _ = s.append_message(sender, to, f"message {i} \u00e9\n\"quoted\"")
            s.wait_durable(msg_id)
        s.mark_read("alice", "bob", 3)
        bodies = s.history("alice", limit=1000)
        assert s.compact_accounts()
    assert (folder / ACCOUNTS_FILE).read_bytes() == b""
    return ((folder / JOURNAL_FILE).read_bytes(), (folder / USERS_FILE).read_bytes(), bodies)


@pytest.fixture
def original(tmp_path):
    return build_db(tmp_path / "original")


def write_db(folder, journal: bytes, users: bytes, accounts: Optional[bytes] = None) -> None:
    folder.mkdir()
    (folder / JOURNAL_FILE).write_bytes(journal)
    (folder / USERS_FILE).write_bytes(users)
    if accounts is not None:
        (folder / ACCOUNTS_FILE).write_bytes(accounts)


def line_starts(journal: bytes) -> List[int]:
    starts = [0]
    for i, byte in enumerate(journal[:-1]):
        if byte == 0x0A:
            starts.append(i + 1)
    return starts


# ---------------------------------------------------------------- (a) torn last record

def test_a_journal_cut_anywhere_in_its_last_record_loses_only_that_record(
        tmp_path, original, caplog):
    journal, users, bodies = original
    last = line_starts(journal)[-1]
    for cut in range(last + 1, len(journal)):    # up to: all but the newline
        folder = tmp_path / f"cut{cut}"
        write_db(folder, journal[:cut], users)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="chat.store"):
            s = Store(folder)
        try:
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1, warnings
            assert str(folder / JOURNAL_FILE) in warnings[0]
            assert f"byte offset {last}" in warnings[0]
            assert s.last_id == N_MESSAGES - 1
            assert s.history("alice", limit=1000) == bodies[:-1]
            assert s.read_marker("alice", "bob") == 3
            msg_id, body = s.append_message("bob", "alice", "next")
            s.wait_durable(msg_id)
            assert msg_id == N_MESSAGES
        finally:
            s.close()
        repaired = (folder / JOURNAL_FILE).read_bytes()
        assert repaired.startswith(journal[:last]) and repaired.count(b"\n") == N_MESSAGES
    with Store(folder) as s:                     # and the repaired journal replays cleanly
        assert s.history("alice", limit=1000)[:-1] == bodies[:-1]


@pytest.mark.parametrize("tail", [
    b'{"m":{"id":7,"from":"bob","to":"Alice","text":"x","ts":1.0,"reply_to":null},"c":1}\n',
    b"\0\0\0\0\0\0\0\0",
    b"garbage\nmore garbage\n\xff\xfe\n",
], ids=["bad-crc-with-newline", "zeros", "several-bad-lines"])
def test_a_damaged_tail_with_nothing_good_after_it_is_cut_away(tmp_path, original, caplog, tail):
    journal, users, bodies = original
    folder = tmp_path / "db"
    write_db(folder, journal + tail, users)
    with caplog.at_level(logging.WARNING, logger="chat.store"):
        with Store(folder) as s:
            assert s.last_id == N_MESSAGES
            assert s.history("alice", limit=1000) == bodies
    assert f"byte offset {len(journal)}" in caplog.text
    assert (folder / JOURNAL_FILE).read_bytes() == journal


# ---------------------------------------------------------------- (b) damage in the middle

def test_a_flipped_byte_in_a_middle_record_is_refused_and_the_file_left_alone(
        tmp_path, original):
    journal, users, _ = original
    starts = line_starts(journal)
    line = 3
    start, end = starts[line - 1], starts[line]   # the record and its newline
    for offset in range(start, end):
        damaged = bytearray(journal)
        damaged[offset] ^= 0x01
        folder = tmp_path / f"flip{offset}"
        write_db(folder, bytes(damaged), users)
        with pytest.raises(StoreCorrupt) as err:
            Store(folder)
        path = str(folder / JOURNAL_FILE)
        assert (err.value.path, err.value.line, err.value.offset) == (path, line, start)
        assert path in str(err.value) and f"line {line}" in str(err.value)
        assert (folder / JOURNAL_FILE).read_bytes() == bytes(damaged)
        assert (folder / USERS_FILE).read_bytes() == users


def test_a_record_out_of_sequence_is_refused(tmp_path, original):
    journal, users, _ = original
    starts = line_starts(journal)
    duplicated = journal + journal[starts[-1]:]    # intact, but its id repeats
    folder = tmp_path / "db"
    write_db(folder, duplicated, users)
    with pytest.raises(StoreCorrupt) as err:
        Store(folder)
    assert err.value.line == N_MESSAGES + 1 and err.value.offset == len(journal)
    assert "out of sequence" in err.value.reason
    assert (folder / JOURNAL_FILE).read_bytes() == duplicated


@pytest.mark.parametrize("users", [
    b'{"version": 1, "users": {"alice": {"name": "Alice", "ha',
    b"\xff\xfe not utf-8",
    b"[]",
    b'{"version": 3, "seq": 0, "users": {}, "read": {}}',
    b'{"version": 2, "users": {}, "read": {}}',
    b'{"version": 2, "seq": -1, "users": {}, "read": {}}',
    b'{"version": 1, "users": {"alice": {"name": "Bob", "hash": "h"}}, "read": {}}',
    b'{"version": 1, "users": {}, "read": {"alice": {"bob": "3"}}}',
    b"",
], ids=["truncated", "not-utf8", "not-an-object", "version", "no-seq", "negative-seq",
        "key-mismatch", "marker", "empty"])
def test_a_bad_users_file_is_refused_never_overwritten(tmp_path, original, users):
    journal = original[0]
    folder = tmp_path / "db"
    write_db(folder, journal, users)
    with pytest.raises(StoreCorrupt) as err:
        Store(folder)
    assert err.value.path == str(folder / USERS_FILE)
    assert (folder / USERS_FILE).read_bytes() == users
    assert (folder / JOURNAL_FILE).read_bytes() == journal


# ---------------------------------------------------------------- (b2) room messages, nonces

@pytest.fixture
def with_nonces(tmp_path, original) -> Tuple[bytes, bytes, bytes]:
    """``original`` plus a room and messages to it and to users, some with nonces:
    (journal, users, accounts)."""
    journal, users, _ = original
    folder = tmp_path / "nonces"
    write_db(folder, journal, users)
    with Store(folder) as s:
        s.create_room("alice", "#General")
        s.join_room("bob", "#general")
        for i, (to, nonce) in enumerate([("#general", "n\"1\u00e9"), ("alice", None),
                                         ("#GENERAL", None), ("alice", "n2"),
                                         ("#general", "n3")]):
            s.wait_durable(s.append("bob", to, f"@alice {i}", nonce=nonce)[0])
    return ((folder / JOURNAL_FILE).read_bytes(), users, (folder / ACCOUNTS_FILE).read_bytes())


def check_nonces(s: Store, upto: int) -> None:
    """What ``with_nonces`` holds up to its message ``upto`` (ids N_MESSAGES + 1 on)."""
    first = N_MESSAGES + 1
    for nonce, msg_id in (('n"1\u00e9', first), ("n2", first + 3), ("n3", first + 4)):
        msg_id2, _, fresh = s.append("bob", "alice", "resend", nonce=nonce)
        assert fresh == (msg_id > upto) and (fresh or msg_id2 == msg_id)
    assert s.room_counts("alice", "#general") == (len({first, first + 2, first + 4}
                                                      & set(range(first, upto + 1))),) * 2


def test_a_journal_torn_in_a_nonce_record_loses_only_that_record(tmp_path, with_nonces):
    journal, users, accounts = with_nonces
    last = line_starts(journal)[-1]
    assert b'"n":"n3"' in journal[last:]
    for cut in range(last + 1, len(journal), 5):
        folder = tmp_path / f"cut{cut}"
        write_db(folder, journal[:cut], users, accounts)
        with Store(folder) as s:
            assert s.last_id == N_MESSAGES + 4
            check_nonces(s, N_MESSAGES + 4)
    with Store(tmp_path / f"cut{cut}") as s:      # the torn nonce was sent again, and kept
        assert s.append("bob", "#general", "x", nonce="n3")[:3:2] == (N_MESSAGES + 5, False)


def test_a_flipped_byte_in_a_middle_nonce_record_is_refused(tmp_path, with_nonces):
    journal, users, accounts = with_nonces
    starts = line_starts(journal)
    line = N_MESSAGES + 1                          # the first, with a nonce that needs escapes
    assert b'"n":"n\\"1\\u00e9"' in journal[starts[line - 1]:starts[line]]
    for offset in range(starts[line - 1], starts[line], 4):
        damaged = bytearray(journal)
        damaged[offset] ^= 0x01
        folder = tmp_path / f"flip{offset}"
        write_db(folder, bytes(damaged), users, accounts)
        with pytest.raises(StoreCorrupt) as err:
            Store(folder)
        assert (err.value.line, err.value.offset) == (line, starts[line - 1])
        assert (folder / JOURNAL_FILE).read_bytes() == bytes(damaged)


def test_a_message_to_a_room_the_accounts_do_not_know_is_refused(tmp_path, with_nonces):
    journal, users, _ = with_nonces
    folder = tmp_path / "db"
    write_db(folder, journal, users)               # the accounts journal with the room is gone
    with pytest.raises(StoreCorrupt) as err:
        Store(folder)
    assert err.value.line == N_MESSAGES + 1 and "no room" in err.value.reason


def test_the_nonce_of_a_lost_message_is_forgotten(tmp_path):
    files, now = FullDisk(), FakeTime()
    with Store(tmp_path / "db", files=files, monotonic=now) as s:
        s.add_user("alice", "h")
        s.add_user("bob", "h")
        files.full = True
        lost, _, _ = s.append("alice", "bob", "lost", nonce="n")
        with pytest.raises(p.ChatError):
            s.wait_durable(lost)
        files.full = False
        now.now += 1
        stored, _, fresh = s.append("alice", "bob", "stored", nonce="n")
        assert fresh and stored == lost + 1
        s.wait_durable(stored)
        assert s.append("alice", "bob", "again", nonce="n")[:3:2] == (stored, False)


# ---------------------------------------------------------------- (c) atomic replace

class FaultyFile:
    """A real file whose write or fsync reports an error when ``fails(op)`` says so."""

    def __init__(self, inner: OsFile, fails: Callable[[str], bool]) -> None:
        self.inner, self.fails = inner, fails

    def write(self, data: bytes) -> None:
        self.inner.write(data)
        if self.fails("write"):
            raise disk_error()

    def sync(self) -> None:
        self.inner.sync()
        if self.fails("fsync"):
            raise disk_error()

    def close(self) -> None:
        self.inner.close()


class FaultyReplace(OsFileLayer):
    """The real layer, failing at one step of replacing ``target`` once armed."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.step: Optional[str] = None
        self.renamed = ""

    def create_temp(self, directory: str, prefix: str):
        path, handle = super().create_temp(directory, prefix)
        armed = prefix.startswith(self.target)
        return path, FaultyFile(handle, lambda op: armed and self.step == f"after temp {op}")

    def rename(self, src: str, dst: str) -> None:
        armed = dst.endswith(self.target)
        if armed and self.step == "before replace":
            raise disk_error()
        super().rename(src, dst)
        self.renamed = dst
        if armed and self.step == "after replace":
            raise disk_error()

    def fsync_dir(self, directory: str) -> None:
        if self.renamed.endswith(self.target) and self.step == "before dir fsync":
            raise disk_error()
        super().fsync_dir(directory)


REPLACE_STEPS = {"after temp write": False, "after temp fsync": False, "before replace": False,
                 "after replace": True, "before dir fsync": True}  # step -> new file in place


@pytest.mark.parametrize("target", [USERS_FILE, ACCOUNTS_FILE])
@pytest.mark.parametrize("step", list(REPLACE_STEPS))
def test_a_compaction_failing_at_any_step_loses_nothing(tmp_path, original, step, target):
    """Whichever step of replacing the snapshot or the journal fails, the store goes on,
    the next changes are stored, and the folder holds every change after a restart."""
    journal, users, _ = original
    folder = tmp_path / "db"
    write_db(folder, journal, users)
    files = FaultyReplace(target)
    s = Store(folder, files=files)
    s.add_user("carol", "h-c")
    s.set_password_hash("bob", "h-b2")
    files.step = step
    s.compact_accounts()
    files.step = None
    s.add_user("dave", "h-d")                     # the journal still takes changes
    msg_id, _ = s.append_message("carol", "alice", "hi")
    s.wait_durable(msg_id)
    s.mark_read("alice", "carol", msg_id)
    s.close()
    with Store(folder) as again:
        assert again.usernames() == ["Alice", "bob", "carol", "dave"]
        assert again.get_user("bob").password_hash == "h-b2"
        assert again.read_marker("alice", "bob") == 3
        assert again.read_marker("alice", "carol") == msg_id
    assert sorted(os.listdir(folder)) == [LOCK_FILE, ACCOUNTS_FILE, JOURNAL_FILE, USERS_FILE]
    snapshot = json.loads((folder / USERS_FILE).read_bytes())
    # the original snapshot holds changes 1-3 (two sign-ups, a marker); carol's and bob's
    # are 4 and 5
    assert snapshot["seq"] == (5 if target == ACCOUNTS_FILE or REPLACE_STEPS[step] else 3)


class FailingAccounts(OsFileLayer):
    """The real layer, whose accounts journal fails at ``op`` (write or fsync) once set."""

    def __init__(self) -> None:
        self.op: Optional[str] = None

    def open_append(self, path: str):  # type: ignore[override]
        inner = super().open_append(path)
        if not path.endswith(ACCOUNTS_FILE):
            return inner
        return FaultyFile(inner, lambda op: op == self.op)


@pytest.mark.parametrize("op", ["write", "fsync"])
def test_a_failed_account_change_changes_nothing(tmp_path, original, op, caplog):
    journal, users, _ = original
    folder = tmp_path / "db"
    write_db(folder, journal, users)
    files = FailingAccounts()
    s = Store(folder, files=files)
    size = os.path.getsize(folder / ACCOUNTS_FILE)
    files.op = op
    for change in (lambda: s.add_user("carol", "h-c"),
                   lambda: s.set_password_hash("bob", "h-new"),
                   lambda: s.mark_read("bob", "alice", 4)):
        with pytest.raises(p.ChatError) as err:
            change()
        assert err.value.code == p.SERVER_ERROR
    assert s.get_user("carol") is None and s.usernames() == ["Alice", "bob"]
    assert s.get_user("bob").password_hash == "h-b"
    assert s.read_marker("bob", "alice") == 0
    assert os.path.getsize(folder / ACCOUNTS_FILE) == size     # cut back
    files.op = None
    s.add_user("carol", "h-c")                    # the name was given back
    s.mark_read("bob", "alice", 2)
    s.close()
    assert "h-c" not in caplog.text and "h-new" not in caplog.text
    with Store(folder) as again:
        assert again.usernames() == ["Alice", "bob", "carol"]
        assert again.get_user("bob").password_hash == "h-b"
        assert again.read_marker("bob", "alice") == 2


# ---------------------------------------------------------------- (c2) the accounts journal

@pytest.fixture
def with_changes(tmp_path, original) -> Tuple[bytes, bytes, bytes]:
    """``original`` plus account changes in the accounts journal: (journal, users, accounts)."""
    journal, users, _ = original
    folder = tmp_path / "changes"
    write_db(folder, journal, users)
    with Store(folder) as s:
        s.add_user("carol", "h-c")
        s.mark_read("bob", "alice", 4)
        s.set_password_hash("alice", "h-a2")
        s.add_user("dave", "h-d")
    return journal, users, (folder / ACCOUNTS_FILE).read_bytes()


def test_an_accounts_journal_cut_in_its_last_change_loses_only_that_change(
        tmp_path, with_changes, caplog):
    journal, users, accounts = with_changes
    assert accounts.count(b"\n") == 4
    last = line_starts(accounts)[-1]
    for cut in range(last + 1, len(accounts)):
        folder = tmp_path / f"cut{cut}"
        write_db(folder, journal, users, accounts[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="chat.store"):
            s = Store(folder)
        with s:
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1, warnings
            assert str(folder / ACCOUNTS_FILE) in warnings[0]
            assert f"byte offset {last}" in warnings[0]
            assert s.usernames() == ["Alice", "bob", "carol"]    # dave's sign-up was torn
            assert s.get_user("alice").password_hash == "h-a2"
            assert s.read_marker("bob", "alice") == 4
            s.add_user("dave", "h-d2")
        assert (folder / ACCOUNTS_FILE).read_bytes().startswith(accounts[:last])
        with Store(folder) as again:
            assert again.get_user("dave").password_hash == "h-d2"


def test_a_flipped_byte_in_a_middle_change_is_refused_and_the_files_left_alone(
        tmp_path, with_changes):
    journal, users, accounts = with_changes
    starts = line_starts(accounts)
    line = 2
    start, end = starts[line - 1], starts[line]
    for offset in range(start, end):
        damaged = bytearray(accounts)
        damaged[offset] ^= 0x01
        folder = tmp_path / f"flip{offset}"
        write_db(folder, journal, users, bytes(damaged))
        with pytest.raises(StoreCorrupt) as err:
            Store(folder)
        path = str(folder / ACCOUNTS_FILE)
        assert (err.value.path, err.value.line, err.value.offset) == (path, line, start)
        assert path in str(err.value) and f"line {line}" in str(err.value)
        assert (folder / ACCOUNTS_FILE).read_bytes() == bytes(damaged)
        assert (folder / USERS_FILE).read_bytes() == users
        assert (folder / JOURNAL_FILE).read_bytes() == journal


def change_line(change: dict) -> bytes:
    body = json.dumps(change, separators=(",", ":")).encode()
    return b'{"a":%s,"c":%d}\n' % (body, zlib.crc32(body))


@pytest.mark.parametrize("extra, reason", [
    ("repeat", "out of sequence"),
    ({"seq": 9, "op": "signup", "name": "CAROL", "hash": "h", "created": 1.0}, "second sign-up"),
    ({"seq": 9, "op": "hash", "user": "nobody", "hash": "h"}, "no account"),
    ({"seq": 9, "op": "read", "user": "alice", "peer": "bob", "upto": "3"}, "not a number"),
    ({"seq": 9, "op": "drop table"}, "unknown kind"),
], ids=["out-of-sequence", "second-signup", "unknown-user", "bad-marker", "unknown-op"])
def test_an_intact_change_that_does_not_fit_is_refused(tmp_path, with_changes, extra, reason):
    journal, users, accounts = with_changes
    starts = line_starts(accounts)
    bad = accounts[starts[-1]:] if extra == "repeat" else change_line(extra)
    damaged = accounts + bad
    folder = tmp_path / "db"
    write_db(folder, journal, users, damaged)
    with pytest.raises(StoreCorrupt) as err:
        Store(folder)
    assert (err.value.line, err.value.offset) == (5, len(accounts))
    assert reason in err.value.reason
    assert (folder / ACCOUNTS_FILE).read_bytes() == damaged


def test_changes_the_snapshot_already_holds_are_skipped(tmp_path, with_changes):
    """A crash after the snapshot was replaced but before the journal was: both hold the
    first changes, which must count once."""
    journal, users, accounts = with_changes
    folder = tmp_path / "db"
    write_db(folder, journal, users, accounts)
    with Store(folder) as s:
        s.compact_accounts()
    snapshot = (folder / USERS_FILE).read_bytes()
    assert json.loads(snapshot)["seq"] == 7       # 1-3 in the original snapshot, 4-7 since
    folder2 = tmp_path / "crashed"
    write_db(folder2, journal, snapshot, accounts + change_line(
        {"seq": 8, "op": "signup", "name": "erin", "hash": "h-e", "created": 1.0}))
    with Store(folder2) as s:
        assert s.usernames() == ["Alice", "bob", "carol", "dave", "erin"]
        assert s.get_user("alice").password_hash == "h-a2"
        s.add_user("frank", "h-f")
    with Store(folder2) as s:
        assert s.get_user("frank") is not None


# ---------------------------------------------------------------- (c3) room changes

#: Room changes on top of ``original``, one accounts-journal line each.
ROOM_STEPS: List[Callable[[Store], object]] = [
    lambda s: s.create_room("alice", "#General", "hi"),
    lambda s: s.create_room("bob", "#secret", private=True),
    lambda s: s.join_room("bob", "#general"),
    lambda s: s.invite("bob", "#secret", "alice"),
    lambda s: s.set_topic("bob", "#general", "new topic"),
    lambda s: s.leave_room("alice", "#general"),
]


def room_state(s: Store) -> Tuple:
    """Everything about the rooms of ``original`` that a room change can change."""
    rooms = [s.get_room(name) for name in ("#general", "#secret")]
    return (tuple(rooms), tuple(s.rooms_of(u) for u in ("alice", "bob")),
            tuple(s.read_marker(u, "#general") for u in ("alice", "bob")))


@pytest.fixture
def with_rooms(tmp_path, original) -> Tuple[bytes, bytes, bytes, List[Tuple]]:
    """``original`` plus ROOM_STEPS: (journal, users, accounts, room state after each step)."""
    journal, users, _ = original
    folder = tmp_path / "rooms"
    write_db(folder, journal, users)
    states = []
    with Store(folder, clock=lambda: 1_700_000_000.5) as s:
        states.append(room_state(s))
        for step in ROOM_STEPS:
            step(s)
            states.append(room_state(s))
    accounts = (folder / ACCOUNTS_FILE).read_bytes()
    assert accounts.count(b"\n") == len(ROOM_STEPS)
    return journal, users, accounts, states


def test_an_accounts_journal_torn_in_any_room_change_loses_only_that_change(
        tmp_path, with_rooms, caplog):
    journal, users, accounts, states = with_rooms
    starts = line_starts(accounts) + [len(accounts)]
    for step in range(len(ROOM_STEPS)):
        start, end = starts[step], starts[step + 1]
        for cut in sorted({start + 1, start + 9, (start + end) // 2, end - 2, end - 1}):
            folder = tmp_path / f"cut{cut}"
            write_db(folder, journal, users, accounts[:cut])
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="chat.store"):
                s = Store(folder, clock=lambda: 1_700_000_000.5)
            with s:
                assert f"byte offset {start}" in caplog.text
                assert room_state(s) == states[step], (step, cut)
                ROOM_STEPS[step](s)                       # and it can be done again
                assert room_state(s) == states[step + 1]
            with Store(folder) as again:
                assert room_state(again) == states[step + 1]


def test_a_flipped_byte_in_a_middle_room_change_is_refused_and_the_files_left_alone(
        tmp_path, with_rooms):
    journal, users, accounts, _ = with_rooms
    starts = line_starts(accounts)
    line = 2                                             # the private room
    for offset in range(starts[line - 1], starts[line], 3):
        damaged = bytearray(accounts)
        damaged[offset] ^= 0x01
        folder = tmp_path / f"flip{offset}"
        write_db(folder, journal, users, bytes(damaged))
        with pytest.raises(StoreCorrupt) as err:
            Store(folder)
        assert (err.value.line, err.value.offset) == (line, starts[line - 1])
        assert (folder / ACCOUNTS_FILE).read_bytes() == bytes(damaged)
        assert (folder / USERS_FILE).read_bytes() == users


ROOM = {"op": "room", "name": "#other", "topic": "", "private": False, "by": "bob",
        "created": 1.0}


@pytest.mark.parametrize("extra, reason", [
    ({**ROOM, "name": "#GENERAL"}, "second room"),
    ({**ROOM, "name": "other"}, "bad name"),
    ({**ROOM, "by": "nobody"}, "bad room"),
    ({**ROOM, "private": "no"}, "bad room"),
    ({**ROOM, "topic": "two\nlines"}, "one line"),
    ({"op": "join", "user": "bob", "room": "#nowhere", "upto": 0}, "no room"),
    ({"op": "join", "user": "nobody", "room": "#general", "upto": 0}, "no account"),
    ({"op": "join", "user": "bob", "room": "#general"}, "not a number"),
    ({"op": "leave", "user": "bob", "room": "#nowhere"}, "no room"),
    ({"op": "invite", "user": "nobody", "room": "#secret", "by": "bob"}, "no account"),
    ({"op": "topic", "room": "#general", "topic": 3, "by": "bob"}, "not a string"),
    ({"op": "read", "user": "bob", "peer": "#nowhere", "upto": 1}, "no account or room"),
], ids=["second-room", "bad-name", "unknown-creator", "bad-private", "bad-topic",
        "join-no-room", "join-no-user", "join-no-marker", "leave-no-room", "invite-no-user",
        "topic-not-a-string", "read-no-room"])
def test_an_intact_room_change_that_does_not_fit_is_refused(tmp_path, with_rooms, extra,
                                                            reason):
    journal, users, accounts, _ = with_rooms
    damaged = accounts + change_line({"seq": 99, **extra})
    folder = tmp_path / "db"
    write_db(folder, journal, users, damaged)
    with pytest.raises(StoreCorrupt) as err:
        Store(folder)
    assert (err.value.line, err.value.offset) == (len(ROOM_STEPS) + 1, len(accounts))
    assert reason in err.value.reason
    assert (folder / ACCOUNTS_FILE).read_bytes() == damaged


@pytest.mark.parametrize("rooms", [
    b'[]',
    b'{"#a": {"name": "#b", "topic": "", "private": false, "created": 1, "by": "alice",'
    b' "members": [], "invited": []}}',
    b'{"#a": {"name": "#a", "topic": "", "private": false, "created": 1, "by": "alice",'
    b' "members": ["nobody"], "invited": []}}',
    b'{"#a": {"name": "#a", "topic": "", "private": 0, "created": 1, "by": "alice",'
    b' "members": [], "invited": []}}',
], ids=["not-an-object", "key-mismatch", "unknown-member", "bad-private"])
def test_a_users_file_with_bad_rooms_is_refused(tmp_path, original, rooms):
    journal, users, _ = original
    damaged = users.rstrip()[:-1] + b',"rooms":' + rooms + b"}\n"
    folder = tmp_path / "db"
    write_db(folder, journal, damaged)
    with pytest.raises(StoreCorrupt) as err:
        Store(folder)
    assert err.value.path == str(folder / USERS_FILE)
    assert (folder / USERS_FILE).read_bytes() == damaged


def test_a_compaction_carries_the_rooms_and_the_crash_between_its_steps_is_harmless(
        tmp_path, with_rooms):
    journal, users, accounts, states = with_rooms
    folder = tmp_path / "db"
    write_db(folder, journal, users, accounts)
    with Store(folder) as s:
        assert s.compact_accounts()
    snapshot = (folder / USERS_FILE).read_bytes()
    assert b'"rooms"' in snapshot and (folder / ACCOUNTS_FILE).read_bytes() == b""
    for kept in (b"", accounts):                # the journal switched, or not yet
        crashed = tmp_path / f"crashed{len(kept)}"
        write_db(crashed, journal, snapshot, kept)
        with Store(crashed) as s:
            assert room_state(s) == states[-1]


# ---------------------------------------------------------------- (d) power loss

class PowerCut(OSError):
    def __init__(self) -> None:
        super().__init__(errno.EIO, "the power is off")


class SimFile:
    def __init__(self, disk: "SimDisk", inode: int) -> None:
        self.disk, self.inode = disk, inode

    def write(self, data: bytes) -> None:
        with self.disk.mutex:
            self.disk.step()
            self.disk.data[self.inode] += data

    def sync(self) -> None:
        time.sleep(self.disk.fsync_seconds)      # a real fsync takes a while: batches grow
        with self.disk.mutex:
            self.disk.step()
            self.disk.synced[self.inode] = bytes(self.disk.data[self.inode])

    def close(self) -> None:
        pass


class SimReader:
    """Reads see what was written, synced or not, as a real page cache shows it."""

    def __init__(self, disk: "SimDisk", inode: int) -> None:
        self.disk, self.inode = disk, inode

    def size(self) -> int:
        with self.disk.mutex:
            self.disk.check_alive()
            return len(self.disk.data[self.inode])

    def read_at(self, offset: int, size: int) -> bytes:
        with self.disk.mutex:
            self.disk.check_alive()
            return bytes(self.disk.data[self.inode][offset:offset + size])

    def close(self) -> None:
        pass


class NoLock:
    """The simulated disk has one user at a time: its folder lock does nothing."""

    def release(self) -> None:
        pass


class SimDisk(FileLayer):
    """A disk in memory that forgets, at a power cut, everything not made durable.

    Files are inodes; folders map names to inodes. A write is volatile until
    the file's ``sync``; a creation, rename or removal is volatile until
    ``fsync_dir`` of its folder. ``crash`` returns the disk as it comes back
    up: the durable image, plus (when given a random generator) a random part
    of each file's unsynced appended bytes, as a real disk may keep some of
    them. The disk itself is dead afterwards: every call raises.

    ``cut_at`` cuts the power just before the n-th operation instead.
    """

    def __init__(self) -> None:
        self.mutex = threading.RLock()
        self.data: Dict[int, bytearray] = {}
        self.synced: Dict[int, bytes] = {}
        self.names: Dict[str, int] = {}
        self.durable_names: Dict[str, int] = {}
        self.inodes = 0
        self.dead = False
        self.steps = 0
        self.cut_at: Optional[int] = None
        self.image: Optional[SimDisk] = None
        self.fsync_seconds = 0.0

    def step(self) -> None:
        self.steps += 1
        if self.steps == self.cut_at:
            self.crash()
        self.check_alive()

    def check_alive(self) -> None:
        if self.dead:
            raise PowerCut()

    def _create(self, path: str) -> int:
        self.inodes += 1
        self.data[self.inodes], self.synced[self.inodes] = bytearray(), b""
        self.names[path] = self.inodes
        return self.inodes

    def _inode(self, path: str) -> int:
        if path not in self.names:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return self.names[path]

    def makedirs(self, directory: str) -> None:
        with self.mutex:
            self.step()

    def lock(self, directory: str) -> "NoLock":
        return NoLock()

    def list_dir(self, directory: str) -> List[str]:
        with self.mutex:
            self.step()
            return [os.path.basename(n) for n in self.names if os.path.dirname(n) == directory]

    def read_bytes(self, path: str) -> bytes:
        with self.mutex:
            self.step()
            return bytes(self.data[self._inode(path)])

    def open_append(self, path: str) -> SimFile:
        with self.mutex:
            self.step()
            return SimFile(self, self.names.get(path) or self._create(path))

    def open_read(self, path: str) -> "SimReader":
        with self.mutex:
            self.step()
            return SimReader(self, self._inode(path))

    def create_temp(self, directory: str, prefix: str) -> Tuple[str, SimFile]:
        with self.mutex:
            self.step()
            path = os.path.join(directory, f"{prefix}{self.inodes + 1}.tmp")
            return path, SimFile(self, self._create(path))

    def rename(self, src: str, dst: str) -> None:
        with self.mutex:
            self.step()
            self.names[dst] = self._inode(src)
            del self.names[src]

    def remove(self, path: str) -> None:
        with self.mutex:
            self.step()
            self._inode(path)
            del self.names[path]

    def truncate(self, path: str, size: int) -> None:
        with self.mutex:
            self.step()
            inode = self._inode(path)
            del self.data[inode][size:]
            self.synced[inode] = bytes(self.data[inode])

    def fsync_dir(self, directory: str) -> None:
        with self.mutex:
            self.step()
            inside = {n: i for n, i in self.durable_names.items()
                      if os.path.dirname(n) != directory}
            inside.update((n, i) for n, i in self.names.items()
                          if os.path.dirname(n) == directory)
            self.durable_names = inside

    def crash(self, rng: Optional[random.Random] = None) -> "SimDisk":
        with self.mutex:
            if self.image is None:
                image = SimDisk()
                image.names = dict(self.durable_names)
                image.durable_names = dict(self.durable_names)
                image.inodes = self.inodes
                for inode in set(self.durable_names.values()):
                    kept, now = self.synced[inode], bytes(self.data[inode])
                    if rng is not None and now.startswith(kept):
                        kept = now[:rng.randint(len(kept), len(now))]
                    image.data[inode], image.synced[inode] = bytearray(kept), kept
                self.image, self.dead = image, True
            return self.image


USERS = ["alice", "Bob", "carol", "dave"]


def run_until_power_cut(seed: int) -> None:
    """Senders, sign-ups and readers run until a power cut at a random moment;
    the disk as it comes back must hold every acknowledged change exactly once."""
    rng = random.Random(seed)
    disk = SimDisk()
    store = Store("db", files=disk, compact_min_bytes=rng.choice([500, 5_000, 1 << 20]))
    for name in USERS:
        store.add_user(name, "h")
    store.create_room(USERS[0], "#r")
    for name in USERS[1:]:
        store.join_room(name, "#r")
    disk.fsync_seconds = rng.choice([0.0, 0.0005, 0.002])
    acked: List[Tuple[int, str, str, str]] = []     # (id, from, to, text)
    acked_nonces: Dict[str, int] = {}
    acked_users: List[str] = []
    acked_markers: Dict[Tuple[str, str], int] = {}

    def sender(k: int) -> None:
        for i in range(10_000):
            frm, to = USERS[k], USERS[(k + i) % len(USERS)]
            try:
                msg_id, _ = store.append_message(frm, to, f"{k}-{i}")
                store.wait_durable(msg_id)
            except p.ChatError:
                return
            acked.append((msg_id, frm, to, f"{k}-{i}"))

    def room_sender() -> None:
        """Sends to the room with nonces, and resends each once, as after a lost reply."""
        for i in range(10_000):
            try:
                msg_id, _, fresh = store.append("carol", "#R", f"room-{i}", nonce=f"r{i}")
                assert fresh
                assert store.append("carol", "#r", "resent", nonce=f"r{i}")[:3:2] == (msg_id,
                                                                                     False)
                store.wait_durable(msg_id)
            except p.ChatError:
                return
            acked.append((msg_id, "carol", "#r", f"room-{i}"))
            acked_nonces[f"r{i}"] = msg_id

    def signer() -> None:
        for i in range(10_000):
            try:
                acked_users.append(store.add_user(f"new{i}", "h"))
            except p.ChatError:
                return

    def reader() -> None:
        pick = random.Random(seed)
        for _ in range(10_000):
            user, peer = pick.sample(USERS, 2)
            peer = "#r" if pick.random() < 0.25 else peer
            try:
                store.mark_read(user, peer, store.durable_id)
            except p.ChatError:
                return
            acked_markers[(user, peer)] = store.read_marker(user, peer)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(len(USERS))]
    threads += [threading.Thread(target=signer), threading.Thread(target=reader),
                threading.Thread(target=room_sender)]
    for t in threads:
        t.start()
    threading.Event().wait(rng.uniform(0.001, 0.04))
    image = disk.crash(rng)
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    store.close()

    with Store("db", files=image) as again:
        seen: Dict[str, int] = {}
        for name in USERS:
            for body in again.history(name, limit=p.MAX_HISTORY_LIMIT * 100):
                msg = json.loads(body)
                if msg["from"] == name:
                    seen[msg["text"]] = seen.get(msg["text"], 0) + 1
        for msg_id, frm, to, text in acked:
            assert seen.get(text) == 1, f"seed {seed}: acknowledged message {msg_id} lost"
            stored = again.get_message(msg_id)
            assert (stored.sender, stored.to, stored.text) == (frm, to, text)
        assert all(n == 1 for n in seen.values())
        assert again.last_id == len(seen) >= len(acked)
        assert set(acked_users) <= set(again.usernames())
        for (user, peer), marker in acked_markers.items():
            assert again.read_marker(user, peer) >= marker
        for nonce, msg_id in acked_nonces.items():     # a resend after the crash stores nothing
            assert again.append("carol", "#r", "again", nonce=nonce)[:3:2] == (msg_id, False)
        next_id, _ = again.append_message("alice", "bob", "after the crash")
        again.wait_durable(next_id)
        assert next_id == again.last_id == len(seen) + 1


@pytest.mark.parametrize("seed", range(30))
def test_a_power_cut_loses_nothing_acknowledged(seed):
    run_until_power_cut(seed)


def _compact(store: Store) -> None:
    store.compact_accounts()             # never raises: a failed one is logged


#: Account and room changes, in order: (name, how to make it, whether a store holds it;
#: None for compactions, which change nothing anyone sees). Each holds-test stays true
#: once its change is made, so what a disk holds can be checked to be a prefix.
ACCOUNT_CHANGES: List[Tuple[str, Callable[[Store], object], Optional[Callable[[Store], bool]]]] = [
    ("carol", lambda s: s.add_user("carol", "h"), lambda s: s.get_user("carol") is not None),
    ("marker", lambda s: s.mark_read("bob", "alice", 1),
     lambda s: s.read_marker("bob", "alice") == 1),
    ("compact", _compact, None),
    ("room", lambda s: s.create_room("alice", "#r", "t1"), lambda s: s.get_room("#r") is not None),
    ("hash", lambda s: s.set_password_hash("alice", "h2"),
     lambda s: s.get_user("alice").password_hash == "h2"),
    ("join", lambda s: s.join_room("bob", "#r"), lambda s: s.is_member("bob", "#r")),
    ("room-read", lambda s: (s.wait_durable(s.append("alice", "#r", "hi @bob", nonce="n")[0]),
                             s.mark_read("bob", "#r", 10**9)),
     lambda s: s.read_marker("bob", "#r") > 0 and s.room_counts("bob", "#r") == (0, 0)),
    ("dave", lambda s: s.add_user("dave", "h"), lambda s: s.get_user("dave") is not None),
    ("compact", _compact, None),
    ("private", lambda s: s.create_room("bob", "#p", private=True),
     lambda s: s.get_room("#p") is not None),
    ("invite", lambda s: s.invite("bob", "#p", "carol"), lambda s: s.is_invited("carol", "#p")),
    ("topic", lambda s: s.set_topic("alice", "#r", "t2"),
     lambda s: s.get_room("#r") is not None and s.get_room("#r").topic == "t2"),
    ("compact", _compact, None),
    ("leave", lambda s: s.leave_room("alice", "#r"),
     lambda s: s.get_room("#r") is not None and not s.is_member("alice", "#r")),
    ("erin", lambda s: s.add_user("erin", "h"), lambda s: s.get_user("erin") is not None),
]
WANTED = [name for name, _, holds in ACCOUNT_CHANGES if holds is not None]


def make_account_changes(store: Store, acked: List[str]) -> None:
    """The changes of ACCOUNT_CHANGES, in order, until one fails."""
    for name, make, holds in ACCOUNT_CHANGES:
        make(store)
        if holds is not None:
            acked.append(name)


def changes_found(store: Store) -> List[str]:
    return [name for name, _, holds in ACCOUNT_CHANGES if holds is not None and holds(store)]


def test_a_power_cut_at_every_step_of_account_changes_and_compactions_leaves_old_or_new():
    """With the power cut before each disk operation in turn: the disk as it comes back
    holds a prefix of the changes (never a mix), and at least every acknowledged one."""
    cuts = 0
    for cut_at in range(1, 1000):
        disk = SimDisk()
        store = Store("db", files=disk)
        store.add_user("alice", "h")
        store.add_user("bob", "h")
        store.wait_durable(store.append_message("alice", "bob", "hi")[0])
        disk.cut_at = disk.steps + cut_at
        acked: List[str] = []
        try:
            make_account_changes(store, acked)
        except p.ChatError:
            cuts += 1
        store.close()
        if disk.image is None:
            break
        with Store("db", files=disk.image) as again:
            found = changes_found(again)
            assert found == WANTED[:len(found)], (cut_at, found)
            assert found[:len(acked)] == acked, (cut_at, found, acked)
            assert not [n for n in disk.image.list_dir("db") if n.endswith(".tmp")]
            again.add_user("frank", "h")          # and the journal takes changes again
    else:
        pytest.fail("the changes never finished")
    assert cuts >= 30                           # journal writes, fsyncs, both replacements


def test_nothing_is_acknowledged_before_its_fsync():
    disk = SimDisk()
    store = Store("db", files=disk)
    store.add_user("alice", "h")
    msg_id, _ = store.append_message("alice", "alice", "note to self")
    store.wait_durable(msg_id)
    image = disk.crash()                       # nothing unsynced survives
    store.close()
    with Store("db", files=image) as again:
        assert again.last_id == 1 and again.get_message(1).text == "note to self"


# ---------------------------------------------------------------- (e) a failing disk

class FailingSync(OsFileLayer):
    """The real layer, whose journal fsync fails once ``broken`` is set."""

    def __init__(self) -> None:
        self.broken = threading.Event()

    def open_append(self, path: str) -> FaultyFile:  # type: ignore[override]
        inner = super().open_append(path)
        return FaultyFile(inner, lambda op: op == "fsync" and self.broken.is_set())


def test_a_failing_disk_makes_senders_fail_never_acknowledge(tmp_path, caplog):
    files = FailingSync()
    s = Store(tmp_path / "db", files=files)
    s.add_user("alice", "h")
    s.add_user("bob", "h")
    good, _ = s.append_message("alice", "bob", "stored")
    s.wait_durable(good)
    files.broken.set()
    bad, _ = s.append_message("alice", "bob", "secret text")
    with pytest.raises(p.ChatError) as err:
        s.wait_durable(bad)
    assert err.value.code == p.SERVER_ERROR and "could not store" in err.value.message
    s.wait_durable(good)                        # what was durable stays so
    with pytest.raises(p.ChatError) as err:
        s.append_message("bob", "alice", "later")
    assert err.value.code == p.SERVER_ERROR
    assert [json.loads(m)["id"] for m in s.history("alice")] == [good]
    assert s.unread_counts("bob") == {"alice": 1}
    s.close()
    assert "injected I/O error" in caplog.text and "secret text" not in caplog.text
    with Store(tmp_path / "db") as again:        # the failed line was cut away
        assert again.last_id == good
        assert again.get_message(good).text == "stored"


class FullDisk(OsFileLayer):
    """The real layer, whose journal refuses writes with ENOSPC while ``full`` is set,
    after writing part of the data (as a disk that fills up mid-write does); with
    ``cut_fails`` set, cutting the journal back fails too."""

    def __init__(self) -> None:
        self.full = False
        self.cut_fails = False
        self.cuts: List[int] = []

    def open_append(self, path: str) -> "HalfWritingFile":  # type: ignore[override]
        return HalfWritingFile(super().open_append(path), self)

    def truncate(self, path: str, size: int) -> None:
        if self.cut_fails:
            raise disk_error()
        self.cuts.append(size)
        super().truncate(path, size)


class HalfWritingFile:
    def __init__(self, inner: OsFile, disk: FullDisk) -> None:
        self.inner, self.disk = inner, disk

    def write(self, data: bytes) -> None:
        if self.disk.full:
            self.inner.write(data[:len(data) // 2 + 1])
            raise OSError(errno.ENOSPC, "No space left on device")
        self.inner.write(data)

    def sync(self) -> None:
        self.inner.sync()

    def close(self) -> None:
        self.inner.close()


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refused_while_backing_off(s: Store) -> bool:
    try:
        msg_id, _ = s.append_message("alice", "bob", "probe")
    except p.ChatError as exc:
        assert exc.code == p.SERVER_ERROR and exc.message == (
            "the server could not store the message (disk error); try again shortly")
        return True
    with pytest.raises(p.ChatError):          # the disk is still full: this one is lost
        s.wait_durable(msg_id)
    return False


def test_a_full_disk_loses_the_batch_not_the_store(tmp_path, caplog):
    folder = tmp_path / "db"
    files, now = FullDisk(), FakeTime()
    calls: List[Tuple[int, Optional[range]]] = []
    s = Store(folder, files=files, monotonic=now)
    s.add_durable_listener(lambda durable_id, failed: calls.append((durable_id, failed)))
    s.add_user("alice", "h")
    s.add_user("bob", "h")
    good, _ = s.append_message("alice", "bob", "stored")
    s.wait_durable(good)
    size = os.path.getsize(folder / JOURNAL_FILE)
    sent = s.sent_bytes("alice")

    files.full = True
    lost = [s.append_message("alice", "bob", f"secret {i}")[0] for i in range(3)]
    for msg_id in lost:
        with pytest.raises(p.ChatError) as err:
            s.wait_durable(msg_id)
        assert err.value.code == p.SERVER_ERROR and "could not store" in err.value.message
        assert s.lost(msg_id)
    assert os.path.getsize(folder / JOURNAL_FILE) == size       # cut back
    wait_for(lambda: sum(len(failed or ()) for _, failed in calls) == len(lost))
    failures = [failed for _, failed in calls if failed is not None]
    assert sorted(i for failed in failures for i in failed) == lost
    assert all(durable_id == good for durable_id, failed in calls if failed is not None)
    assert [json.loads(m)["id"] for m in s.history("bob")] == [good]
    assert s.unread_counts("bob") == {"alice": 1} and s.get_message(lost[0]) is None
    assert s.sent_bytes("alice") == sent
    assert not s.lost(good) and not s.lost(lost[-1] + 1)

    assert refused_while_backing_off(s)              # 0.5 s of refusals
    now.now += 0.5
    assert not refused_while_backing_off(s)          # then one try, which fails: 1 s
    now.now += 0.5
    assert refused_while_backing_off(s)
    now.now += 0.5
    files.full = False
    after, _ = s.append_message("alice", "bob", "after the disk was freed")
    s.wait_durable(after)
    assert after > max(lost) and after == s.last_id and s.durable_id == after
    wait_for(lambda: calls[-1][0] == after)
    assert calls[-1] == (after, None)
    assert [json.loads(m)["id"] for m in s.history("bob")] == [good, after]
    files.full = True                                # a success reset the backoff to 0.5 s
    assert not refused_while_backing_off(s)
    now.now += 0.5
    files.full = False
    again_id = send_one(s)
    s.close()
    assert "No space left on device" in caplog.text and "secret" not in caplog.text

    with Store(folder) as again:
        assert [json.loads(m)["id"] for m in again.history("bob")] == [good, after, again_id]
        assert all(again.get_message(i) is None for i in lost)
        assert "secret" not in (folder / JOURNAL_FILE).read_text()
        assert again.sent_bytes("alice") == sum(
            len(m) for m in again.history("alice", limit=1000))
        assert send_one(again) == again_id + 1


def wait_for(condition: Callable[[], bool]) -> None:
    """The committer calls listeners just after it wakes the waiters: give it a moment."""
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "the listener was never called"
        time.sleep(0.001)


def send_one(s: Store) -> int:
    msg_id, _ = s.append_message("alice", "bob", "ok")
    s.wait_durable(msg_id)
    return msg_id


def test_a_journal_that_could_not_be_cut_back_is_cut_before_the_next_write(tmp_path):
    folder = tmp_path / "db"
    files, now = FullDisk(), FakeTime()
    s = Store(folder, files=files, monotonic=now)
    s.add_user("alice", "h")
    s.add_user("bob", "h")
    good = send_one(s)
    size = os.path.getsize(folder / JOURNAL_FILE)
    files.full = files.cut_fails = True
    bad, _ = s.append_message("alice", "bob", "lost")
    with pytest.raises(p.ChatError):
        s.wait_durable(bad)
    assert os.path.getsize(folder / JOURNAL_FILE) > size      # the half line is still there
    files.full = files.cut_fails = False
    now.now += 0.5
    later = send_one(s)
    assert files.cuts == [size]
    s.close()
    with Store(folder) as again:                               # no damage in the middle
        assert [json.loads(m)["id"] for m in again.history("alice")] == [good, later]


def test_a_journal_may_skip_ids_but_never_go_back(tmp_path, original):
    journal, users, bodies = original
    starts = line_starts(journal)
    folder = tmp_path / "gaps"
    skipped = journal[:starts[1]] + journal[starts[3]:]         # ids 2 and 3 were lost
    write_db(folder, skipped, users)
    with Store(folder) as s:
        assert s.last_id == N_MESSAGES and s.lost(2) and s.lost(3) and not s.lost(4)
        assert s.get_message(2) is None
        assert s.history("alice", limit=1000) == [bodies[0]] + bodies[3:]
        assert send_one(s) == N_MESSAGES + 1
    backwards = journal[:starts[1]] + journal[starts[2]:starts[3]] + journal[starts[1]:starts[2]]
    folder = tmp_path / "backwards"
    write_db(folder, backwards, users)
    with pytest.raises(StoreCorrupt) as err:
        Store(folder)
    assert (err.value.line, err.value.offset) == (3, starts[1] + starts[3] - starts[2])
    assert "out of sequence" in err.value.reason
    assert (folder / JOURNAL_FILE).read_bytes() == backwards


# ---------------------------------------------------------------- (f) reading in chunks

class SmallChunks(OsFileLayer):
    """The real layer, reading journals in chunks of ``chunk`` bytes instead of a MiB."""

    def __init__(self, chunk: int) -> None:
        self.chunk = chunk

    def read_chunks(self, reader, chunk: int = CHUNK_BYTES):  # type: ignore[override]
        return super().read_chunks(reader, self.chunk)


def test_read_chunks_gives_whole_lines_with_their_offsets(tmp_path):
    path = tmp_path / "lines"
    data = b"a\n" + b"b" * 50 + b"\n\nccc\n" + b"d" * 30      # a long line, an empty one, a tail
    path.write_bytes(data)
    files = OsFileLayer()
    for chunk in (1, 2, 3, 7, 64, 1 << 20):
        reader = files.open_read(str(path))
        try:
            pieces = list(files.read_chunks(reader, chunk))
        finally:
            reader.close()
        assert b"".join(buf for buf, _ in pieces) == data
        assert [offset for _, offset in pieces] == list(
            itertools.accumulate([0] + [len(buf) for buf, _ in pieces[:-1]]))
        assert all(buf.endswith(b"\n") for buf, _ in pieces[:-1])


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20])
def test_chunk_boundaries_change_nothing_in_replay_repair_or_refusal(
        tmp_path, original, chunk, caplog):
    journal, users, bodies = original
    starts = line_starts(journal)
    files = SmallChunks(chunk)
    write_db(tmp_path / "intact", journal, users)
    with Store(tmp_path / "intact", files=files) as s:
        assert s.history("alice", limit=1000) == bodies

    torn = journal[:starts[-1] + 10]
    write_db(tmp_path / "torn", torn, users)
    with caplog.at_level(logging.WARNING, logger="chat.store"):
        with Store(tmp_path / "torn", files=files) as s:
            assert s.history("alice", limit=1000) == bodies[:-1]
    assert f"byte offset {starts[-1]} (line {N_MESSAGES}, 10 bytes" in caplog.text
    assert (tmp_path / "torn" / JOURNAL_FILE).read_bytes() == journal[:starts[-1]]

    damaged = bytearray(journal)
    damaged[starts[2] + 20] ^= 0x01
    write_db(tmp_path / "damaged", bytes(damaged), users)
    with pytest.raises(StoreCorrupt) as err:
        Store(tmp_path / "damaged", files=files)
    assert (err.value.line, err.value.offset) == (3, starts[2])
    assert (tmp_path / "damaged" / JOURNAL_FILE).read_bytes() == bytes(damaged)
