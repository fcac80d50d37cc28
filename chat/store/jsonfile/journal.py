"""The message journal: replay, group commit, and recovery from a failed write.

``messages.jsonl`` is append-only, one message a line (``records``). Ids grow
strictly but may skip ids burned by a failed write.

Group commit: ``queue`` (called by the store, its lock held) only assigns the
line a place; one committer thread writes everything queued in one write and
one fsync, so concurrent senders share fsyncs, then moves ``durable_id``,
wakes ``wait_durable`` callers and calls the durable listeners.

The server's path takes no lock at all: ``submit`` puts a batch of sends on
the intake (a deque) and sets one event. Each round the committer takes the
whole intake, has the store turn it into queued lines under one taking of
the lock (``admit``), writes and fsyncs, and hands every batch's outcomes to
``round_done``: per round, not per message, and no handler thread ever holds
the store's lock while it might lose the interpreter (no lock convoy).

A failed write (a full disk) loses that batch, not the store: the journal is
cut back to its durable size, the batch (and whatever was queued behind it)
is handed to ``on_lost`` to leave every index, its ids are burned (``lost``;
never reused in this run) and reported to the listeners, sends are refused for
a backoff (0.5 s doubling to 8 s), and then the store tries again by itself.

Memory holds each message's journal offset and length by id (``where``,
``lengths``); the bodies stay on disk (``bodies.BodyCache`` reads them back)
except those not written yet, which are held whole until they are.
"""
from __future__ import annotations

import logging
import re
import threading
from array import array
from collections import deque
from itertools import accumulate
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from ... import protocol as p
from ..contract import DurableListener, StoreCorrupt
from ..fileio import FileHandle, FileLayer, FileReader
from .records import BODY_START, MESSAGE_CRC_GROUP, MESSAGE_RECORD
from .scan import scan

log = logging.getLogger(__name__)

#: Why a send fails while the store waits out a disk error, and why a lost one failed.
DISK_BUSY = "the server could not store the message (disk error); try again shortly"
DISK_LOST = "the server could not store the message (disk error); it was not sent"
#: After a failed journal write, sends are refused for this long, doubling up to the
#: maximum while the disk keeps failing; a successful write starts again at the minimum.
BACKOFF_MIN, BACKOFF_MAX = 0.5, 8.0
#: A round takes whole batches from the intake until they hold this many sends; the rest
#: wait for the next round. Under a flood (a thousand busy connections) this keeps a round
#: to tens of milliseconds, so acknowledgements flow out while the rest is stored, instead
#: of every sender waiting for one round of everything in flight.
ROUND_SENDS = 1024
#: Where a message's body is, by id - 1: its offset in the journal, or one of these.
UNWRITTEN, LOST = -1, -2

#: Replay's callback for each good record: its match, id, message JSON length, line number
#: and byte offset.
Index = Callable[["re.Match[bytes]", int, int, int, int], None]
#: A submitted batch on the intake: (token, sends).
Submitted = Tuple[Any, List[Any]]
#: The store's hook that queues a round's sends (its lock held): an outcome list per batch.
Admit = Callable[[List[Submitted]], List[List[Any]]]
#: The store's hook after a round: the batches, their outcomes, the ids a failed write lost.
RoundDone = Callable[[List[Submitted], List[List[Any]], Optional[range]], None]


#: Told of each message of a failed write, newest first: its id, and what the store
#: queued with it to take it back out of its indexes.
OnLost = Callable[[int, Any], None]


