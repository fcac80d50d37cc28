"""The durable, lock-guarded database: accounts, read markers, messages.

A data folder holds:

``LOCK``
    Held (``chat.dblock``) by the one store that has the folder open, from
    before it reads any file until it closes: a second opener is refused
    before it could mistake the first one's write in progress for a torn
    tail and cut it away. No repair happens without it.

``users.json``
    A snapshot of the accounts and read markers, ``{"version": 2, "seq": S,
    "users": {key: {"name", "hash", "created"}}, "read": {key: {peer_key:
    id}}}``, keyed by ``protocol.user_key``, holding every account change up
    to number ``S``. Replaced atomically now and then, never edited. A
    version 1 file (from before the accounts journal: no ``seq``, so change 0)
    is read as it is and left alone until the first compaction. A new folder
    has none until then.

``accounts.jsonl``
    The accounts journal: every change after the snapshot, one a line,
    ``{"a":<change JSON>,"c":<zlib.crc32 of the change JSON bytes>}``, the
    change being ``{"seq", "op": "signup" | "hash" | "read", ...}`` with
    ``seq`` strictly growing. A sign-up, hash upgrade or marker move appends
    one line with one fsync before it returns, whatever the number of
    accounts; concurrent callers share the fsync. A change is applied in
    memory only once durable, so nothing is shown that a crash could take
    back, and a failed write raises ChatError(server_error) and changes
    nothing. Once the journal is larger than the snapshot (and
    ``compact_min_bytes``) it is folded into a new snapshot in the background:
    first the snapshot is replaced, then the journal by one holding only the
    changes after ``S``. Changes at or below the snapshot's ``seq`` are skipped
    on replay, so a crash between the two steps is harmless.

``messages.jsonl``
    An append-only journal, one record a line:
    ``{"m":<message JSON>,"c":<zlib.crc32 of the message JSON bytes>}``. Ids
    grow strictly but may skip ids burned by a failed write.

Messages are written by group commit: ``append_message`` only assigns the id,
builds the JSON and queues the line (no I/O), and one committer thread writes
everything queued in one write and one fsync, so concurrent senders share
fsyncs. ``wait_durable`` is what makes a message a promise. Readers
(``history``, ``unread_counts``, ``get_message``) see durable messages only.
Memory holds each message's id, journal offset and length and the sorted id
indexes; bodies are read back from the journal by position, through a bounded
LRU cache (``cache_bytes``), and only messages not yet written are held whole.

A failed message write (a full disk) loses that batch, not the store: the
journal is cut back to its durable size, the batch's messages leave every
index and their ids are burned (``lost``; never reused in this run) and
reported to the durable listeners, sends are refused for a backoff (0.5 s
doubling to 8 s), and then the store tries again by itself.

Read markers are capped at the newest durable message from the peer, and a
marker that does not move is not written, so markers grow with
conversations, not with users squared. New names that look like an existing
account's (``protocol.name_skeleton``) are refused. ``sent_bytes`` counts what
each user has written, for a quota.

Opening replays the journals, streamed in bounded chunks. A damaged tail is
what a crash during a write leaves, and is cut away with a warning; damage
with intact records after it is not, and raises ``StoreCorrupt`` naming the
file, line and byte offset, with every file left exactly as it was.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import zlib
from array import array
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Pattern,
    Tuple,
    Union,
)

from . import protocol as p
from .fileio import FileHandle, FileLayer, FileReader, FolderLock, OsFileLayer

log = logging.getLogger(__name__)

USERS_FILE = "users.json"
ACCOUNTS_FILE = "accounts.jsonl"
JOURNAL_FILE = "messages.jsonl"
DOC_VERSION = 2

_NAME = rb"[A-Za-z0-9_.\-]{1,32}"
#: One journal line. Group 1 is the message JSON (what the crc covers), 2 its id,
#: 3 the from/to pair (a cache key), 4 and 5 the names, 6 the crc. The message
#: JSON's key order is fixed by protocol.message_json, which is what makes a
#: regular expression enough to index a record without parsing it.
_RECORD = re.compile(
    rb'\{"m":(\{"id":([0-9]{1,18}),("from":"(' + _NAME + rb')","to":"(' + _NAME
    + rb')"),.*\}),"c":([0-9]{1,10})\}\Z', re.DOTALL)
#: One accounts-journal line: group 1 the change JSON (what the crc covers), 2 its
#: sequence number, 3 the crc.
_ACCOUNT_RECORD = re.compile(rb'\{"a":(\{"seq":([0-9]{1,18}),.*\}),"c":([0-9]{1,10})\}\Z',
                             re.DOTALL)

#: The sorted id arrays a message from one user to another is filed in.
_Route = Tuple[array, ...]
#: A message appended but not yet durable: id, journal line, route, sender key, body bytes.
_Queued = Tuple[int, bytes, _Route, str, int]
#: A body to read from the journal: its slot in the answer, id, offset and length.
_Missing = Tuple[int, int, int, int]
#: Why a send fails while the store waits out a disk error, and why a lost one failed.
DISK_BUSY = "the server could not store the message (disk error); try again shortly"
DISK_LOST = "the server could not store the message (disk error); it was not sent"
CHANGE_LOST = "the server could not store the change (disk error)"
#: After a failed journal write, sends are refused for this long, doubling up to the
#: maximum while the disk keeps failing; a successful write starts again at the minimum.
BACKOFF_MIN, BACKOFF_MAX = 0.5, 8.0
#: The accounts journal is folded into the snapshot once it is larger than the
#: snapshot and than this: the rewrite's cost is spread over as many bytes of changes.
COMPACT_MIN_BYTES = 1 << 20
#: How many bytes of message bodies the read cache keeps (the rest stay on disk).
CACHE_BYTES = 4 << 20
#: What one cached body costs beyond its characters (the str and the cache entry).
_CACHE_OVERHEAD = 120
#: Bodies closer than this in the journal are fetched with one read of at most _READ_SPAN.
_READ_GAP, _READ_SPAN = 4096, 256 << 10
#: Where a message's body is, by id - 1: its offset in the journal, or one of these.
_UNWRITTEN, _LOST = -1, -2
#: Bytes before the message JSON in a journal line: ``{"m":``.
_BODY_START = 5
#: The listener's arguments: the durable id, and the ids lost with a failed batch.
DurableListener = Callable[[int, Optional[range]], None]
#: The scanner's callback: a good record's match, its checked bytes (group 1), its line
#: number and byte offset.
_Take = Callable[["re.Match[bytes]", bytes, int, int], None]

_QUEUED, _DONE, _FAILED = "queued", "done", "failed"


class StoreCorrupt(Exception):
    """Damage that recovery must not paper over; names the file and the position."""

    def __init__(self, path: str, line: int, offset: int, reason: str) -> None:
        super().__init__(f"{path}: line {line}, byte offset {offset}: {reason}")
        self.path = path
        self.line = line
        self.offset = offset
        self.reason = reason


@dataclass
class User:
    name: str            # canonical spelling (as first signed up)
    password_hash: str


def _ids(index: Dict[Any, array], key: Any) -> array:
    ids = index.get(key)
    if ids is None:
        ids = index[key] = array("q")
    return ids


def _contains(ids: Optional[array], msg_id: int) -> bool:
    if ids is None:
        return False
    i = bisect_left(ids, msg_id)
    return i < len(ids) and ids[i] == msg_id


# ---------------------------------------------------------------- journal scanning

def _scan(files: FileLayer, reader: FileReader, path: str, record: Pattern[bytes],
          crc_group: int, take: _Take) -> int:
    """Feed every good record of a journal to ``take``; the length of the good prefix.

    The journal is read a chunk at a time (never whole: it may be larger than
    the memory the server should use). Group 1 of ``record`` is what the crc
    in ``crc_group`` covers. A line that is cut short, is not a record or
    fails its crc is what a crash during a write leaves when nothing good
    follows it: the scan stops there with a warning, and the caller cuts the
    rest away. Anything good after it is damage instead: StoreCorrupt.
    """
    chunks = files.read_chunks(reader)
    crc32 = zlib.crc32
    match = record.match
    line = good = 0
    for buf, base in chunks:
        pos, size = 0, len(buf)
        find = buf.find
        while pos < size:
            end = find(b"\n", pos)
            line += 1
            m = match(buf, pos, end) if end >= 0 else None
            if m is not None:
                body = m.group(1)
            if m is None or crc32(body) != int(m.group(crc_group)):
                if end < 0:
                    end, reason = size, "no newline at its end"
                else:
                    reason = "not a journal record" if m is None else "checksum mismatch"
                _refuse_if_good_follows(buf, end + 1, chunks, record, crc_group,
                                        StoreCorrupt(path, line, base + pos,
                                                     f"{reason}, and good records follow it"))
                log.warning("%s: dropping a damaged tail at byte offset %d (line %d, %d bytes, "
                            "%s): a write cut short by a crash", path, base + pos, line,
                            reader.size() - base - pos, reason)
                return base + pos
            take(m, body, line, base + pos)
            pos = end + 1
        good = base + size
    return good


def _refuse_if_good_follows(buf: bytes, pos: int, chunks: Iterator[Tuple[bytes, int]],
                            record: Pattern[bytes], crc_group: int,
                            damage: StoreCorrupt) -> None:
    """Raise ``damage`` if an intact record follows ``pos`` in ``buf`` or later chunks."""
    while True:
        size = len(buf)
        while pos < size:
            end = buf.find(b"\n", pos)
            if end < 0:
                end = size
            m = record.match(buf, pos, end)
            if m is not None and zlib.crc32(m.group(1)) == int(m.group(crc_group)):
                raise damage
            pos = end + 1
        nxt = next(chunks, None)
        if nxt is None:
            return
        buf, pos = nxt[0], 0


# ---------------------------------------------------------------- accounts

class _Account(NamedTuple):
    name: str            # canonical spelling (as first signed up)
    hash: str
    created: float


def _encode_doc(seq: int, accounts: Dict[str, _Account],
                read: Dict[str, Dict[str, int]]) -> bytes:
    """The users.json snapshot: every account and marker as of accounts change ``seq``."""
    users = {key: {"name": a.name, "hash": a.hash, "created": a.created}
             for key, a in accounts.items()}
    doc = {"version": DOC_VERSION, "seq": seq, "users": users, "read": read}
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode("ascii")


def _parse_doc(doc: Any) -> Tuple[int, Dict[str, _Account], Dict[str, Dict[str, int]]]:
    """Check the shape of users.json: (seq, accounts, markers); ValueError says what is wrong.

    Version 1, written before there was an accounts journal, has no ``seq``:
    it holds every change, so it counts as change 0.
    """
    if not isinstance(doc, dict) or doc.get("version") not in (1, DOC_VERSION):
        raise ValueError(f"not a version 1 or {DOC_VERSION} users document")
    seq = doc.get("seq") if doc["version"] == DOC_VERSION else 0
    if type(seq) is not int or seq < 0:
        raise ValueError(f'a version {DOC_VERSION} users document needs a "seq" count')
    users, read = doc.get("users"), doc.get("read", {})
    if not isinstance(users, dict) or not isinstance(read, dict):
        raise ValueError('"users" and "read" must be objects')
    accounts: Dict[str, _Account] = {}
    for key, rec in users.items():
        name = rec.get("name") if isinstance(rec, dict) else None
        if (not isinstance(name, str) or not p.USERNAME_RE.match(name)
                or p.user_key(name) != key or not isinstance(rec.get("hash"), str)):
            raise ValueError(f"bad account record {key[:40]!r}")
        accounts[key] = _Account(name, rec["hash"], rec.get("created", 0))
    markers: Dict[str, Dict[str, int]] = {}
    for key, peers in read.items():
        if not isinstance(peers, dict) or not all(
                type(v) is int for v in peers.values()):
            raise ValueError(f"bad read markers for {key[:40]!r}")
        markers[key] = dict(peers)
    return seq, accounts, markers


def _check_change(change: Any, accounts: Dict[str, _Account]) -> None:
    """ValueError unless ``change`` is an accounts-journal change that fits ``accounts``.

    Its crc was good, so this is not a torn write: a change that does not fit
    is damage (or a bug), and loading refuses it rather than guess.
    """
    op = change.get("op") if isinstance(change, dict) else None
    if op == "signup":
        name = change.get("name")
        if not isinstance(name, str) or not p.USERNAME_RE.match(name):
            raise ValueError("a sign-up with a bad name")
        if p.user_key(name) in accounts:
            raise ValueError(f"a second sign-up for {name!r}")
        if (not isinstance(change.get("hash"), str)
                or not isinstance(change.get("created"), (int, float))):
            raise ValueError(f"a bad sign-up for {name!r}")
    elif op == "hash":
        if change.get("user") not in accounts or not isinstance(change.get("hash"), str):
            raise ValueError("a hash change for no account")
    elif op == "read":
        if change.get("user") not in accounts or change.get("peer") not in accounts:
            raise ValueError("a read marker for no account")
        if type(change.get("upto")) is not int:
            raise ValueError("a read marker that is not a number")
    else:
        raise ValueError(f"an unknown kind of change {str(op)[:20]!r}")


class _Change:
    """One account change on its way to the accounts journal."""

    __slots__ = ("seq", "change", "line", "state")

    def __init__(self, seq: int, change: Dict[str, Any]) -> None:
        self.seq = seq
        self.change = change
        body = json.dumps(dict(seq=seq, **change), separators=(",", ":")).encode("ascii")
        self.line = b'{"a":%s,"c":%d}\n' % (body, zlib.crc32(body))
        self.state = _QUEUED


class _AccountBook:
    """Accounts and read markers: the snapshot, the journal of changes since, compaction.

    Every change is one CRC-protected line appended to the accounts journal
    and fsynced before the call returns, so its cost does not grow with the
    number of accounts; callers that arrive while a write is in flight share
    the next fsync. A change is applied in memory only once durable
    (sign-ups on their way reserve their name meanwhile), so nothing is
    visible that a crash could take back, and a failed write changes
    nothing. The state is guarded by the store's lock.
    """

    def __init__(self, directory: str, files: FileLayer, lock: threading.Lock,
                 monotonic: Callable[[], float], compact_min_bytes: int) -> None:
        self.directory = directory
        self.users_path = os.path.join(directory, USERS_FILE)
        self.path = os.path.join(directory, ACCOUNTS_FILE)
        self._files = files
        self._lock = lock                      # the store's: guards the state below
        self._io = threading.Lock()            # one journal write (or switch) at a time
        self._compact_lock = threading.Lock()  # one compaction at a time
        self._monotonic = monotonic
        self._compact_min = compact_min_bytes

        # the state; the marker dicts inside are replaced, never changed, so a
        # shallow copy is a snapshot that can be encoded outside the lock
        self.accounts: Dict[str, _Account] = {}
        self.read: Dict[str, Dict[str, int]] = {}
        self._skeletons: Dict[str, str] = {}   # name_skeleton -> key of the first such account
        self._sorted_keys: Optional[List[str]] = None
        self._reserved: Dict[str, str] = {}    # key -> name, for sign-ups on their way
        self._reserved_skeletons: Dict[str, str] = {}

        self._seq = 0                  # the last change number handed out
        self._durable_seq = 0          # every change up to it is on disk and applied
        self._replayed_seq = 0         # the last change number seen in the journal at load
        self._snapshot_size = 0
        self._queue: List[_Change] = []
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
            self._good = _scan(self._files, reader, self.path, _ACCOUNT_RECORD, 3,
                               self._replay_change)
            self._size = reader.size()
        finally:
            reader.close()
        self._seq = self._durable_seq = max(self._durable_seq, self._replayed_seq)

    def open(self) -> None:
        """Cut away a torn tail found by ``load``; open the journal for appending."""
        if self._good < self._size:
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
            seq, accounts, read = _parse_doc(json.loads(text))
        except json.JSONDecodeError as exc:
            offset = len(text[:exc.pos].encode("utf-8"))
            raise StoreCorrupt(path, exc.lineno, offset, f"not valid JSON: {exc.msg}") from None
        except ValueError as exc:
            raise StoreCorrupt(path, 1, 0, str(exc)) from None
        self.accounts, self.read = accounts, read
        for key, account in accounts.items():  # look-alikes stored before the rule: first wins
            self._skeletons.setdefault(p.name_skeleton(account.name), key)
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
            _check_change(change, self.accounts)
        except ValueError as exc:
            raise StoreCorrupt(self.path, line, offset, str(exc)) from None
        self._apply(change)

    # ------------------------------------------------------------ reading (lock held)

    def usernames(self) -> List[str]:
        """Canonical names sorted case-insensitively; the lock is held."""
        if self._sorted_keys is None:
            self._sorted_keys = sorted(self.accounts)
        accounts = self.accounts
        return [accounts[key].name for key in self._sorted_keys]

    def key_of(self, name: str) -> str:
        """The key of an existing account; ChatError(unknown_user). The lock is held."""
        key = p.user_key(name)
        if key not in self.accounts:
            raise p.ChatError(p.UNKNOWN_USER, f"there is no user {name[:40]!r}")
        return key

    # ------------------------------------------------------------ changing

    def add(self, name: str, password_hash: str, created: float) -> None:
        """Sign ``name`` up; durable when it returns. ChatError(username_taken)."""
        key, skeleton = p.user_key(name), p.name_skeleton(name)
        with self._lock:
            if key in self.accounts or key in self._reserved:
                raise p.ChatError(p.USERNAME_TAKEN, f"the name {name!r} is taken")
            self._refuse_lookalike(name, skeleton)
            change = self._queue_change({"op": "signup", "name": name, "hash": password_hash,
                                         "created": created})
            self._reserved[key] = name
            self._reserved_skeletons[skeleton] = name
        self._write_through(change)

    def _refuse_lookalike(self, name: str, skeleton: str) -> None:
        """ChatError(username_taken) if ``name`` reads like an existing account's name.

        Someone signing up as ``VlCTlM`` next to ``victim`` could pass for them
        in every list. The lock is held.
        """
        other = self._reserved_skeletons.get(skeleton)
        if other is None:
            key = self._skeletons.get(skeleton)
            other = None if key is None else self.accounts[key].name
        if other is not None:
            raise p.ChatError(p.USERNAME_TAKEN,
                              f"the name {name!r} is too like the existing account {other!r}")

    def set_hash(self, name: str, password_hash: str) -> None:
        """Replace an account's hash; durable when it returns. ChatError(unknown_user)."""
        with self._lock:
            change = self._queue_change({"op": "hash", "user": self.key_of(name),
                                         "hash": password_hash})
        self._write_through(change)

    def mark(self, ukey: str, pkey: str, upto: int) -> None:
        """Move a marker forward; durable when it returns. Writes nothing unless it moves.

        The marker in memory is durable (changes are applied once written), so
        a call that would not move it may return at once.
        """
        with self._lock:
            if upto <= self.read.get(ukey, {}).get(pkey, 0):
                return
            change = self._queue_change({"op": "read", "user": ukey, "peer": pkey,
                                         "upto": upto})
        self._write_through(change)

    def _queue_change(self, change: Dict[str, Any]) -> _Change:
        """Number ``change`` and queue it for the next write; the lock is held."""
        if self._closing:
            raise p.ChatError(p.SERVER_ERROR, "the store is closed")
        self._seq += 1
        queued = _Change(self._seq, change)
        self._queue.append(queued)
        return queued

    def _write_through(self, change: _Change) -> None:
        """Return once ``change`` is durable and applied; ChatError(server_error) if not.

        The first caller to get the journal writes everything queued, so
        callers that queued while a write was in flight share the next one.
        """
        with self._io:
            with self._lock:
                batch: List[_Change] = []
                if change.state is _QUEUED:
                    batch, self._queue = self._queue, []
            if batch:
                self._write(batch)
        if change.state is not _DONE:
            raise p.ChatError(p.SERVER_ERROR, CHANGE_LOST)
        self._maybe_compact()

    def _write(self, batch: List[_Change]) -> None:
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
                self._apply(change.change)
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

    def _write_failed(self, batch: List[_Change], exc: BaseException) -> None:
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

    def _release(self, change: _Change, state: str) -> None:
        """Settle a change; a sign-up gives back its reserved name. The lock is held."""
        change.state = state
        if change.change["op"] == "signup":
            name = change.change["name"]
            del self._reserved[p.user_key(name)]
            del self._reserved_skeletons[p.name_skeleton(name)]

    def _apply(self, change: Dict[str, Any]) -> None:
        """Make a durable (or replayed) change visible; the lock is held."""
        op = change["op"]
        if op == "read":
            user, peer, upto = change["user"], change["peer"], change["upto"]
            markers = self.read.get(user, {})
            if upto > markers.get(peer, 0):
                self.read[user] = {**markers, peer: upto}
        elif op == "hash":
            key = change["user"]
            self.accounts[key] = self.accounts[key]._replace(hash=change["hash"])
        else:
            name = change["name"]
            key = p.user_key(name)
            self.accounts[key] = _Account(name, change["hash"], change["created"])
            self._skeletons.setdefault(p.name_skeleton(name), key)
            if self._sorted_keys is not None:
                insort(self._sorted_keys, key)

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
                    self._compact_retry_at = self._monotonic() + BACKOFF_MAX

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
                    seq = self._durable_seq
                    accounts, read = dict(self.accounts), dict(self.read)
                self._tail = []
            try:
                data = _encode_doc(seq, accounts, read)
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
                 len(accounts), seq)
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


