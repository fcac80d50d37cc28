"""The store contract: what every backend promises, whatever it keeps its data in.

The server is written against ``ChatStore``; the JSON backend
(``chat.store.jsonfile``) is one implementation. The promises, which every
backend must keep:

Acknowledge after durable
    A call that changes an account, a read marker or a room returns only once
    the change is durable (it survives a kill -9 or a power cut the moment
    after), and fails with ``ChatError(server_error)`` having changed nothing
    when the disk refuses it. Concurrent callers may share one flush (group
    commit): the cost of a change does not grow with the number of callers,
    accounts or rooms.

Messages: queue, then wait
    ``append`` only assigns the id and queues the message; it does no I/O, so a
    sender never waits on the disk while holding anything. The message is a
    promise only once ``wait_durable(id)`` returns (or a durable listener was
    called with a ``durable_id`` at or above it); that is when a server may
    acknowledge the send and tell the recipients. Ids grow strictly, across
    restarts too, but may skip ids burned by a failed write.

Resends
    A message sent with a nonce carries it in its durable record: once the
    send was acknowledged, a resend by the same user with the same nonce
    (even after a crash, among at least its last 1,000 nonces) stores nothing
    and is answered with the stored message.

Readers see durable state only
    ``history``, ``search``, ``get_message``, the unread counts and the room
    queries show messages and changes that are durable: nothing a crash could
    take back is ever shown.

Lost ids
    A failed message write (a full disk) loses that batch, not the store: its
    ids are burned (``lost(id)`` is true, they are never reused in this run and
    never shown), ``wait_durable`` raises ``ChatError(server_error)`` for them,
    and sends are refused for a short backoff before the store tries again by
    itself.

Submitted batches (the server's path)
    ``submit(token, sends)`` hands a batch of sends (sender, to, text,
    reply_to, nonce) to the committer and returns at once, taking no lock
    the committer holds: the committer stores every batch submitted since its
    last round in one step, makes them durable together, and then calls the
    ``set_batch_listener`` listener once per round with each batch's token
    and its outcomes, in submission order: for each send (id, message JSON,
    fresh) once durable, or the ChatError it was refused with (a send of a
    failed write gets ``server_error``). Every submitted batch is answered,
    even after ``close`` (with errors), so a caller never waits forever. An
    empty batch is answered in its turn too: a server uses that to keep a
    connection's replies in order.

Durable listeners
    ``add_durable_listener(listener)``: ``listener(durable_id, failed)`` is
    called from the committer after each batch, in commit order. After a
    commit ``failed`` is None and every id up to ``durable_id`` is durable or
    lost; after a failed write ``failed`` is the range of ids lost with it and
    ``durable_id`` has not moved. A listener must not block (it runs on the
    one thread that writes messages) and must not call back into the store's
    writing methods.

Errors
    Rule violations raise ``protocol.ChatError`` with the protocol's code
    (``unknown_user``, ``unknown_message`` ...). ``StoreCorrupt`` when opening
    means the data needs a person: nothing was changed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Protocol, Tuple, Union

from ..protocol import ChatError, Message

#: The listener's arguments: the durable id, and the ids lost with a failed batch.
DurableListener = Callable[[int, Optional[range]], None]
#: One send as ``submit`` takes it: (sender, to, text, reply_to, nonce).
SendRequest = Tuple[str, str, str, Optional[int], Optional[str]]
#: What became of one send: (id, message JSON, fresh), or the ChatError it was refused with.
Outcome = Union[Tuple[int, str, bool], ChatError]
#: The batch listener's argument: every batch of one round, as (token, outcomes).
BatchListener = Callable[[List[Tuple[Any, List[Outcome]]]], None]


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


@dataclass(frozen=True)
class Room:
    """A room as it is durably: a snapshot, never changed (a change makes a new one)."""

    name: str                       # canonical spelling, as created ("#General")
    topic: str
    private: bool
    members: FrozenSet[str]         # user keys (protocol.user_key)
    created: float
    creator: str = ""               # the key of the user who created it
    invited: FrozenSet[str] = frozenset()   # user keys invited and not joined yet

    @property
    def key(self) -> str:
        """What the room is filed under (rooms are unique regardless of case)."""
        return self.name.lower()


class ChatStore(Protocol):
    """The operations the server uses. Names (users and rooms) are accepted in any
    case and come out canonical (as first signed up, as created); see the module
    docstring for what is durable when a call returns and what readers see.

    A conversation is direct (the other side a username) or a room (a name
    starting with ``#``); wherever ``other``/``with_user``/``to`` is taken, either
    is. What a user may *see* is its own direct messages and every message of
    the rooms it is a member of now.
    """

    # ------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Commit what is pending, then release everything; idempotent."""
        ...

    @property
    def last_id(self) -> int:
        """The newest message id handed out (its message may not be durable yet)."""
        ...

    @property
    def durable_id(self) -> int:
        """Every message up to this id is durable, or lost (see ``lost``)."""
        ...

    def stats(self) -> Dict[str, int]:
        """Counters for logs and benchmarks."""
        ...

    # ------------------------------------------------------------ accounts

    def add_user(self, name: str, password_hash: str) -> str:
        """Create an account; durable when it returns; the canonical name.

        ChatError(invalid_username); ChatError(username_taken) for a name taken
        in any case or too like an existing one (``protocol.name_skeleton``).
        """
        ...

    def get_user(self, name: str) -> Optional[User]: ...

    def set_password_hash(self, name: str, password_hash: str) -> None:
        """Replace an account's hash; durable when it returns. ChatError(unknown_user)."""
        ...

    def canonical_name(self, name: str) -> Optional[str]: ...

    def usernames(self) -> List[str]:
        """Canonical names, sorted by their lower-cased spelling."""
        ...

    # ------------------------------------------------------------ read markers

    def mark_read(self, user: str, other: str, upto: int) -> Optional[int]:
        """Move ``user``'s read marker in the conversation with ``other`` forward
        (never back); the new value when it moved, None when it did not (then
        nothing is written). Capped at the newest durable message from
        ``other`` to ``user`` (direct) or the room's newest durable message.
        Durable when it returns. ChatError(unknown_user, unknown_room,
        not_a_member)."""
        ...

    def read_marker(self, user: str, peer: str) -> int:
        """``user``'s marker in the conversation with ``peer`` (a user or a room), 0: none."""
        ...

    def unread_counts(self, user: str) -> Dict[str, int]:
        """Canonical peer -> durable direct messages to ``user`` above the marker (> 0)."""
        ...

    # ------------------------------------------------------------ rooms

    def create_room(self, creator: str, room: str, topic: str = "",
                    private: bool = False) -> Room:
        """Create a room, ``creator`` its first member (marker 0). Durable when it
        returns. ChatError(invalid_room, invalid_topic, room_taken: in any case)."""
        ...

    def get_room(self, room: str) -> Optional[Room]: ...

    def join_room(self, user: str, room: str) -> Tuple[Room, bool]:
        """Join: (the room, whether anything changed; a member joining again changes
        nothing and writes nothing). The marker starts at the room's newest
        durable message; an invitation is used up. Durable when it returns.
        ChatError(unknown_room, not_invited)."""
        ...

    def leave_room(self, user: str, room: str) -> Room:
        """Leave: the room's history, search and marker are no longer the user's; the
        room stays. Durable when it returns. ChatError(unknown_room, not_a_member)."""
        ...

    def invite(self, by: str, room: str, username: str) -> bool:
        """Invite to a private room: whether anything changed (inviting a member, an
        invited user or to a public room does not). Durable when it returns.
        ChatError(unknown_room, not_a_member, unknown_user)."""
        ...

    def set_topic(self, by: str, room: str, topic: str) -> Room:
        """Durable when it returns. ChatError(unknown_room, not_a_member, invalid_topic)."""
        ...

    def room_members(self, room: str) -> List[str]:
        """Canonical member names sorted by lower case. ChatError(unknown_room)."""
        ...

    def rooms_visible_to(self, user: str) -> List[Room]:
        """Every public room and the private ones ``user`` is in or invited to,
        sorted by lower-cased name."""
        ...

    def rooms_of(self, user: str) -> List[str]:
        """Canonical names of the rooms ``user`` is a member of, sorted."""
        ...

    def is_member(self, user: str, room: str) -> bool: ...

    def is_invited(self, user: str, room: str) -> bool: ...

    def room_counts(self, user: str, room: str) -> Tuple[int, int]:
        """(unread, mentions): durable room messages from others above ``user``'s
        marker, and those that mention it (PROTOCOL-v2's rule); (0, 0) for a
        non-member. ChatError(unknown_room)."""
        ...

    # ------------------------------------------------------------ messages

    def append(self, sender: str, to: str, text: str, reply_to: Optional[int] = None,
               nonce: Optional[str] = None) -> Tuple[int, str, bool]:
        """Queue a message to a user or a room: (id, message JSON, fresh); not durable
        until ``wait_durable``. A nonce the sender used before (at least its last
        1,000, across restarts) stores nothing: the answer is the message stored
        for it, fresh=False, even if not durable yet and whatever ``to``/text.
        ChatError(unknown_user, unknown_room, not_a_member, unknown_message for a
        ``reply_to`` the sender cannot see, server_error)."""
        ...

    def append_many(self, sends: List[Tuple[str, str, str, Optional[int], Optional[str]]]
                    ) -> List[Union[Tuple[int, str, bool], ChatError]]:
        """``append`` for each (sender, to, text, reply_to, nonce) in order, as one
        step for the backend's locking: each one's result, or the ChatError it
        raised (the others go on)."""
        ...

    def append_message(self, sender: str, to: str, text: str,
                       reply_to: Optional[int] = None) -> Tuple[int, str]:
        """``append`` without a nonce: (id, message JSON)."""
        ...

    def submit(self, token: Any, sends: List[SendRequest]) -> None:
        """Hand a batch of sends to the committer; the batch listener gets ``token``
        and their outcomes once they are durable (see "Submitted batches")."""
        ...

    def set_batch_listener(self, listener: BatchListener) -> None:
        """The one listener of submitted batches; set before the first ``submit``."""
        ...

    def wait_durable(self, msg_id: int) -> None:
        """Block until ``msg_id`` and every id before it is durable or lost;
        ChatError(server_error) if ``msg_id`` was lost."""
        ...

    def lost(self, msg_id: int) -> bool: ...

    def add_durable_listener(self, listener: DurableListener) -> None: ...

    def sent_bytes(self, user: str) -> int:
        """Bytes of message JSON ``user`` has authored (stored or on its way): a quota."""
        ...

    def history(self, user: str, with_user: Optional[str] = None,
                after: Optional[int] = None, before: Optional[int] = None,
                limit: int = 100) -> List[str]:
        """The messages of ``history_page``."""
        ...

    def history_page(self, user: str, with_user: Optional[str] = None,
                     after: Optional[int] = None, before: Optional[int] = None,
                     limit: int = 100) -> Tuple[List[str], bool]:
        """Message JSON strings ``user`` may see, ascending, durable only, and whether
        more exist beyond the page in the paging direction: with ``after`` the
        oldest ``limit`` above it (more = newer exist), else the newest ``limit``
        below ``before`` if given (more = older exist). ``with_user`` a user or
        a room (ChatError(unknown_room, not_a_member)); without it, the direct
        messages and every message of the rooms ``user`` is in now."""
        ...

    def search(self, user: str, query: str, with_user: Optional[str] = None,
               before: Optional[int] = None, limit: int = 50) -> Tuple[List[str], bool]:
        """The newest ``limit`` messages ``user`` may see whose text contains ``query``
        (casefolded), id below ``before`` if given, ascending; and whether older
        matches exist. ChatError(unknown_user, unknown_room, not_a_member)."""
        ...

    def get_message(self, msg_id: int) -> Optional[Message]:
        """A durable message by id (whoever may see it), or None."""
        ...