class MessageJournal:
    """The message journal file, its committer thread and what is durable.

    The state is guarded by the store's lock (``lock``); the committer does
    its I/O without it.
    """

    def __init__(self, path: str, files: FileLayer, lock: threading.Lock,
                 monotonic: Callable[[], float], on_lost: OnLost) -> None:
        self.path = path
        self._files = files
        self._lock = lock
        self._durable = threading.Condition(lock)  # waiters: the durable id moved
        self._monotonic = monotonic
        self._on_lost = on_lost

        self.where = array("q")      # offset of the body, or UNWRITTEN or LOST, by id - 1
        self.lengths = array("I")    # length of the body, by id - 1
        self.unwritten: Dict[int, str] = {}   # bodies queued, not yet written
        self.reader: Optional[FileReader] = None
        self.last_id = 0
        self.durable_id = 0

        # Queued, not yet written: the lines of ids last_id - len + 1 .. last_id (ids are
        # contiguous: a failed write burns everything pending), and each one's undo.
        self._lines: List[bytes] = []
        self._undos: List[Any] = []
        self._intake: Deque[Submitted] = deque()   # submitted batches, not yet admitted
        self._wake = threading.Event()             # the committer: there is work
        self._admit: Optional[Admit] = None
        self._round_done: Optional[RoundDone] = None
        self._closing = False
        self._stopped = False                      # the committer has exited
        self._listeners: List[DurableListener] = []
        self.commits = 0
        self.committed_bytes = 0
        self.lost_count = 0
        self._handle: Optional[FileHandle] = None
        self._size = 0                  # bytes of the journal that are durable
        self._good = 0                  # the good prefix found by load
        self._found = 0                 # the size found by load
        self._cut_needed = False        # a failed batch's bytes may still be on disk
        self._backoff = BACKOFF_MIN
        self._retry_at = 0.0            # monotonic time before which sends are refused
        #: Closing or backing off: a send must ask ``check_open`` and ``check_backoff``.
        #: One attribute, so the usual send pays a single check (the lock is held).
        self.refusing = False
        self._committer: Optional[threading.Thread] = None

    # ------------------------------------------------------------ opening and closing

    def load(self, index: Index) -> None:
        """Replay the journal, handing each good record to ``index``; no file is changed."""
        try:
            reader = self._files.open_read(self.path)
        except FileNotFoundError:
            return
        try:
            self._good = scan(self._files, reader, self.path, MESSAGE_RECORD,
                              MESSAGE_CRC_GROUP, self._replayer(index))
            self._found = reader.size()
        finally:
            reader.close()
            self.last_id = len(self.where)

    def _replayer(self, index: Index) -> Callable[["re.Match[bytes]", bytes, int, int], None]:
        """The scanner's callback: the id and the body's place, then ``index``.

        It runs a million times at start-up, so what it needs is bound to
        local names once, here.
        """
        where, path = self.where, self.path
        add_where, add_length = where.append, self.lengths.append

        def take(m: "re.Match[bytes]", body: bytes, line: int, offset: int) -> None:
            msg_id = int(m.group(3))
            if msg_id != len(where) + 1:   # ids only grow, but skip ids lost to failed writes
                self._skip_to(msg_id, line, offset)
            if not body.isascii():
                raise StoreCorrupt(path, line, offset, "a record that is not ASCII")
            start, end = m.span(2)
            add_where(offset + BODY_START)
            add_length(end - start)
            index(m, msg_id, end - start, line, offset)

        return take

    def _skip_to(self, msg_id: int, line: int, offset: int) -> None:
        """Mark the ids before ``msg_id`` lost; StoreCorrupt if it does not grow."""
        expected = len(self.where) + 1
        if msg_id < expected:
            raise StoreCorrupt(self.path, line, offset, f"message id {msg_id} "
                               f"out of sequence (expected {expected} or more)")
        self.where.extend(array("q", [LOST]) * (msg_id - expected))
        self.lengths.extend(array("I", [0]) * (msg_id - expected))

    def open(self) -> None:
        """Cut away a torn tail found by ``load``; open for appending and reading."""
        if self._good < self._found:
            self._files.truncate(self.path, self._good)
        self._size = self._good
        self._handle = self._files.open_append(self.path)
        self.reader = self._files.open_read(self.path)
        self.durable_id = self.last_id

    def set_round_hooks(self, admit: Admit, round_done: RoundDone) -> None:
        """How submitted batches become queued lines, and who hears of each round."""
        self._admit, self._round_done = admit, round_done

    def start(self) -> None:
        self._committer = threading.Thread(target=self._commit_loop, name="store-committer",
                                           daemon=True)
        self._committer.start()

    def stop(self) -> None:
        """Commit what is pending and stop the committer; idempotent."""
        with self._lock:
            self._closing = True
            self.refusing = True
        self._wake.set()
        if self._committer is not None:
            self._committer.join()
        self._stopped = True
        self._answer_intake()

    def close_files(self) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
            reader, self.reader = self.reader, None
        for f in (handle, reader):
            if f is not None:
                try:
                    f.close()
                except OSError as exc:
                    log.error("closing %s: %s", self.path, exc)

    # ------------------------------------------------------------ appending (lock held)

    def check_open(self) -> None:
        """ChatError(server_error) once the store is closing."""
        if self._closing:
            raise p.ChatError(p.SERVER_ERROR, "the store is closed")

    def check_backoff(self) -> None:
        """ChatError(server_error) while backing off after a disk error."""
        if self._retry_at and self._monotonic() < self._retry_at:
            raise p.ChatError(p.SERVER_ERROR, DISK_BUSY)

    def queue(self, msg_id: int, line: bytes, body: str, undo: Any) -> None:
        """Queue the next message (``msg_id`` is ``last_id + 1``) for the committer; a
        caller other than the committer's own round then calls ``wake``. ``undo`` is
        what ``on_lost`` gets back if the write fails."""
        self._lines.append(line)
        self._undos.append(undo)
        self.where.append(UNWRITTEN)
        self.lengths.append(len(body))
        self.unwritten[msg_id] = body
        self.last_id = msg_id

    def wake(self) -> None:
        """Tell the committer that lines were queued outside its round (``append``)."""
        self._wake.set()

    def submit(self, token: Any, sends: List[Any]) -> None:
        """Put a batch of sends on the intake for the committer's next round.

        Takes no lock the committer holds: a deque append and one event. After
        the committer has exited, the batch is answered here (with errors).
        """
        self._intake.append((token, sends))
        self._wake.set()
        if self._stopped:
            self._answer_intake()

    # ------------------------------------------------------------ durability

    def add_listener(self, listener: DurableListener) -> None:
        self._listeners.append(listener)

    def _notify_listeners(self, durable_id: int, failed: Optional[range]) -> None:
        for listener in self._listeners:
            try:
                listener(durable_id, failed)
            except Exception:
                log.exception("a durable listener failed")

    def wait_durable(self, msg_id: int) -> None:
        """Block until ``msg_id`` and every one before it is fsynced; ChatError if lost."""
        with self._lock:
            if msg_id > self.last_id:
                raise ValueError(f"no message {msg_id} was appended")
            while True:
                if self.is_lost(msg_id):
                    raise p.ChatError(p.SERVER_ERROR, DISK_LOST)
                if self.durable_id >= msg_id:
                    return
                self._durable.wait()

    def is_lost(self, msg_id: int) -> bool:
        """Whether the id was burned by a failed write, in this run or an earlier one;
        the lock is held."""
        return 1 <= msg_id <= self.last_id and self.where[msg_id - 1] == LOST

    def pending_count(self) -> int:
        return len(self._lines)

    # ------------------------------------------------------------ the committer

    def _take_intake(self, limit: Optional[int] = None) -> List[Submitted]:
        """The batches waiting on the intake, oldest first: all of them, or (``limit``)
        whole batches until they hold that many sends."""
        taken: List[Submitted] = []
        pop = self._intake.popleft
        sends = 0
        while limit is None or sends < limit:
            try:
                batch = pop()
            except IndexError:
                break
            taken.append(batch)
            sends += len(batch[1])
        return taken

    def _answer_intake(self) -> None:
        """Answer what is on the intake once the committer is gone (the store is
        closed: every send is refused, each batch still gets its answer)."""
        taken = self._take_intake()
        if taken and self._admit is not None and self._round_done is not None:
            with self._lock:
                outcomes = self._admit(taken)
            self._round_done(taken, outcomes, None)

    def _commit_loop(self) -> None:
        """The committer: each round, the whole intake and everything queued meanwhile
        in one write and one fsync, then every batch's outcome at once."""
        handle = self._handle
        assert handle is not None
        wake = self._wake
        while True:
            if not self._closing and not self._intake:
                wake.wait()
                wake.clear()    # before taking the intake: a later submit sets it again
            taken = self._take_intake(ROUND_SENDS)
            with self._lock:
                outcomes = self._admit(taken) if taken and self._admit is not None else []
                lines, undos = self._lines, self._undos
                if lines:
                    self._lines, self._undos = [], []
                first = self.last_id - len(lines) + 1
            failed = None
            if lines:
                data = b"".join(lines)
                try:
                    if self._cut_needed:   # never append after a failed batch's leftovers
                        self._files.truncate(self.path, self._size)
                        self._cut_needed = False
                    handle.write(data)
                    handle.sync()
                except Exception as exc:  # the thread must not die silently: waiters would hang
                    failed = self._batch_failed(first, undos, exc)
                else:
                    self._batch_stored(first, lines, len(data))
            if taken and self._round_done is not None:
                try:
                    self._round_done(taken, outcomes, failed)
                except Exception:
                    log.exception("delivering a round of %d batches failed", len(taken))
            if self._closing and not lines and not taken:
                return

    def _batch_stored(self, first: int, lines: List[bytes], size: int) -> None:
        """Record where the batch's bodies now are, and that they are durable.

        The batch's ids are contiguous (a failed batch burns all that was
        pending), so the offsets are computed outside the lock and put in place
        with one slice assignment: handler threads appending meanwhile wait on
        the lock for microseconds, not for a loop over the batch. The bodies
        held in memory are dropped after the lock is released; a reader who
        still finds one there gets the same text.
        """
        upto = first + len(lines) - 1
        offsets = array("q", accumulate(map(len, lines), initial=self._size + BODY_START))
        del offsets[-1]   # the end of the last line, not the start of a body
        with self._lock:
            self.where[first - 1:upto] = offsets   # the bodies are on disk: read them there
            self._size += size
            self.durable_id = upto
            self.commits += 1
            self.committed_bytes += size
            self._backoff, self._retry_at = BACKOFF_MIN, 0.0
            self.refusing = self._closing
            self._durable.notify_all()
        deque(map(self.unwritten.pop, range(first, upto + 1)), maxlen=0)   # C speed
        self._notify_listeners(upto, None)

    def _batch_failed(self, first: int, undos: List[Any], exc: BaseException) -> range:
        """A write or fsync failed (a full disk, say): give up on the batch, not the store.

        The journal is cut back to its durable size, so nothing half written
        can surface after a restart or come between good records; the batch,
        and whatever was queued behind it, leaves every index and its ids are
        burned, never reused in this run. Sends are refused for a backoff that
        grows while the disk keeps failing, then the next batch tries again.
        """
        self._cut_needed = True
        try:
            self._files.truncate(self.path, self._size)
            self._cut_needed = False
        except OSError as cut_exc:
            log.error("could not cut %s back to %d bytes (retried before the next write): %s",
                      self.path, self._size, cut_exc)
        with self._lock:
            undos = undos + self._undos       # and whatever was queued behind the batch
            self._lines, self._undos = [], []
            failed = range(first, first + len(undos))
            for msg_id, undo in zip(reversed(failed), reversed(undos)):   # newest first:
                self._on_lost(msg_id, undo)                             # each index pops
                self.where[msg_id - 1] = LOST
                del self.unwritten[msg_id]
            self.lost_count += len(failed)
            self._retry_at = self._monotonic() + self._backoff
            self.refusing = True
            backoff, self._backoff = self._backoff, min(self._backoff * 2, BACKOFF_MAX)
            self._durable.notify_all()
        log.error("could not store messages %d..%d in %s (%s); they are lost, and sends are "
                  "refused for %.1f s", failed.start, failed.stop - 1, self.path, exc,
                  backoff)
        self._notify_listeners(self.durable_id, failed)
        return failed