# ---------------------------------------------------------------- the store

class Store:
    """The chat database in one folder. Thread-safe: one lock guards the state.

    One store per folder (the folder lock refuses a second one, in this
    process or another). ``StoreCorrupt`` from the constructor means the
    folder needs a person; nothing was changed.
    """

    def __init__(self, directory: Union[str, "os.PathLike[str]"], *,
                 files: Optional[FileLayer] = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 compact_min_bytes: int = COMPACT_MIN_BYTES,
                 cache_bytes: int = CACHE_BYTES) -> None:
        self.directory = os.fspath(directory)
        self._files = files if files is not None else OsFileLayer()
        self._clock = clock
        self._monotonic = monotonic
        self._journal_path = os.path.join(self.directory, JOURNAL_FILE)

        self._lock = threading.Lock()                  # all in-memory state
        self._work = threading.Condition(self._lock)   # committer: lines are pending
        self._durable = threading.Condition(self._lock)  # waiters: durable id moved
        self._book = _AccountBook(self.directory, self._files, self._lock, monotonic,
                                  compact_min_bytes)
        self._names: Dict[str, str] = {}   # key -> canonical, for names only the journal knows

        # messages: where each body is in the journal and its length, by id - 1
        # (bodies are read on demand, through a bounded cache), and sorted id
        # arrays for the indexes
        self._where = array("q")      # offset of the body, or _UNWRITTEN or _LOST
        self._lengths = array("I")
        self._cache: "OrderedDict[int, str]" = OrderedDict()
        self._cache_size = 0
        self._cache_limit = cache_bytes
        self._reader: Optional[FileReader] = None
        self._by_user: Dict[str, array] = {}
        self._by_pair: Dict[Tuple[str, str], array] = {}
        self._inbox: Dict[str, Dict[str, array]] = {}   # recipient -> sender -> ids
        self._routes: Dict[Tuple[str, str], _Route] = {}
        self._sent: Dict[str, int] = {}   # sender key -> bytes of message JSON authored
        self._last_id = 0
        self._durable_id = 0

        # group commit
        self._pending: List[_Queued] = []
        self._idle = False
        self._closing = False
        self._listeners: List[DurableListener] = []
        self._commits = 0
        self._committed_bytes = 0
        self._lost = 0
        self._journal: Optional[FileHandle] = None
        self._journal_size = 0          # bytes of the journal that are durable
        self._cut_needed = False        # a failed batch's bytes may still be on disk
        self._backoff = BACKOFF_MIN
        self._retry_at = 0.0            # monotonic time before which sends are refused

        self._files.makedirs(self.directory)
        # Before any file is read: a second owner's repair would cut the first
        # owner's write in progress away as a torn tail.
        self._folder_lock: Optional[FolderLock] = self._files.lock(self.directory)
        try:
            self._open_files()
        except BaseException:
            self._close_files()
            self._release_folder()
            raise
        self._committer = threading.Thread(target=self._commit_loop, name="store-committer",
                                           daemon=True)
        self._committer.start()
        log.debug("opened %s: %d users, %d messages", self.directory,
                  len(self._book.accounts), self._last_id)

    def _open_files(self) -> None:
        """Load and check every file, then repair and open them; the folder lock is held.

        Nothing is changed until everything has been checked, so StoreCorrupt
        leaves the folder exactly as it was.
        """
        self._book.load()
        good, size = self._load_journal()
        self._remove_stale_temps()
        self._book.open()
        if good < size:
            self._files.truncate(self._journal_path, good)
        self._journal_size = good
        self._journal = self._files.open_append(self._journal_path)
        self._reader = self._files.open_read(self._journal_path)
        self._files.fsync_dir(self.directory)  # the journals' entries, if just created
        self._durable_id = self._last_id

    def _close_files(self) -> None:
        self._book.close()
        with self._lock:
            journal, self._journal = self._journal, None
            reader, self._reader = self._reader, None
        for handle in (journal, reader):
            if handle is not None:
                try:
                    handle.close()
                except OSError as exc:
                    log.error("closing %s: %s", self._journal_path, exc)

    def _release_folder(self) -> None:
        lock, self._folder_lock = self._folder_lock, None
        if lock is not None:
            lock.release()

    # ------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Commit what is pending, stop the committer, close the journals; idempotent."""
        with self._lock:
            self._closing = True
            self._work.notify()
        self._committer.join()
        self._close_files()
        self._release_folder()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def last_id(self) -> int:
        """The newest id handed out (its message may not be durable yet)."""
        return self._last_id

    @property
    def durable_id(self) -> int:
        """Every message up to this id is on disk, or lost (see ``lost``)."""
        return self._durable_id

    def stats(self) -> Dict[str, int]:
        """Counters for logs and benchmarks."""
        with self._lock:
            return {"users": len(self._book.accounts), "last_id": self._last_id,
                    "durable_id": self._durable_id, "pending": len(self._pending),
                    "commits": self._commits, "committed_bytes": self._committed_bytes,
                    "lost": self._lost, "compactions": self._book.compactions,
                    "cache_bytes": self._cache_size}

    # ------------------------------------------------------------ accounts

    def add_user(self, name: str, password_hash: str) -> str:
        """Create an account; durable when it returns.

        ChatError(username_taken) if the name is taken in any case, or looks
        like an existing account's (``protocol.name_skeleton``);
        ChatError(server_error) if the disk refused it (nothing changed).
        """
        p.validate_username(name)
        self._book.add(name, password_hash, self._clock())
        log.debug("account %s added", name)
        return name

    def get_user(self, name: str) -> Optional[User]:
        account = self._book.accounts.get(p.user_key(name))
        return None if account is None else User(account.name, account.hash)

    def set_password_hash(self, name: str, password_hash: str) -> None:
        """Replace an account's hash (a rehash at login); durable when it returns."""
        self._book.set_hash(name, password_hash)

    def canonical_name(self, name: str) -> Optional[str]:
        account = self._book.accounts.get(p.user_key(name))
        return None if account is None else account.name

    def usernames(self) -> List[str]:
        """Canonical names, sorted case-insensitively."""
        with self._lock:
            return self._book.usernames()

    def compact_accounts(self) -> bool:
        """Fold the accounts journal into users.json now (it also happens by itself)."""
        return self._book.compact()

    # ------------------------------------------------------------ read markers

    def mark_read(self, user: str, peer: str, upto: int) -> None:
        """Move ``user``'s marker for ``peer`` forward to ``upto`` (never back).

        The marker is capped at the newest durable message from ``peer`` to
        ``user``: one cannot mark unsent messages read, and a marker exists
        only for someone who wrote to you, so markers grow with conversations,
        not with users squared. A call that does not move the marker writes
        nothing. Durable when it returns.
        """
        with self._lock:
            ukey, pkey = self._book.key_of(user), self._book.key_of(peer)
            upto = min(upto, self._newest_from(pkey, ukey))
        self._book.mark(ukey, pkey, upto)

    def _newest_from(self, skey: str, tkey: str) -> int:
        """The newest durable id from ``skey`` to ``tkey`` (0: none); the lock is held."""
        ids = self._inbox.get(tkey, {}).get(skey)
        if not ids:
            return 0
        i = bisect_right(ids, self._durable_id)
        return ids[i - 1] if i else 0

    def read_marker(self, user: str, peer: str) -> int:
        """The id up to which ``user`` has read ``peer``'s messages (0: none)."""
        with self._lock:
            return self._book.read.get(p.user_key(user), {}).get(p.user_key(peer), 0)

    def unread_counts(self, user: str) -> Dict[str, int]:
        """Canonical sender -> durable messages to ``user`` above the marker (only > 0)."""
        ukey = p.user_key(user)
        counts: Dict[str, int] = {}
        with self._lock:
            inbox = self._inbox.get(ukey)
            if not inbox:
                return counts
            markers = self._book.read.get(ukey, {})
            accounts = self._book.accounts
            durable = self._durable_id
            for skey, ids in inbox.items():
                n = bisect_right(ids, durable) - bisect_right(ids, markers.get(skey, 0))
                if n > 0:
                    account = accounts.get(skey)
                    name = account.name if account else self._names.get(skey, skey)
                    counts[name] = n
        return counts

    # ------------------------------------------------------------ messages

    def append_message(self, sender: str, to: str, text: str,
                       reply_to: Optional[int] = None) -> Tuple[int, str]:
        """Assign the next id and queue the message: (id, message JSON).

        Not durable until ``wait_durable(id)`` returns. Names come out
        canonical. ChatError(unknown_message) if ``reply_to`` is not a message
        the sender sent or received; ChatError(server_error) when the store is
        closed, or for a while after the disk refused a write (see BACKOFF_MIN).
        """
        skey, tkey = p.user_key(sender), p.user_key(to)
        with self._lock:
            if self._closing:
                raise p.ChatError(p.SERVER_ERROR, "the store is closed")
            if self._retry_at and self._monotonic() < self._retry_at:
                raise p.ChatError(p.SERVER_ERROR, DISK_BUSY)
            accounts = self._book.accounts
            srec, trec = accounts.get(skey), accounts.get(tkey)
            if srec is None or trec is None:
                name = to if srec else sender
                raise p.ChatError(p.UNKNOWN_USER, f"there is no user {name[:40]!r}")
            if reply_to is not None and not _contains(self._by_user.get(skey), reply_to):
                raise p.ChatError(p.UNKNOWN_MESSAGE,
                                  f"you have no message {reply_to} to reply to")
            msg_id = self._last_id + 1
            body = p.message_json(msg_id, srec.name, trec.name, text, self._clock(), reply_to)
            raw = body.encode("ascii")
            route = self._routes.get((skey, tkey)) or self._route(skey, tkey)
            self._pending.append((msg_id, b'{"m":%s,"c":%d}\n' % (raw, zlib.crc32(raw)),
                                  route, skey, len(raw)))
            self._sent[skey] = self._sent.get(skey, 0) + len(raw)
            self._where.append(_UNWRITTEN)
            self._lengths.append(len(raw))
            for ids in route:
                ids.append(msg_id)
            self._last_id = msg_id
            if self._idle:
                self._idle = False
                self._work.notify()
        return msg_id, body

    def add_durable_listener(self, listener: DurableListener) -> None:
        """Call ``listener(durable_id, failed)`` from the committer after each batch.

        After a commit ``failed`` is None and every id up to ``durable_id`` is
        durable or lost. After a failed write ``failed`` is the range of ids
        that were lost with it (never stored, never to be shown) and
        ``durable_id`` has not moved. This lets a server acknowledge from the
        committer thread instead of waking one waiting thread per connection;
        the listener must not block.
        """
        self._listeners.append(listener)

    def _notify_listeners(self, durable_id: int, failed: Optional[range]) -> None:
        for listener in self._listeners:
            try:
                listener(durable_id, failed)
            except Exception:
                log.exception("a durable listener failed")

    def wait_durable(self, msg_id: int) -> None:
        """Block until the message ``msg_id`` and every one before it is fsynced.

        ChatError(server_error) if the message was lost to a disk error: it
        must then not be acknowledged.
        """
        with self._lock:
            if msg_id > self._last_id:
                raise ValueError(f"no message {msg_id} was appended")
            while True:
                if self._is_lost(msg_id):
                    raise p.ChatError(p.SERVER_ERROR, DISK_LOST)
                if self._durable_id >= msg_id:
                    return
                self._durable.wait()

    def lost(self, msg_id: int) -> bool:
        """True for an id that was handed out but whose message is not stored.

        That is an id burned by a failed write (never reused in this run), or
        one the journal skips because it was burned in an earlier run.
        """
        with self._lock:
            return self._is_lost(msg_id)

    def _is_lost(self, msg_id: int) -> bool:
        return 1 <= msg_id <= self._last_id and self._where[msg_id - 1] == _LOST

    def sent_bytes(self, user: str) -> int:
        """Bytes of message JSON ``user`` has authored (stored or on its way): for a quota."""
        with self._lock:
            return self._sent.get(p.user_key(user), 0)

    def history(self, user: str, with_user: Optional[str] = None,
                after: Optional[int] = None, before: Optional[int] = None,
                limit: int = p.DEFAULT_HISTORY_LIMIT) -> List[str]:
        """Message JSON strings ``user`` sent or received, ascending, durable only.

        As the protocol's history op: with ``after``, the oldest ``limit`` with
        a greater id (``before`` is then not used); otherwise the newest
        ``limit``, below ``before`` when given.
        """
        if limit <= 0:
            return []
        ukey = p.user_key(user)
        with self._lock:
            if with_user is None:
                ids = self._by_user.get(ukey)
            else:
                wkey = p.user_key(with_user)
                ids = self._by_pair.get((ukey, wkey) if ukey <= wkey else (wkey, ukey))
            if not ids:
                return []
            hi = bisect_right(ids, self._durable_id)
            if after is not None:
                lo = bisect_right(ids, after, 0, hi)
                hi = min(hi, lo + limit)
            else:
                if before is not None:
                    hi = bisect_left(ids, before, 0, hi)
                lo = max(0, hi - limit)
            reader, bodies, missing = self._from_cache(ids[lo:hi])
        if missing:
            self._read_bodies(reader, missing, bodies)
        return bodies

    def get_message(self, msg_id: int) -> Optional[p.Message]:
        """A durable message by id, or None."""
        with self._lock:
            if not 1 <= msg_id <= self._durable_id or self._where[msg_id - 1] < 0:
                return None
            reader, bodies, missing = self._from_cache([msg_id])
        if missing:
            self._read_bodies(reader, missing, bodies)
        return p.Message.from_dict(json.loads(bodies[0]))

    # ------------------------------------------------------------ message bodies

    def _from_cache(self, wanted: Iterable[int]
                    ) -> Tuple[Optional[FileReader], List[str], List[_Missing]]:
        """The cached bodies of durable messages, and where to read the others; the lock
        is held. The reads come after, without it: a cold read must not hold up
        senders, and what it reads (fsynced bytes of an append-only file) cannot
        change under it."""
        cache, where, lengths = self._cache, self._where, self._lengths
        bodies: List[str] = []
        missing: List[_Missing] = []
        for msg_id in wanted:
            body = cache.get(msg_id)
            if body is None:
                missing.append((len(bodies), msg_id, where[msg_id - 1], lengths[msg_id - 1]))
                body = ""
            else:
                cache.move_to_end(msg_id)
            bodies.append(body)
        return self._reader, bodies, missing

    def _read_bodies(self, reader: Optional[FileReader], missing: List[_Missing],
                     bodies: List[str]) -> None:
        """Fill ``bodies`` from the journal, one read per run of nearby records, and keep
        what was read in the cache."""
        if reader is None:
            raise p.ChatError(p.SERVER_ERROR, "the store is closed")
        first = 0
        while first < len(missing):
            start = missing[first][2]
            last = first
            while last + 1 < len(missing):
                _, _, offset, length = missing[last + 1]
                if (offset - sum(missing[last][2:]) > _READ_GAP
                        or offset + length - start > _READ_SPAN):
                    break
                last += 1
            try:
                data = reader.read_at(start, sum(missing[last][2:]) - start)
            except OSError as exc:
                log.error("reading %s at byte offset %d: %s", self._journal_path, start, exc)
                raise p.ChatError(p.SERVER_ERROR, "the server could not read a message") from None
            for slot, msg_id, offset, length in missing[first:last + 1]:
                raw = data[offset - start:offset - start + length]
                if len(raw) != length or not raw.startswith(b'{"id":%d,' % msg_id):
                    log.error("%s: message %d is not at byte offset %d", self._journal_path,
                              msg_id, offset)
                    raise p.ChatError(p.SERVER_ERROR, "the server could not read a message")
                bodies[slot] = raw.decode("ascii")
            first = last + 1
        with self._lock:
            for slot, msg_id, _, _ in missing:
                self._remember(msg_id, bodies[slot])

    def _remember(self, msg_id: int, body: str) -> None:
        """Keep a body in the cache, forgetting the least recently used beyond its size."""
        cache = self._cache
        if msg_id in cache:          # two readers fetched it at once
            cache.move_to_end(msg_id)
            return
        cache[msg_id] = body
        self._cache_size += len(body) + _CACHE_OVERHEAD
        while self._cache_size > self._cache_limit and cache:
            _, old = cache.popitem(last=False)
            self._cache_size -= len(old) + _CACHE_OVERHEAD

    # ------------------------------------------------------------ internals

    def _route(self, skey: str, tkey: str) -> _Route:
        """The id arrays a message from ``skey`` to ``tkey`` is filed in, one per index."""
        arrays = [_ids(self._by_user, skey)]
        if tkey != skey:
            arrays.append(_ids(self._by_user, tkey))
        pair = (skey, tkey) if skey <= tkey else (tkey, skey)
        arrays.append(_ids(self._by_pair, pair))
        arrays.append(_ids(self._inbox.setdefault(tkey, {}), skey))
        route = self._routes[(skey, tkey)] = tuple(arrays)
        return route

    def _commit_loop(self) -> None:
        """The committer: one write and one fsync for everything queued meanwhile."""
        journal = self._journal
        assert journal is not None
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._idle = True
                    self._work.wait()
                self._idle = False
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
            data = b"".join([queued[1] for queued in batch])
            try:
                if self._cut_needed:   # never append after a failed batch's leftovers
                    self._files.truncate(self._journal_path, self._journal_size)
                    self._cut_needed = False
                journal.write(data)
                journal.sync()
            except Exception as exc:  # the thread must not die silently: waiters would hang
                self._batch_failed(batch, exc)
                continue
            self._batch_stored(batch, len(data))

    def _batch_stored(self, batch: List[_Queued], size: int) -> None:
        upto = batch[-1][0]
        with self._lock:
            where, offset = self._where, self._journal_size
            for msg_id, line, _, _, _ in batch:   # the bodies are on disk: read them there
                where[msg_id - 1] = offset + _BODY_START
                offset += len(line)
            self._journal_size += size
            self._durable_id = upto
            self._commits += 1
            self._committed_bytes += size
            self._backoff, self._retry_at = BACKOFF_MIN, 0.0
            self._durable.notify_all()
        self._notify_listeners(upto, None)

    def _batch_failed(self, batch: List[_Queued], exc: BaseException) -> None:
        """A write or fsync failed (a full disk, say): give up on the batch, not the store.

        The journal is cut back to its durable size, so nothing half written
        can surface after a restart or come between good records; the batch,
        and whatever was queued behind it, leaves every index and its ids are
        burned, never reused in this run. Sends are refused for a backoff that
        grows while the disk keeps failing, then the next batch tries again.
        """
        self._cut_needed = True
        try:
            self._files.truncate(self._journal_path, self._journal_size)
            self._cut_needed = False
        except OSError as cut_exc:
            log.error("could not cut %s back to %d bytes (retried before the next write): %s",
                      self._journal_path, self._journal_size, cut_exc)
        with self._lock:
            queued, self._pending = batch + self._pending, []
            failed = range(queued[0][0], queued[-1][0] + 1)
            for msg_id, _, route, skey, size in reversed(queued):
                for ids in route:
                    if ids and ids[-1] == msg_id:
                        ids.pop()
                self._where[msg_id - 1] = _LOST
                self._sent[skey] -= size
            self._lost += len(failed)
            self._retry_at = self._monotonic() + self._backoff
            backoff, self._backoff = self._backoff, min(self._backoff * 2, BACKOFF_MAX)
            self._durable.notify_all()
        log.error("could not store messages %d..%d in %s (%s); they are lost, and sends are "
                  "refused for %.1f s", failed.start, failed.stop - 1, self._journal_path, exc,
                  backoff)
        self._notify_listeners(self._durable_id, failed)

    def _load_journal(self) -> Tuple[int, int]:
        """Index the message journal: (length of its good prefix, its size)."""
        try:
            reader = self._files.open_read(self._journal_path)
        except FileNotFoundError:
            return 0, 0
        try:
            good = _scan(self._files, reader, self._journal_path, _RECORD, 6,
                         self._message_indexer())
            return good, reader.size()
        finally:
            reader.close()
            self._last_id = len(self._where)

    def _message_indexer(self) -> _Take:
        """The scanner's callback that indexes one record without parsing it.

        It runs a million times at start-up, so what it needs is bound to
        local names once, here.
        """
        where, lengths, sent, path = self._where, self._lengths, self._sent, self._journal_path
        add_where, add_length = where.append, lengths.append
        routes: Dict[bytes, Tuple[Tuple[Callable[[int], None], ...], str]] = {}

        def take(m: "re.Match[bytes]", body: bytes, line: int, offset: int) -> None:
            msg_id = int(m.group(2))
            if msg_id != len(where) + 1:   # ids only grow, but skip ids lost to failed writes
                self._skip_to(msg_id, line, offset)
            if not body.isascii():
                raise StoreCorrupt(path, line, offset, "a record that is not ASCII")
            add_where(offset + _BODY_START)
            add_length(len(body))
            pair = m.group(3)
            found = routes.get(pair)
            if found is None:
                route, skey = self._journal_route(m.group(4), m.group(5))
                found = routes[pair] = (tuple(ids.append for ids in route), skey)
            adds, skey = found
            for add in adds:
                add(msg_id)
            sent[skey] = sent.get(skey, 0) + len(body)

        return take

    def _skip_to(self, msg_id: int, line: int, offset: int) -> None:
        """Mark the ids before ``msg_id`` lost; StoreCorrupt if it does not grow."""
        expected = len(self._where) + 1
        if msg_id < expected:
            raise StoreCorrupt(self._journal_path, line, offset, f"message id {msg_id} "
                               f"out of sequence (expected {expected} or more)")
        self._where.extend(array("q", [_LOST]) * (msg_id - expected))
        self._lengths.extend(array("I", [0]) * (msg_id - expected))

    def _journal_route(self, sender: bytes, to: bytes) -> Tuple[_Route, str]:
        """The route of a journal record's pair, and its sender's key."""
        keys = []
        for raw in (sender, to):
            name = raw.decode("ascii")
            key = p.user_key(name)
            self._names.setdefault(key, name)  # a name only the journal knows
            keys.append(key)
        route = self._routes.get((keys[0], keys[1])) or self._route(keys[0], keys[1])
        return route, keys[0]

    def _remove_stale_temps(self) -> None:
        """Temp files left by a crash while users.json or accounts.jsonl was replaced."""
        prefixes = (USERS_FILE + ".", ACCOUNTS_FILE + ".")
        for name in self._files.list_dir(self.directory):
            if name.startswith(prefixes) and name.endswith(".tmp"):
                path = os.path.join(self.directory, name)
                log.info("removing %s, left by an interrupted write", path)
                try:
                    self._files.remove(path)
                except OSError as exc:
                    log.warning("could not remove %s: %s", path, exc)
