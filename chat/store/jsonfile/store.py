"""The JSON store: the facade that composes the journals, the indexes and the caches.

Each part owns one thing (see the package docstring for the folder); this
module owns the rules that need several of them, and the one lock. One store
per folder: the folder lock refuses a second one, in this process or another.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from ... import protocol as p
from ..contract import BatchListener, DurableListener, Room, SendRequest, User
from ..fileio import FileLayer, FolderLock, OsFileLayer
from .accounts import AccountJournal
from .bodies import CACHE_BYTES, BodyCache
from .indexes import Indexes, newest
from .journal import MessageJournal
from .messages import Messages
from .names import NameBook
from .records import ACCOUNTS_FILE, JOURNAL_FILE, USERS_FILE
from .rooms import Rooms
from .state import room_conv

log = logging.getLogger(__name__)

#: The accounts journal is folded into the snapshot once it is larger than the
#: snapshot and than this: the rewrite's cost is spread over as many bytes of changes.
COMPACT_MIN_BYTES = 1 << 20


class Store:
    """The chat database in one folder. Thread-safe: one lock guards the state.

    ``StoreCorrupt`` from the constructor means the folder needs a person;
    nothing was changed.
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
        self._lock = threading.Lock()     # all in-memory state of every part
        self._accounts = AccountJournal(self.directory, self._files, self._lock, monotonic,
                                        compact_min_bytes)
        self._state = self._accounts.state
        self._names = NameBook(self._state)
        self._journal = MessageJournal(os.path.join(self.directory, JOURNAL_FILE), self._files,
                                       self._lock, monotonic, self._unfile)
        self._bodies = BodyCache(self._journal, self._lock, cache_bytes)
        self._index = Indexes()
        self._messages = Messages(self._lock, self._journal, self._bodies, self._index,
                                  self._state, clock)
        self._rooms = Rooms(self._lock, self._accounts, self._newest_in, clock)
        self._journal.set_round_hooks(self._messages.admit, self._messages.round_done)

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
        self._journal.start()
        log.debug("opened %s: %d users, %d messages", self.directory,
                  len(self._state.accounts), self._journal.last_id)

    def _open_files(self) -> None:
        """Load and check every file, then repair and open them; the folder lock is held.

        Nothing is changed until everything has been checked, so StoreCorrupt
        leaves the folder exactly as it was.
        """
        self._accounts.load()
        self._journal.load(self._messages.replayer(self._journal.path))
        self._remove_stale_temps()
        self._accounts.open()
        self._journal.open()
        self._files.fsync_dir(self.directory)  # the journals' entries, if just created

    def _unfile(self, msg_id: int, undo: Any) -> None:
        self._messages.unfile(msg_id, undo)

    def _close_files(self) -> None:
        self._accounts.close()
        self._journal.close_files()

    def _release_folder(self) -> None:
        lock, self._folder_lock = self._folder_lock, None
        if lock is not None:
            lock.release()

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

    # ------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Commit what is pending, stop the committer, close the journals; idempotent."""
        self._journal.stop()
        self._close_files()
        self._release_folder()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def last_id(self) -> int:
        """The newest id handed out (its message may not be durable yet)."""
        return self._journal.last_id

    @property
    def durable_id(self) -> int:
        """Every message up to this id is on disk, or lost (see ``lost``)."""
        return self._journal.durable_id

    def stats(self) -> Dict[str, int]:
        """Counters for logs and benchmarks."""
        j = self._journal
        with self._lock:
            return {"users": len(self._state.accounts), "last_id": j.last_id,
                    "durable_id": j.durable_id, "pending": j.pending_count(),
                    "commits": j.commits, "committed_bytes": j.committed_bytes,
                    "lost": j.lost_count, "compactions": self._accounts.compactions,
                    "cache_bytes": self._bodies.size}

    # ------------------------------------------------------------ accounts

    def add_user(self, name: str, password_hash: str) -> str:
        """Create an account; durable when it returns.

        ChatError(username_taken) if the name is taken in any case, or looks
        like an existing account's (``protocol.name_skeleton``);
        ChatError(server_error) if the disk refused it (nothing changed).
        """
        p.validate_username(name)
        with self._lock:
            self._names.reserve_user(name)
            change = self._accounts.queue(
                {"op": "signup", "name": name, "hash": password_hash, "created": self._clock()},
                lambda: self._names.release_user(name))
        self._accounts.write_through(change)
        log.debug("account %s added", name)
        return name

    def get_user(self, name: str) -> Optional[User]:
        account = self._state.accounts.get(p.user_key(name))
        return None if account is None else User(account.name, account.hash)

    def set_password_hash(self, name: str, password_hash: str) -> None:
        """Replace an account's hash (a rehash at login); durable when it returns."""
        with self._lock:
            change = self._accounts.queue({"op": "hash", "user": self._state.key_of(name),
                                           "hash": password_hash})
        self._accounts.write_through(change)

    def canonical_name(self, name: str) -> Optional[str]:
        account = self._state.accounts.get(p.user_key(name))
        return None if account is None else account.name

    def usernames(self) -> List[str]:
        """Canonical names, sorted case-insensitively."""
        with self._lock:
            return self._state.usernames()

    def compact_accounts(self) -> bool:
        """Fold the accounts journal into users.json now (it also happens by itself)."""
        return self._accounts.compact()

    # ------------------------------------------------------------ read markers

    def mark_read(self, user: str, other: str, upto: int) -> Optional[int]:
        """Move ``user``'s marker in the conversation with ``other`` (a user or a room)
        forward to ``upto``; the new value when it moved, else None (nothing written).

        Never back. The marker is capped at the newest durable message ``user``
        may have read there: from ``other`` to ``user`` in a direct
        conversation (so a marker exists only for someone who wrote to you,
        and markers grow with conversations, not with users squared), the
        room's newest in a room. Durable when it returns.
        ChatError(unknown_user; unknown_room, not_a_member for a room).
        """
        with self._lock:
            ukey = self._state.key_of(user)
            durable = self._journal.durable_id
            if p.is_room(other):
                pkey = self._state.member_room(ukey, other).name.lower()
                conv = room_conv(pkey)
                upto = min(upto, newest(self._index.conversation(conv), durable))
            else:
                pkey = self._state.key_of(other)
                conv = p.conversation_key(ukey, pkey)
                upto = min(upto, self._index.newest_from(conv, pkey, durable))
            # the marker in memory is durable (changes are applied once written),
            # so a call that would not move it may return at once
            if upto <= self._state.marker(ukey, conv):
                return None
            change = self._accounts.queue({"op": "read", "user": ukey, "peer": pkey,
                                           "upto": upto})
        self._accounts.write_through(change)
        with self._lock:   # a concurrent call may have moved it further: it tells
            return upto if self._state.marker(ukey, conv) == upto else None

    def read_marker(self, user: str, peer: str) -> int:
        """The id up to which ``user`` has read the conversation with ``peer`` (0: none)."""
        ukey = p.user_key(user)
        with self._lock:
            return self._state.marker(ukey, p.conversation_key(ukey, peer))

    def unread_counts(self, user: str) -> Dict[str, int]:
        """Canonical sender -> durable messages to ``user`` above the marker (only > 0)."""
        ukey = p.user_key(user)
        with self._lock:
            found = self._index.dm_unread(ukey, self._state.read.get(ukey, {}),
                                          self._journal.durable_id)
            return {self._name_of(skey): n for skey, n in found}

    def _name_of(self, key: str) -> str:
        account = self._state.accounts.get(key)
        return account.name if account else self._index.names.get(key, key)

    # ------------------------------------------------------------ rooms

    def create_room(self, creator: str, room: str, topic: str = "",
                    private: bool = False) -> Room:
        """Create ``room``, ``creator`` its first member; durable when it returns.

        ChatError(invalid_room, invalid_topic, room_taken: in any case).
        """
        return self._rooms.create(creator, room, topic, private)

    def get_room(self, room: str) -> Optional[Room]:
        """The room named ``room`` in any case, or None."""
        return self._rooms.get(room)

    def join_room(self, user: str, room: str) -> Tuple[Room, bool]:
        """Join ``room``: (the room, whether anything changed); durable when it returns.

        ChatError(unknown_room, not_invited). See ``rooms.Rooms.join``.
        """
        return self._rooms.join(user, room)

    def leave_room(self, user: str, room: str) -> Room:
        """Leave ``room``; durable when it returns. ChatError(unknown_room, not_a_member)."""
        return self._rooms.leave(user, room)

    def invite(self, by: str, room: str, username: str) -> bool:
        """Invite ``username`` to the private ``room``: whether anything changed.

        ChatError(unknown_room, not_a_member, unknown_user). Durable when it returns.
        """
        return self._rooms.invite(by, room, username)

    def set_topic(self, by: str, room: str, topic: str) -> Room:
        """Set a room's topic; durable when it returns.

        ChatError(unknown_room, not_a_member, invalid_topic).
        """
        return self._rooms.set_topic(by, room, topic)

    def room_members(self, room: str) -> List[str]:
        """Canonical member names sorted by lower case. ChatError(unknown_room)."""
        return self._rooms.members(room)

    def rooms_visible_to(self, user: str) -> List[Room]:
        """Every public room and the private ones ``user`` is in or invited to, sorted."""
        return self._rooms.visible_to(user)

    def rooms_of(self, user: str) -> List[str]:
        """Canonical names of ``user``'s rooms, sorted by lower case."""
        return self._rooms.of(user)

    def is_member(self, user: str, room: str) -> bool:
        return self._rooms.is_member(user, room)

    def is_invited(self, user: str, room: str) -> bool:
        return self._rooms.is_invited(user, room)

    def _newest_in(self, conv: str) -> int:
        """The newest durable message id of a conversation (0: none); the lock is held."""
        return newest(self._index.conversation(conv), self._journal.durable_id)

    # ------------------------------------------------------------ messages

    def append(self, sender: str, to: str, text: str, reply_to: Optional[int] = None,
               nonce: Optional[str] = None) -> Tuple[int, str, bool]:
        """Queue a message to a user or a room: (id, message JSON, fresh).

        A resend with a nonce the sender used before stores nothing and
        answers with the message stored for it, fresh=False. Not durable until
        ``wait_durable(id)``. See ``messages.Messages.append`` for the errors.
        """
        return self._messages.append(sender, to, text, reply_to, nonce)

    def append_many(self, sends: List[Tuple[str, str, str, Optional[int], Optional[str]]]
                    ) -> List[Union[Tuple[int, str, bool], p.ChatError]]:
        """``append`` for each (sender, to, text, reply_to, nonce), taking the lock once:
        for each, in order, its result or the ChatError it raised."""
        return self._messages.append_many(sends)

    def append_message(self, sender: str, to: str, text: str,
                       reply_to: Optional[int] = None) -> Tuple[int, str]:
        """``append`` without a nonce, as version 1 servers call it: (id, message JSON)."""
        msg_id, body, _ = self._messages.append(sender, to, text, reply_to)
        return msg_id, body

    def submit(self, token: Any, sends: List[SendRequest]) -> None:
        """Hand a batch of sends (sender, to, text, reply_to, nonce) to the committer and
        return at once, taking no lock: the batch listener hears of ``token`` and
        each send's outcome (``Outcome``) once the round that stored them is
        durable, or failed. Every batch is answered, even after ``close``."""
        self._journal.submit(token, sends)

    def set_batch_listener(self, listener: BatchListener) -> None:
        """The listener of submitted batches: ``listener([(token, outcomes), ...])`` from
        the committer, once per round, in submission order; it must not block."""
        self._messages.set_batch_listener(listener)

    def add_durable_listener(self, listener: DurableListener) -> None:
        """Call ``listener(durable_id, failed)`` from the committer after each batch.

        After a commit ``failed`` is None and every id up to ``durable_id`` is
        durable or lost. After a failed write ``failed`` is the range of ids
        that were lost with it (never stored, never to be shown) and
        ``durable_id`` has not moved. This lets a server acknowledge from the
        committer thread instead of waking one waiting thread per connection;
        the listener must not block.
        """
        self._journal.add_listener(listener)

    def wait_durable(self, msg_id: int) -> None:
        """Block until the message ``msg_id`` and every one before it is fsynced.

        ChatError(server_error) if the message was lost to a disk error: it
        must then not be acknowledged.
        """
        self._journal.wait_durable(msg_id)

    def lost(self, msg_id: int) -> bool:
        """True for an id that was handed out but whose message is not stored.

        That is an id burned by a failed write (never reused in this run), or
        one the journal skips because it was burned in an earlier run.
        """
        with self._lock:
            return self._journal.is_lost(msg_id)

    def sent_bytes(self, user: str) -> int:
        """Bytes of message JSON ``user`` has authored (stored or on its way): for a quota.

        Read without the store's lock: one dict lookup is atomic, and a quota
        check on every send must not queue behind the committer."""
        return self._index.sent.get(p.user_key(user), 0)

    def history(self, user: str, with_user: Optional[str] = None,
                after: Optional[int] = None, before: Optional[int] = None,
                limit: int = p.DEFAULT_HISTORY_LIMIT) -> List[str]:
        """The messages of ``history_page``, without ``more``."""
        return self._messages.history_page(user, with_user, after, before, limit)[0]

    def history_page(self, user: str, with_user: Optional[str] = None,
                     after: Optional[int] = None, before: Optional[int] = None,
                     limit: int = p.DEFAULT_HISTORY_LIMIT) -> Tuple[List[str], bool]:
        """Message JSON strings ``user`` may see, ascending, durable only, and ``more``.

        As the protocol's history op: with ``after``, the oldest ``limit`` with
        a greater id (``before`` is then not used); otherwise the newest
        ``limit``, below ``before`` when given. Without ``with_user``: the
        user's direct messages and every message of the rooms it is in now.
        """
        return self._messages.history_page(user, with_user, after, before, limit)

    def search(self, user: str, query: str, with_user: Optional[str] = None,
               before: Optional[int] = None, limit: int = p.DEFAULT_SEARCH_LIMIT
               ) -> Tuple[List[str], bool]:
        """The newest ``limit`` visible messages whose text contains ``query`` (any
        case), ascending, and whether older matches exist."""
        return self._messages.search(user, query, with_user, before, limit)

    def get_message(self, msg_id: int) -> Optional[p.Message]:
        """A durable message by id, or None."""
        return self._messages.get_message(msg_id)

    def room_counts(self, user: str, room: str) -> Tuple[int, int]:
        """(unread, mentions) of ``user`` in ``room``; (0, 0) for a non-member.

        ChatError(unknown_room).
        """
        return self._messages.room_counts(user, room)
