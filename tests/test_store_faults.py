"""Every durability promise of the store, tested with injected faults.

- a journal cut short inside its last record (a torn write) is repaired;
- damage with good records after it is refused, the file left untouched;
- users.json is replaced atomically whichever step of the replacement fails;
- a power cut loses nothing that was acknowledged (a simulated disk that
  forgets whatever was not fsynced);
- a failing disk makes senders fail instead of acknowledging.

The fault layers are subclasses of the file layer, the seam the store does
all its I/O through; everything else is the real store on real files.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import random
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import pytest

from chat import protocol as p
from chat.fileio import FileLayer, OsFile, OsFileLayer
from chat.store import JOURNAL_FILE, USERS_FILE, Store, StoreCorrupt

N_MESSAGES = 6


def disk_error() -> OSError:
    return OSError(errno.EIO, "injected I/O error")


def build_db(folder) -> Tuple[bytes, bytes, List[str]]:
    """A small database: (journal bytes, users.json bytes, message JSON by id - 1)."""
    with Store(folder) as s:
        s.add_user("Alice", "h-a")
        s.add_user("bob", "h-b")
        for i in range(N_MESSAGES):
            sender, to = ("alice", "bob") if i % 2 else ("bob", "ALICE")
            msg_id, _ = s.append_message(sender, to, f"message {i} \u00e9\n\"quoted\"")
            s.wait_durable(msg_id)
        s.mark_read("alice", "bob", 3)
        bodies = s.history("alice", limit=1000)
    return ((folder / JOURNAL_FILE).read_bytes(), (folder / USERS_FILE).read_bytes(), bodies)


@pytest.fixture
def original(tmp_path):
    return build_db(tmp_path / "original")


def write_db(folder, journal: bytes, users: bytes) -> None:
    folder.mkdir()
    (folder / JOURNAL_FILE).write_bytes(journal)
    (folder / USERS_FILE).write_bytes(users)


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
    b'{"version": 2, "users": {}, "read": {}}',
    b'{"version": 1, "users": {"alice": {"name": "Bob", "hash": "h"}}, "read": {}}',
    b'{"version": 1, "users": {}, "read": {"alice": {"bob": "3"}}}',
    b"",
], ids=["truncated", "not-utf8", "not-an-object", "version", "key-mismatch", "marker",
        "empty"])
def test_a_bad_users_file_is_refused_never_overwritten(tmp_path, original, users):
    journal = original[0]
    folder = tmp_path / "db"
    write_db(folder, journal, users)
    with pytest.raises(StoreCorrupt) as err:
        Store(folder)
    assert err.value.path == str(folder / USERS_FILE)
    assert (folder / USERS_FILE).read_bytes() == users
    assert (folder / JOURNAL_FILE).read_bytes() == journal


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
    """The real layer, failing at one step of replacing users.json once armed."""

    def __init__(self) -> None:
        self.step: Optional[str] = None

    def create_temp(self, directory: str, prefix: str):
        path, handle = super().create_temp(directory, prefix)
        return path, FaultyFile(handle, lambda op: self.step == f"after temp {op}")

    def rename(self, src: str, dst: str) -> None:
        if self.step == "before replace":
            raise disk_error()
        super().rename(src, dst)
        if self.step == "after replace":
            raise disk_error()

    def fsync_dir(self, directory: str) -> None:
        if self.step == "before dir fsync":
            raise disk_error()
        super().fsync_dir(directory)


REPLACE_STEPS = {"after temp write": False, "after temp fsync": False, "before replace": False,
                 "after replace": True, "before dir fsync": True}  # step -> new doc in place


@pytest.mark.parametrize("step", list(REPLACE_STEPS))
def test_users_json_is_old_or_new_whichever_step_fails(tmp_path, original, step, caplog):
    journal, users, _ = original
    folder = tmp_path / "db"
    write_db(folder, journal, users)
    files = FaultyReplace()
    s = Store(folder, files=files)
    files.step = step
    with pytest.raises(p.ChatError) as err:
        s.add_user("carol", "h-c")
    assert err.value.code == p.SERVER_ERROR
    assert s.get_user("carol") is None            # not durable, so not visible
    s.close()
    assert "h-c" not in caplog.text
    with Store(folder) as again:
        want = ["Alice", "bob", "carol"] if REPLACE_STEPS[step] else ["Alice", "bob"]
        assert again.usernames() == want
        assert again.read_marker("alice", "bob") == 3
    assert sorted(os.listdir(folder)) == [JOURNAL_FILE, USERS_FILE]   # no temp file left


def test_a_marker_whose_write_failed_is_made_durable_by_the_next_call(tmp_path, original):
    journal, users, _ = original
    folder = tmp_path / "db"
    write_db(folder, journal, users)
    files = FaultyReplace()
    with Store(folder, files=files) as s:
        files.step = "before replace"
        with pytest.raises(p.ChatError):
            s.mark_read("bob", "alice", 4)
        files.step = None
        s.mark_read("bob", "alice", 2)            # lower, yet it must not return before 4 is safe
    with Store(folder) as again:
        assert again.read_marker("bob", "alice") == 4


# ---------------------------------------------------------------- (d) power loss

class PowerCut(OSError):
    def __init__(self) -> None:
        super().__init__(errno.EIO, "the power is off")


class SimFile:
    def __init__(self, disk: "SimDisk", inode: int) -> None:
        self.disk, self.inode = disk, inode

    def write(self, data: bytes) -> None:
        with self.disk.lock:
            self.disk.step()
            self.disk.data[self.inode] += data

    def sync(self) -> None:
        time.sleep(self.disk.fsync_seconds)      # a real fsync takes a while: batches grow
        with self.disk.lock:
            self.disk.step()
            self.disk.synced[self.inode] = bytes(self.disk.data[self.inode])

    def close(self) -> None:
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
        self.lock = threading.RLock()
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
        with self.lock:
            self.step()

    def list_dir(self, directory: str) -> List[str]:
        with self.lock:
            self.step()
            return [os.path.basename(n) for n in self.names if os.path.dirname(n) == directory]

    def read_bytes(self, path: str) -> bytes:
        with self.lock:
            self.step()
            return bytes(self.data[self._inode(path)])

    def open_append(self, path: str) -> SimFile:
        with self.lock:
            self.step()
            return SimFile(self, self.names.get(path) or self._create(path))

    def create_temp(self, directory: str, prefix: str) -> Tuple[str, SimFile]:
        with self.lock:
            self.step()
            path = os.path.join(directory, f"{prefix}{self.inodes + 1}.tmp")
            return path, SimFile(self, self._create(path))

    def rename(self, src: str, dst: str) -> None:
        with self.lock:
            self.step()
            self.names[dst] = self._inode(src)
            del self.names[src]

    def remove(self, path: str) -> None:
        with self.lock:
            self.step()
            self._inode(path)
            del self.names[path]

    def truncate(self, path: str, size: int) -> None:
        with self.lock:
            self.step()
            inode = self._inode(path)
            del self.data[inode][size:]
            self.synced[inode] = bytes(self.data[inode])

    def fsync_dir(self, directory: str) -> None:
        with self.lock:
            self.step()
            inside = {n: i for n, i in self.durable_names.items()
                      if os.path.dirname(n) != directory}
            inside.update((n, i) for n, i in self.names.items()
                          if os.path.dirname(n) == directory)
            self.durable_names = inside

    def crash(self, rng: Optional[random.Random] = None) -> "SimDisk":
        with self.lock:
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
    store = Store("db", files=disk)
    for name in USERS:
        store.add_user(name, "h")
    disk.fsync_seconds = rng.choice([0.0, 0.0005, 0.002])
    acked: List[Tuple[int, str, str, str]] = []     # (id, from, to, text)
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
            try:
                store.mark_read(user, peer, store.durable_id)
            except p.ChatError:
                return
            acked_markers[(user, peer)] = store.read_marker(user, peer)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(len(USERS))]
    threads += [threading.Thread(target=signer), threading.Thread(target=reader)]
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
        next_id, _ = again.append_message("alice", "bob", "after the crash")
        again.wait_durable(next_id)
        assert next_id == again.last_id == len(seen) + 1


@pytest.mark.parametrize("seed", range(30))
def test_a_power_cut_loses_nothing_acknowledged(seed):
    run_until_power_cut(seed)


def test_a_power_cut_at_every_step_of_an_account_change_leaves_old_or_new():
    """(c) again, with the power cut before each disk operation in turn."""
    cuts = 0
    for cut_at in range(1, 100):
        disk = SimDisk()
        store = Store("db", files=disk)
        store.add_user("alice", "h")
        disk.cut_at = disk.steps + cut_at
        try:
            store.add_user("bob", "h")
            store.mark_read("bob", "alice", 0)
        except p.ChatError:
            cuts += 1
        store.close()
        if disk.image is None:
            break
        with Store("db", files=disk.image) as again:
            assert again.usernames() in (["alice"], ["alice", "bob"])
            assert not [n for n in disk.image.list_dir("db") if n.endswith(".tmp")]
    assert cuts >= 5                           # temp write, fsync, rename, dir fsync...


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
    with Store(tmp_path / "db") as again:        # the unsynced line may or may not be there
        assert again.last_id in (good, bad)
        assert again.get_message(good).text == "stored"
