"""What the store's operations cost as it grows: they must not grow with it.

An account change writes one journal line whatever the number of accounts
(the snapshot is rewritten only now and then, its cost spread over the
changes in between). Message bodies stay on disk: memory holds ids and
offsets, and a bounded cache.
"""
from __future__ import annotations

import gc
import json
import os
import threading
import time
import tracemalloc
from typing import Dict, List

import pytest

from chat.store import ACCOUNTS_FILE, JOURNAL_FILE, USERS_FILE, Store
from chat.store.fileio import CHUNK_BYTES, OsFile, OsFileLayer


class ByteCounter(OsFileLayer):
    """The real layer, counting the bytes written to each file name (temp files by prefix)."""

    def __init__(self) -> None:
        self.written: Dict[str, int] = {}

    def open_append(self, path: str) -> "CountedFile":  # type: ignore[override]
        return CountedFile(super().open_append(path), path, self.written)

    def create_temp(self, directory: str, prefix: str):  # type: ignore[override]
        path, handle = super().create_temp(directory, prefix)
        return path, CountedFile(handle, prefix.rstrip("."), self.written)

    def total(self) -> int:
        return sum(self.written.values())


class CountedFile:
    def __init__(self, inner: OsFile, name: str, written: Dict[str, int]) -> None:
        self.inner, self.written = inner, written
        self.name = name.rsplit("/", 1)[-1]

    def write(self, data: bytes) -> None:
        self.written[self.name] = self.written.get(self.name, 0) + len(data)
        self.inner.write(data)

    def sync(self) -> None:
        self.inner.sync()

    def close(self) -> None:
        self.inner.close()


def v1_folder(folder, accounts: int) -> None:
    """A version 1 folder with ``accounts`` accounts, written directly (it is quicker)."""
    folder.mkdir()
    users = {f"user{i}": {"name": f"user{i}", "hash": "$scrypt$" + "a" * 88, "created": 1.0}
             for i in range(accounts)}
    doc = {"version": 1, "users": users, "read": {}}
    (folder / USERS_FILE).write_text(json.dumps(doc))


def bytes_per_change(folder) -> List[int]:
    """Bytes written by a sign-up, a hash upgrade and a marker move."""
    files = ByteCounter()
    with Store(folder, files=files, clock=lambda: 1_700_000_000.5) as s:
        s.wait_durable(s.append_message("user1", "user0", "hi")[0])
        costs = []
        for change in (lambda: s.add_user("newcomer", "$scrypt$" + "b" * 88),
                       lambda: s.set_password_hash("user0", "$scrypt$" + "c" * 88),
                       lambda: s.mark_read("user0", "user1", 1)):
            before = files.total()
            change()
            costs.append(files.total() - before)
    return costs


def test_an_account_change_writes_the_same_with_100_or_20000_accounts(tmp_path):
    v1_folder(tmp_path / "small", 100)
    v1_folder(tmp_path / "large", 20_000)
    small, large = bytes_per_change(tmp_path / "small"), bytes_per_change(tmp_path / "large")
    assert small == large
    assert all(0 < cost < 400 for cost in large), large


def test_compaction_spreads_its_cost_over_the_changes(tmp_path):
    """The snapshot is rewritten once the journal outgrows it, so the bytes written for
    it stay within a small multiple of the changes' own, whatever their number."""
    folder = tmp_path / "db"
    v1_folder(folder, 500)
    files = ByteCounter()
    with Store(folder, files=files, compact_min_bytes=0) as s:
        def sign_up(k: int) -> None:
            for i in range(150):
                s.add_user(f"signup{k}x{i}", "$scrypt$" + "b" * 88)

        threads = [threading.Thread(target=sign_up, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 10
        while s.stats()["compactions"] < 1:
            assert time.monotonic() < deadline, "no compaction happened"
            time.sleep(0.01)
        assert files.written[USERS_FILE] < 2 * files.written[ACCOUNTS_FILE]
    with Store(folder) as again:
        assert len(again.usernames()) == 500 + 8 * 150


# ---------------------------------------------------------------- message bodies stay on disk

class ReadRecorder(OsFileLayer):
    """The real layer, noting every read: whole-file reads by name, positioned reads by size."""

    def __init__(self) -> None:
        self.whole: List[str] = []
        self.sizes: List[int] = []

    def read_bytes(self, path: str) -> bytes:
        self.whole.append(os.path.basename(path))
        return super().read_bytes(path)

    def open_read(self, path: str):  # type: ignore[override]
        return RecordingReader(super().open_read(path), self.sizes)


class RecordingReader:
    def __init__(self, inner, sizes: List[int]) -> None:
        self.inner, self.sizes = inner, sizes

    def size(self) -> int:
        return self.inner.size()

    def read_at(self, offset: int, size: int) -> bytes:
        self.sizes.append(size)
        return self.inner.read_at(offset, size)

    def close(self) -> None:
        self.inner.close()


def preload(folder, count: int, text: str = "x" * 200) -> None:
    with Store(folder) as s:
        names = [f"user{i}" for i in range(10)]
        for name in names:
            s.add_user(name, "h")
        for i in range(count):
            s.append_message(names[i % 10], names[(i * 7 + 1) % 10], f"{i} {text}")
        s.wait_durable(s.last_id)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A folder with 100,000 messages of some 270 bytes (a 27 MB journal)."""
    folder = tmp_path_factory.mktemp("big") / "db"
    preload(folder, 100_000)
    return folder


def test_the_journal_is_read_in_bounded_chunks_never_whole(big):
    files = ReadRecorder()
    with Store(big, files=files) as s:
        assert s.last_id == 100_000
        s.history("user3", limit=1000)
    assert JOURNAL_FILE not in files.whole
    assert max(files.sizes) <= CHUNK_BYTES


def test_opening_keeps_ids_and_offsets_in_memory_not_bodies(big):
    """Memory after opening (and at its peak while opening) is a fraction of the journal."""
    journal = os.path.getsize(big / JOURNAL_FILE)
    gc.collect()
    tracemalloc.start()
    try:
        s = Store(big)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with s:
        assert s.last_id == 100_000
        assert current < journal / 4 and peak < journal / 3, (current, peak, journal)
        newest = json.loads(s.history("user1", limit=1)[0])
        assert newest["text"].startswith("99991 ")


def test_bodies_come_from_disk_through_a_bounded_cache(big):
    with Store(big, cache_bytes=50_000) as s:
        seen = []
        for before in range(100_000, 0, -5_000):
            page = s.history("user2", before=before, limit=100)
            assert len(page) == 100 and s.stats()["cache_bytes"] <= 50_000
            seen.extend(json.loads(m)["id"] for m in page)
        for msg_id in seen[::37]:
            message = s.get_message(msg_id)
            assert message.id == msg_id and message.text.startswith(f"{msg_id - 1} ")
        assert s.stats()["cache_bytes"] <= 50_000


def test_history_of_100_from_a_large_store_stays_fast(big):
    with Store(big) as s:
        times = []
        for k in range(50):
            start = time.perf_counter()
            page = s.history(f"user{k % 10}", before=100_000 - k * 1_999, limit=100)
            times.append(time.perf_counter() - start)
            assert len(page) == 100
        times.sort()
        assert times[len(times) // 2] < 0.005, times
