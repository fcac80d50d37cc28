"""The durable, lock-guarded JSON database: accounts, read markers, messages.

A data folder holds two files:

``users.json``
    ``{"version": 1, "users": {key: {"name", "hash", "created"}}, "read":
    {key: {peer_key: id}}}``, keyed by ``protocol.user_key``. Small and rarely
    changed, so it is rewritten whole and replaced atomically on every change.

``messages.jsonl``
    An append-only journal, one record a line:
    ``{"m":<message JSON>,"c":<zlib.crc32 of the message JSON bytes>}``.

Messages are written by group commit: ``append_message`` only assigns the id,
builds the JSON and queues the line (no I/O), and one committer thread writes
everything queued in one write and one fsync, so concurrent senders share
fsyncs. ``wait_durable`` is what makes a message a promise. Readers
(``history``, ``unread_counts``, ``get_message``) see durable messages only, so
nothing is ever shown that a crash could take back.

Opening replays the journal. A damaged tail is what a crash during a write
leaves, and is cut away with a warning; damage with intact records after it is
not, and raises ``StoreCorrupt`` with the file left exactly as it was.
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
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import protocol as p
from .fileio import FileHandle, FileLayer, OsFileLayer

log = logging.getLogger(__name__)

USERS_FILE = "users.json"
JOURNAL_FILE = "messages.jsonl"
DOC_VERSION = 1

_NAME = rb"[A-Za-z0-9_.\-]{1,32}"
#: One journal line. Group 1 is the message JSON (what the crc covers), 2 its id,
#: 3 the from/to pair (a cache key), 4 and 5 the names, 6 the crc. The message
#: JSON's key order is fixed by protocol.message_json, which is what makes a
#: regular expression enough to index a record without parsing it.
_RECORD = re.compile(
    rb'\{"m":(\{"id":([0-9]{1,18}),("from":"(' + _NAME + rb')","to":"(' + _NAME
    + rb')"),.*\}),"c":([0-9]{1,10})\}\Z', re.DOTALL)

_Route = Tuple[Callable[[int], None], ...]


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


def _encode_doc(accounts: Dict[str, dict], read: Dict[str, Dict[str, int]]) -> bytes:
    doc = {"version": DOC_VERSION, "users": accounts, "read": read}
    return (json.dumps(doc, separators=(",", ":"), sort_keys=True) + "\n").encode("ascii")


def _parse_doc(doc: Any) -> Tuple[Dict[str, dict], Dict[str, Dict[str, int]]]:
    """Check the shape of users.json; ValueError says what is wrong."""
    if not isinstance(doc, dict) or doc.get("version") != DOC_VERSION:
        raise ValueError(f"not a version {DOC_VERSION} users document")
    users, read = doc.get("users"), doc.get("read", {})
    if not isinstance(users, dict) or not isinstance(read, dict):
        raise ValueError('"users" and "read" must be objects')
    accounts: Dict[str, dict] = {}
    for key, rec in users.items():
        name = rec.get("name") if isinstance(rec, dict) else None
        if (not isinstance(name, str) or not p.USERNAME_RE.match(name)
                or p.user_key(name) != key or not isinstance(rec.get("hash"), str)):
            raise ValueError(f"bad account record {key[:40]!r}")
        accounts[key] = {"name": name, "hash": rec["hash"], "created": rec.get("created", 0)}
    markers: Dict[str, Dict[str, int]] = {}
    for key, peers in read.items():
        if not isinstance(peers, dict) or not all(
                type(v) is int for v in peers.values()):
            raise ValueError(f"bad read markers for {key[:40]!r}")
        markers[key] = dict(peers)
    return accounts, markers


class Store:
    """The chat database in one folder. Thread-safe: one lock guards the state.

    Open it once per process (two processes appending to one journal would
    interleave ids). ``StoreCorrupt`` from the constructor means the folder
    needs a person; nothing was changed.
    """

    def __init__(self, directory: Union[str, "os.PathLike[str]"], *,
                 files: Optional[FileLayer] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = os.fspath(directory)
        self._files = files if files is not None else OsFileLayer()
        self._clock = clock
        self._users_path = os.path.join(self.directory, USERS_FILE)
        self._journal_path = os.path.join(self.directory, JOURNAL_FILE)

        self._lock = threading.Lock()                  # all in-memory state
        self._work = threading.Condition(self._lock)   # committer: lines are pending
        self._durable = threading.Condition(self._lock)  # waiters: durable id moved
        self._doc_lock = threading.Lock()              # one users.json write at a time

        # accounts and read markers; the dicts inside are replaced, never changed,
        # so a shallow copy is a snapshot that can be encoded outside the lock
        self._accounts: Dict[str, dict] = {}
        self._read: Dict[str, Dict[str, int]] = {}
        self._names: Dict[str, str] = {}   # key -> canonical, also for journal-only names
        self._sorted_names: Optional[List[str]] = None
        self._doc_version = 0              # bumped by every change to the document
        self._doc_saved = 0                # the newest version that is durable

        # messages: JSON by id - 1, and sorted id arrays for the indexes
        self._msgs: List[str] = []
        self._by_user: Dict[str, array] = {}
        self._by_pair: Dict[Tuple[str, str], array] = {}
        self._inbox: Dict[str, Dict[str, array]] = {}   # recipient -> sender -> ids
        self._routes: Dict[Tuple[str, str], _Route] = {}
        self._last_id = 0
        self._durable_id = 0

        # group commit
        self._pending: List[bytes] = []
        self._idle = False
        self._closing = False
        self._failure: Optional[str] = None
        self._listeners: List[Callable[[int, Optional[str]], None]] = []
        self._commits = 0
        self._committed_bytes = 0
        self._journal: Optional[FileHandle] = None

        self._files.makedirs(self.directory)
        self._load_users()
        data = self._read_journal()
        good = self._replay(data)
        self._remove_stale_temps()
        if good < len(data):
            self._files.truncate(self._journal_path, good)
        self._journal = self._files.open_append(self._journal_path)
        try:
            self._files.fsync_dir(self.directory)  # the journal's entry, if just created
        except BaseException:
            self._journal.close()
            raise
        self._durable_id = self._last_id
        self._committer = threading.Thread(target=self._commit_loop, name="store-committer",
                                           daemon=True)
        self._committer.start()
        log.debug("opened %s: %d users, %d messages", self.directory,
                  len(self._accounts), self._last_id)

    # ------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Commit what is pending, stop the committer, close the journal; idempotent."""
        with self._lock:
            self._closing = True
            self._work.notify()
        self._committer.join()
        with self._lock:
            journal, self._journal = self._journal, None
        if journal is not None:
            try:
                journal.close()
            except OSError as exc:
                log.error("closing %s: %s", self._journal_path, exc)

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
        """Every message up to this id is on disk."""
        return self._durable_id

    def stats(self) -> Dict[str, int]:
        """Counters for logs and benchmarks."""
        with self._lock:
            return {"users": len(self._accounts), "last_id": self._last_id,
                    "durable_id": self._durable_id, "pending": len(self._pending),
                    "commits": self._commits, "committed_bytes": self._committed_bytes}

    # ------------------------------------------------------------ accounts

    def add_user(self, name: str, password_hash: str) -> str:
        """Create an account; durable when it returns. ChatError(username_taken)."""
        p.validate_username(name)
        key = p.user_key(name)
        record = {"name": name, "hash": password_hash, "created": self._clock()}

        def add(accounts: Dict[str, dict]) -> None:
            if key in accounts:
                raise p.ChatError(p.USERNAME_TAKEN, f"the name {name!r} is taken")
            accounts[key] = record

        self._commit_doc(update=add)
        log.debug("account %s added", name)
        return name

    def get_user(self, name: str) -> Optional[User]:
        rec = self._accounts.get(p.user_key(name))
        return None if rec is None else User(rec["name"], rec["hash"])

    def set_password_hash(self, name: str, password_hash: str) -> None:
        """Replace an account's hash (a rehash at login); durable when it returns."""
        key = p.user_key(name)

        def update(accounts: Dict[str, dict]) -> None:
            rec = accounts.get(key)
            if rec is None:
                raise p.ChatError(p.UNKNOWN_USER, f"there is no user {name[:40]!r}")
            accounts[key] = dict(rec, hash=password_hash)

        self._commit_doc(update=update)

    def canonical_name(self, name: str) -> Optional[str]:
        rec = self._accounts.get(p.user_key(name))
        return None if rec is None else rec["name"]

    def usernames(self) -> List[str]:
        """Canonical names, sorted case-insensitively."""
        with self._lock:
            if self._sorted_names is None:
                self._sorted_names = [self._accounts[k]["name"] for k in sorted(self._accounts)]
            return list(self._sorted_names)

    # ------------------------------------------------------------ read markers

    def mark_read(self, user: str, peer: str, upto: int) -> None:
        """Move ``user``'s marker for ``peer`` forward to ``upto`` (never back).

        The marker is capped at the newest durable id, so one cannot mark
        unsent messages read. Durable when it returns.
        """
        with self._lock:
            ukey, pkey = self._account_key(user), self._account_key(peer)
            upto = min(upto, self._durable_id)
            markers = self._read.get(ukey, {})
            if upto > markers.get(pkey, 0):
                self._read[ukey] = dict(markers, **{pkey: upto})
                self._doc_version += 1
            needed = self._doc_version
        self._commit_doc(needed)

    def read_marker(self, user: str, peer: str) -> int:
        """The id up to which ``user`` has read ``peer``'s messages (0: none)."""
        with self._lock:
            return self._read.get(p.user_key(user), {}).get(p.user_key(peer), 0)

    def unread_counts(self, user: str) -> Dict[str, int]:
        """Canonical sender -> durable messages to ``user`` above the marker (only > 0)."""
        ukey = p.user_key(user)
        counts: Dict[str, int] = {}
        with self._lock:
            inbox = self._inbox.get(ukey)
            if not inbox:
                return counts
            markers = self._read.get(ukey, {})
            durable = self._durable_id
            for skey, ids in inbox.items():
                n = bisect_right(ids, durable) - bisect_right(ids, markers.get(skey, 0))
                if n > 0:
                    counts[self._names.get(skey, skey)] = n
        return counts

    # ------------------------------------------------------------ messages

    def append_message(self, sender: str, to: str, text: str,
                       reply_to: Optional[int] = None) -> Tuple[int, str]:
        """Assign the next id and queue the message: (id, message JSON).

        Not durable until ``wait_durable(id)`` returns. Names come out
        canonical. ChatError(unknown_message) if ``reply_to`` is not a message
        the sender sent or received; ChatError(server_error) once the disk
        has failed or the store is closed.
        """
        skey, tkey = p.user_key(sender), p.user_key(to)
        with self._lock:
            if self._failure is not None or self._closing:
                raise p.ChatError(p.SERVER_ERROR, self._failure or "the store is closed")
            srec, trec = self._accounts.get(skey), self._accounts.get(tkey)
            if srec is None or trec is None:
                name = to if srec else sender
                raise p.ChatError(p.UNKNOWN_USER, f"there is no user {name[:40]!r}")
            if reply_to is not None and not _contains(self._by_user.get(skey), reply_to):
                raise p.ChatError(p.UNKNOWN_MESSAGE,
                                  f"you have no message {reply_to} to reply to")
            msg_id = self._last_id + 1
            body = p.message_json(msg_id, srec["name"], trec["name"], text, self._clock(),
                                  reply_to)
            raw = body.encode("ascii")
            self._pending.append(b'{"m":%s,"c":%d}\n' % (raw, zlib.crc32(raw)))
            self._msgs.append(body)
            for add in self._routes.get((skey, tkey)) or self._route(skey, tkey):
                add(msg_id)
            self._last_id = msg_id
            if self._idle:
                self._idle = False
                self._work.notify()
        return msg_id, body

    def add_durable_listener(self, listener: Callable[[int, Optional[str]], None]) -> None:
        """Call ``listener(durable_id, failure)`` from the committer after each commit.

        ``failure`` is None, or the reason the disk refused the batch. This
        lets a server acknowledge from the committer thread instead of waking
        one waiting thread per connection; the listener must not block.
        """
        self._listeners.append(listener)

    def _notify_listeners(self, durable_id: int, failure: Optional[str]) -> None:
        for listener in self._listeners:
            try:
                listener(durable_id, failure)
            except Exception:
                log.exception("a durable listener failed")

    def wait_durable(self, msg_id: int) -> None:
        """Block until every message up to ``msg_id`` is fsynced.

        ChatError(server_error) if the disk failed before that: the message
        must then not be acknowledged.
        """
        with self._lock:
            if msg_id > self._last_id:
                raise ValueError(f"no message {msg_id} was appended")
            while self._durable_id < msg_id:
                if self._failure is not None:
                    raise p.ChatError(p.SERVER_ERROR, self._failure)
                self._durable.wait()

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
            msgs = self._msgs
            return [msgs[i - 1] for i in ids[lo:hi]]

    def get_message(self, msg_id: int) -> Optional[p.Message]:
        """A durable message by id, or None."""
        with self._lock:
            if not 1 <= msg_id <= self._durable_id:
                return None
            body = self._msgs[msg_id - 1]
        return p.Message.from_dict(json.loads(body))

    # ------------------------------------------------------------ internals

    def _account_key(self, name: str) -> str:
        key = p.user_key(name)
        if key not in self._accounts:
            raise p.ChatError(p.UNKNOWN_USER, f"there is no user {name[:40]!r}")
        return key

    def _route(self, skey: str, tkey: str) -> _Route:
        """The appends that file a message from ``skey`` to ``tkey`` in every index."""
        adds = [_ids(self._by_user, skey).append]
        if tkey != skey:
            adds.append(_ids(self._by_user, tkey).append)
        pair = (skey, tkey) if skey <= tkey else (tkey, skey)
        adds.append(_ids(self._by_pair, pair).append)
        adds.append(_ids(self._inbox.setdefault(tkey, {}), skey).append)
        route = self._routes[(skey, tkey)] = tuple(adds)
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
                upto = self._last_id
            data = b"".join(batch)
            try:
                journal.write(data)
                journal.sync()
            except Exception as exc:  # the thread must not die silently: waiters would hang
                log.error("could not store messages %d..%d in %s: %s",
                          upto - len(batch) + 1, upto, self._journal_path, exc)
                with self._lock:
                    self._failure = ("the server could not store the message "
                                     "(disk error); it was not sent")
                    self._pending = []
                    self._durable.notify_all()
                self._notify_listeners(self._durable_id, self._failure)
                return
            with self._lock:
                self._durable_id = upto
                self._commits += 1
                self._committed_bytes += len(data)
                self._durable.notify_all()
            self._notify_listeners(upto, None)

    def _commit_doc(self, needed: int = 0,
                    update: Optional[Callable[[Dict[str, dict]], None]] = None) -> None:
        """Write users.json so that it holds every change up to version ``needed``.

        ``update`` changes a copy of the accounts; they are installed only once
        written, so an account is never visible before it is durable. Writes
        are serialised and each takes the newest snapshot, so a later write
        never loses to an earlier one, and callers that arrive while a write
        is in flight are covered by the next one. The store lock is not held
        while the disk works.
        """
        with self._doc_lock:
            with self._lock:
                if update is None and self._doc_saved >= needed:
                    return
                accounts = self._accounts
                if update is not None:
                    accounts = dict(accounts)
                    update(accounts)
                read = dict(self._read)
                version = self._doc_version
            try:
                self._files.replace_atomic(self._users_path, _encode_doc(accounts, read))
            except OSError as exc:
                log.error("could not write %s: %s", self._users_path, exc)
                raise p.ChatError(p.SERVER_ERROR,
                                  "the server could not store the change (disk error)") from None
            with self._lock:
                self._doc_saved = version
                if update is not None:
                    self._install_accounts(accounts)

    def _install_accounts(self, accounts: Dict[str, dict]) -> None:
        self._accounts = accounts
        self._names.update((key, rec["name"]) for key, rec in accounts.items())
        self._sorted_names = None

    def _load_users(self) -> None:
        path = self._users_path
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
            accounts, read = _parse_doc(json.loads(text))
        except json.JSONDecodeError as exc:
            offset = len(text[:exc.pos].encode("utf-8"))
            raise StoreCorrupt(path, exc.lineno, offset, f"not valid JSON: {exc.msg}") from None
        except ValueError as exc:
            raise StoreCorrupt(path, 1, 0, str(exc)) from None
        self._install_accounts(accounts)
        self._read = read

    def _read_journal(self) -> bytes:
        try:
            return self._files.read_bytes(self._journal_path)
        except FileNotFoundError:
            return b""

    def _replay(self, data: bytes) -> int:
        """Index the journal; the length of its good prefix (the rest is a torn tail).

        Speed matters (a million records at start-up), so each line is
        matched once with a compiled pattern on the shared buffer and its crc
        checked; no record is parsed as JSON.
        """
        path = self._journal_path
        match, crc32, find = _RECORD.match, zlib.crc32, data.find
        msgs = self._msgs
        routes: Dict[bytes, _Route] = {}
        size = len(data)
        pos = line = 0
        expected = 1
        while pos < size:
            end = find(b"\n", pos)
            line += 1
            m = match(data, pos, end) if end >= 0 else None
            if m is not None:
                body, sid, pair, crc = m.group(1, 2, 3, 6)
            if m is None or crc32(body) != int(crc):
                if end < 0:
                    end, reason = size, "no newline at its end"
                else:
                    reason = "not a journal record" if m is None else "checksum mismatch"
                self._check_torn_tail(data, pos, line, end, reason)
                log.warning("%s: dropping a damaged tail at byte offset %d (line %d, %d bytes, "
                            "%s): a write cut short by a crash", path, pos, line, size - pos,
                            reason)
                break
            msg_id = int(sid)
            if msg_id != expected:
                raise StoreCorrupt(path, line, pos,
                                   f"message id {msg_id} out of sequence (expected {expected})")
            try:
                msgs.append(body.decode("ascii"))
            except UnicodeDecodeError:
                raise StoreCorrupt(path, line, pos, "a record that is not ASCII") from None
            expected += 1
            route = routes.get(pair)
            if route is None:
                route = routes[pair] = self._journal_route(m.group(4), m.group(5))
            for add in route:
                add(msg_id)
            pos = end + 1
        self._last_id = expected - 1
        return min(pos, size)

    def _journal_route(self, sender: bytes, to: bytes) -> _Route:
        keys = []
        for raw in (sender, to):
            name = raw.decode("ascii")
            key = p.user_key(name)
            self._names.setdefault(key, name)  # a name only the journal knows
            keys.append(key)
        return self._routes.get((keys[0], keys[1])) or self._route(keys[0], keys[1])

    def _check_torn_tail(self, data: bytes, pos: int, line: int, end: int,
                         reason: str) -> None:
        """Raise StoreCorrupt unless no good record follows the bad one at ``pos``."""
        size = len(data)
        nxt = end + 1
        while nxt < size:
            end2 = data.find(b"\n", nxt)
            if end2 < 0:
                end2 = size
            m = _RECORD.match(data, nxt, end2)
            if m is not None and zlib.crc32(m.group(1)) == int(m.group(6)):
                raise StoreCorrupt(self._journal_path, line, pos,
                                   f"{reason}, and good records follow it")
            nxt = end2 + 1

    def _remove_stale_temps(self) -> None:
        """Temp files left by a crash during a users.json replacement."""
        prefix = USERS_FILE + "."
        for name in self._files.list_dir(self.directory):
            if name.startswith(prefix) and name.endswith(".tmp"):
                path = os.path.join(self.directory, name)
                log.info("removing %s, left by an interrupted write", path)
                try:
                    self._files.remove(path)
                except OSError as exc:
                    log.warning("could not remove %s: %s", path, exc)
