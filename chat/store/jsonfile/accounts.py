"""The accounts journal: every change to accounts, markers and rooms, durable before it shows.

``accounts.jsonl`` holds every change after the users.json snapshot, one a
line (``records.change_line``), the change being ``{"seq", "op", ...}`` with
``seq`` strictly growing. A change is one line appended with one fsync before
the call returns, whatever the number of accounts; callers that arrive while a
write is in flight share the next fsync. A change is applied to the state
(``state.AccountState.apply``) only once durable, so nothing is shown that a
crash could take back, and a failed write raises ChatError(server_error) and
changes nothing.

Once the journal is larger than the snapshot (and ``compact_min_bytes``) it is
folded into a new snapshot in the background: first the snapshot is replaced,
then the journal by one holding only the changes after the snapshot's ``seq``.
Changes at or below the snapshot's ``seq`` are skipped on replay, so a crash
between the two steps is harmless.

Locks, taken in this order: ``_compact_lock`` (one compaction at a time),
``_io`` (one journal write or switch at a time), the store's lock (the state).
No file I/O happens under the store's lock.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from ... import protocol as p
from ..contract import StoreCorrupt
from ..fileio import FileHandle, FileLayer
from .records import ACCOUNT_CRC_GROUP, ACCOUNT_RECORD, ACCOUNTS_FILE, USERS_FILE, change_line
from .scan import scan
from .snapshot import encode_doc, load_doc
from .state import AccountState

log = logging.getLogger(__name__)

CHANGE_LOST = "the server could not store the change (disk error)"
#: After a failed compaction, the next one waits this long.
COMPACT_RETRY_SECONDS = 8.0

_QUEUED, _DONE, _FAILED = "queued", "done", "failed"


class Change:
    """One change on its way to the accounts journal.

    ``release`` is called (with the store's lock held) once the change is
    settled, written or failed: a decision that reserved something (a name)
    gives it back there.
    """

    __slots__ = ("seq", "change", "line", "state", "release")

    def __init__(self, seq: int, change: Dict[str, Any],
                 release: Optional[Callable[[], None]]) -> None:
        self.seq = seq
        self.change = change
        self.line = change_line(seq, change)
        self.state = _QUEUED
        self.release = release

    @property
    def done(self) -> bool:
        return self.state is _DONE


class AccountJournal:
    """The accounts journal and its compaction into users.json; the state it keeps durable.

    Decisions (is the name taken? is the user a member?) are made by the
    callers under the store's lock against ``state``, which holds durable
    changes only; they then ``queue`` a change and ``write_through`` it.
    """

    def __init__(self, directory: str, files: FileLayer, lock: threading.Lock,
                 monotonic: Callable[[], float], compact_min_bytes: int) -> None:
        self.directory = directory
        self.users_path = os.path.join(directory, USERS_FILE)
        self.path = os.path.join(directory, ACCOUNTS_FILE)
        self.state = AccountState()
        self._files = files
        self._lock = lock                      # the store's: guards the state
        self._io = threading.Lock()            # one journal write (or switch) at a time
        self._compact_lock = threading.Lock()  # one compaction at a time
        self._monotonic = monotonic
        self._compact_min = compact_min_bytes

        self._seq = 0                  # the last change number handed out
        self._durable_seq = 0          # every change up to it is on disk and applied
        self._replayed_seq = 0         # the last change number seen in the journal at load
        self._snapshot_size = 0
        self._queue: List[Change] = []
        self._handle: Optional[FileHandle] = None
        self._size: Optional[int] = 0  # bytes of the journal that are durable (None: look)
        self._good = 0                 # the journal's good prefix, as found by load
        self._cut_needed = False       # a failed write's bytes may still be in the journal
        self._dir_dirty = False        # a new journal's name may not be durable yet
        self._tail: Optional[List[bytes]] = None   # written while a compaction runs
        self._compactor: Optional[threading.Thread] = None
        self._compact_retry_at = 0.0
        self._closing = False
        self.compactions = 0

    # ------------------------------------------------------------ opening and closing

    def load(self) -> None:
        """Read the snapshot and replay the journal; no file is changed."""
        self._load_snapshot()
        try:
            reader = self._files.open_read(self.path)
        except FileNotFoundError:
            return
        try:
            self._good = scan(self._files, reader, self.path, ACCOUNT_RECORD,
                              ACCOUNT_CRC_GROUP, self._replay_change)
            self._size = reader.size()
        finally:
            reader.close()
        self._seq = self._durable_seq = max(self._durable_seq, self._replayed_seq)

    def open(self) -> None:
        """Cut away a torn tail found by ``load``; open the journal for appending."""
        if self._good < (self._size or 0):
            self._files.truncate(self.path, self._good)
        self._size = self._good
        self._handle = self._files.open_append(self.path)

    def close(self) -> None:
        """Wait for a compaction in progress; close the journal. Later changes fail."""
        with self._lock:
            self._closing = True
            compactor = self._compactor
        if compactor is not None:
            compactor.join()
        with self._io:
            handle, self._handle = self._handle, None
        if handle is not None:
            try:
                handle.close()
            except OSError as exc:
                log.error("closing %s: %s", self.path, exc)

    def _load_snapshot(self) -> None:
        path = self.users_path
        try:
            raw = self._files.read_bytes(path)
        except FileNotFoundError:
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise StoreCorrupt(path, line, exc.start, "not valid UTF-8") from None
        try:
            seq = load_doc(self.state, text)
        except json.JSONDecodeError as exc:
            offset = len(text[:exc.pos].encode("utf-8"))
            raise StoreCorrupt(path, exc.lineno, offset, f"not valid JSON: {exc.msg}") from None
        except ValueError as exc:
            raise StoreCorrupt(path, 1, 0, str(exc)) from None
        self._seq = self._durable_seq = seq
        self._snapshot_size = len(raw)

    def _replay_change(self, m: "re.Match[bytes]", body: bytes, line: int, offset: int
                       ) -> None:
        seq = int(m.group(2))
        if seq <= self._replayed_seq:
            raise StoreCorrupt(self.path, line, offset, f"change {seq} out of sequence "
                               f"(expected {self._replayed_seq + 1} or more)")
        self._replayed_seq = seq
        if seq <= self._durable_seq:
            return                 # in the snapshot already: a crash during a compaction
        try:
            change = json.loads(body)
            self.state.check(change)
        except ValueError as exc:
            raise StoreCorrupt(self.path, line, offset, str(exc)) from None
        self.state.apply(change)

    # ------------------------------------------------------------ changing

    def queue(self, change: Dict[str, Any], release: Optional[Callable[[], None]] = None
              ) -> Change:
        """Number ``change`` and queue it for the next write; the store's lock is held."""
        if self._closing:
            raise p.ChatError(p.SERVER_ERROR, "the store is closed")
        self._seq += 1
        queued = Change(self._seq, change, release)
        self._queue.append(queued)
        return queued

    def write_through(self, change: Change) -> None:
        """Return once ``change`` is durable and applied; ChatError(server_error) if not.

        The first caller to get the journal writes everything queued, so
        callers that queued while a write was in flight share the next one.
        """
        self.settle(change)
        if change.state is not _DONE:
            raise p.ChatError(p.SERVER_ERROR, CHANGE_LOST)
        self._maybe_compact()

    def settle(self, change: Change) -> None:
        """Return once ``change`` is written or failed (whoever wrote it)."""
        with self._io:
            with self._lock:
                batch: List[Change] = []
                if change.state is _QUEUED:
                    batch, self._queue = self._queue, []
            if batch:
                self._write(batch)

    def _write(self, batch: List[Change]) -> None:
        """Append, fsync, then apply ``batch``; on failure change nothing. ``_io`` is held."""
        data = b"".join([change.line for change in batch])
        try:
            handle, size = self._prepare_journal()
            handle.write(data)
            handle.sync()
            if self._dir_dirty:            # a new journal's name must outlive a crash too
                self._files.fsync_dir(self.directory)
                self._dir_dirty = False
        except BaseException as exc:
            self._write_failed(batch, exc)
            if not isinstance(exc, OSError):
                raise
            return
        self._size = size + len(data)
        if self._tail is not None:
            self._tail.append(data)
        with self._lock:
            for change in batch:
                self.state.apply(change.change)
                self._release(change, _DONE)
            self._durable_seq = batch[-1].seq

    def _prepare_journal(self) -> Tuple[FileHandle, int]:
        """The journal's handle and durable size, reopened or repaired as needed.

        After a compaction switched journals (or could not tell whether it
        did) the handle and the size are found again here, and the leftovers
        of a failed write are cut before anything new is appended.
        """
        if self._handle is None:
            if self._closing:
                raise OSError("the store is closed")
            self._handle = self._files.open_append(self.path)
        if self._size is None:
            reader = self._files.open_read(self.path)
            try:
                self._size = reader.size()
            finally:
                reader.close()
        if self._cut_needed:
            self._files.truncate(self.path, self._size)
            self._cut_needed = False
        return self._handle, self._size

    def _write_failed(self, batch: List[Change], exc: BaseException) -> None:
        """Cut the journal back to its durable size; the batch's changes are dropped."""
        log.error("could not store account changes %d..%d in %s: %s",
                  batch[0].seq, batch[-1].seq, self.path, exc)
        if self._size is not None:
            self._cut_needed = True
            try:
                self._files.truncate(self.path, self._size)
                self._cut_needed = False
            except OSError as cut_exc:
                log.error("could not cut %s back to %d bytes (retried before the next write): "
                          "%s", self.path, self._size, cut_exc)
        with self._lock:
            for change in batch:
                self._release(change, _FAILED)

    @staticmethod
    def _release(change: Change, state: str) -> None:
        """Settle a change and give back what its decision reserved; the lock is held."""
        change.state = state
        if change.release is not None:
            change.release()

    # ------------------------------------------------------------ compaction

    def _maybe_compact(self) -> None:
        """Start a background compaction when the journal has outgrown the snapshot."""
        with self._lock:
            size = self._size   # None while a switched journal is not reopened yet
            if (self._closing or self._compactor is not None or size is None
                    or size <= max(self._compact_min, self._snapshot_size)
                    or self._monotonic() < self._compact_retry_at):
                return
            self._compactor = threading.Thread(target=self._compact_in_background,
                                               name="store-compactor", daemon=True)
            self._compactor.start()

    def _compact_in_background(self) -> None:
        done = False
        try:
            done = self.compact()
        except Exception:
            log.exception("compacting %s failed", self.path)
        finally:
            with self._lock:
                self._compactor = None
                if not done:
                    self._compact_retry_at = self._monotonic() + COMPACT_RETRY_SECONDS

    def compact(self) -> bool:
        """Fold the journal into a new snapshot; True if it was done.

        First the snapshot is replaced atomically, holding every change up to
        some ``seq``; then the journal, atomically too, by one holding only the
        changes after ``seq`` (those written meanwhile). A crash between the
        two leaves the new snapshot and the old journal, whose changes at or
        below ``seq`` are skipped on replay. Changes keep being written while
        the snapshot is encoded and written: only the two switches hold the
        journal.
        """
        with self._compact_lock:
            with self._io:
                with self._lock:
                    snap = self.state.snapshot(self._durable_seq)
                self._tail = []
            try:
                data = encode_doc(snap)
                self._files.replace_atomic(self.users_path, data)
            except OSError as exc:
                log.error("could not write %s (the journal %s stays as it is): %s",
                          self.users_path, self.path, exc)
                with self._io:
                    self._tail = None
                return False
            self._snapshot_size = len(data)
            with self._io:
                tail, self._tail = b"".join(self._tail or ()), None
                self._restart_journal(tail)
        self.compactions += 1
        log.info("compacted %s into %s (%d accounts, change %d)", self.path, self.users_path,
                 len(snap.accounts), snap.seq)
        return True

    def _restart_journal(self, tail: bytes) -> None:
        """Replace the journal by ``tail`` (the changes after the snapshot); ``_io`` is held.

        Whichever of the two files the name ends up naming is good (the new
        snapshot holds what the old journal adds), so a failure here is
        logged, not raised: the next write reopens whatever is there.
        """
        try:
            self._prepare_journal()   # no failed write's leftovers may be kept or copied
            tmp, handle = self._files.create_temp(self.directory, ACCOUNTS_FILE + ".")
        except OSError as exc:
            log.error("could not start a new %s (the old one stays): %s", self.path, exc)
            return
        try:
            try:
                handle.write(tail)
                handle.sync()
            finally:
                handle.close()
        except OSError as exc:
            log.error("could not start a new %s (the old one stays): %s", self.path, exc)
            self._discard(tmp)
            return
        try:
            self._files.rename(tmp, self.path)
        except OSError as exc:   # maybe renamed, maybe not: find out at the next write
            log.error("renaming a new %s into place failed (%s); the next change reopens "
                      "whichever is there", self.path, exc)
            self._discard(tmp)
            self._switch(None)
            return
        self._switch(len(tail))
        try:
            self._files.fsync_dir(self.directory)
            self._dir_dirty = False
        except OSError as exc:
            log.error("could not make the new %s durable (retried with the next change): %s",
                      self.path, exc)

    def _switch(self, size: Optional[int]) -> None:
        """Let the next write reopen the journal by name; its size if known. ``_io`` is held."""
        old, self._handle = self._handle, None
        self._size, self._dir_dirty = size, True
        if old is not None:
            try:
                old.close()
            except OSError as exc:
                log.warning("closing the old %s: %s", self.path, exc)

    def _discard(self, path: str) -> None:
        try:
            self._files.remove(path)
        except OSError:
            pass
