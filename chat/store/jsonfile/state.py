"""What the accounts journal records, and what each change means.

Accounts, read markers and rooms (with their members, invitations and
topics). The state here is what is durable: a change is applied only once it
is on disk (or while it is replayed), by ``apply``, the one place that says
what a change does; ``check`` says whether a replayed change fits. The
changes, as the journal holds them (keys are ``protocol.user_key`` of a user,
the lower-cased name of a room):

``signup`` (name, hash, created), ``hash`` (user, hash),
``read`` (user, peer, upto: ``peer`` is the other side, a user's key or a
room's), ``room`` (name, topic, private, by, created: the creator is its
first member), ``join`` (user, room, upto: the joiner's marker starts there;
an invitation is used up), ``leave`` (user, room: the marker goes too),
``invite`` (user, room, by) and ``topic`` (room, topic, by).

In memory, read markers are keyed by ``protocol.conversation_key`` (one kind
of key for direct conversations and rooms). No locking here: the store's lock
guards it.
"""
from __future__ import annotations

from bisect import insort
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Set

from ... import protocol as p
from ..contract import Room


class Account(NamedTuple):
    name: str            # canonical spelling (as first signed up)
    hash: str
    created: float


class RoomRecord:
    """A room's durable state, changed in place; ``freeze`` gives a snapshot to hand out."""

    __slots__ = ("name", "topic", "private", "created", "creator", "members", "invited",
                 "_frozen")

    def __init__(self, name: str, topic: str, private: bool, created: float, creator: str,
                 members: Set[str], invited: Set[str]) -> None:
        self.name, self.topic, self.private = name, topic, private
        self.created, self.creator = created, creator
        self.members, self.invited = members, invited
        self._frozen: Optional[Room] = None

    def freeze(self) -> Room:
        """The room as a Room (kept until the next change, so repeated asks are cheap)."""
        if self._frozen is None:
            self._frozen = Room(self.name, self.topic, self.private, frozenset(self.members),
                                self.created, self.creator, frozenset(self.invited))
        return self._frozen

    def changed(self) -> None:
        self._frozen = None


class Snapshot(NamedTuple):
    """A copy of the state taken under the lock, to be encoded outside it."""

    seq: int
    accounts: Dict[str, Account]
    read: Dict[str, Dict[str, int]]
    rooms: Dict[str, Room]


def room_conv(rkey: str) -> str:
    """The conversation key of the room filed under ``rkey``."""
    return "room:" + rkey


class AccountState:
    """Accounts, read markers and rooms as of the last durable change."""

    def __init__(self) -> None:
        # the marker dicts inside ``read`` are replaced, never changed, so a shallow
        # copy is a snapshot that can be encoded outside the lock
        self.accounts: Dict[str, Account] = {}
        self.read: Dict[str, Dict[str, int]] = {}
        self.skeletons: Dict[str, str] = {}   # name_skeleton -> key of the first such account
        self.rooms: Dict[str, RoomRecord] = {}
        self.member_of: Dict[str, Set[str]] = {}    # user key -> keys of its rooms
        self.invited_to: Dict[str, Set[str]] = {}   # user key -> keys of rooms it may join
        self._sorted_keys: Optional[List[str]] = None

    # ------------------------------------------------------------ reading

    def usernames(self) -> List[str]:
        """Canonical names sorted case-insensitively."""
        if self._sorted_keys is None:
            self._sorted_keys = sorted(self.accounts)
        accounts = self.accounts
        return [accounts[key].name for key in self._sorted_keys]

    def key_of(self, name: str) -> str:
        """The key of an existing account; ChatError(unknown_user)."""
        key = p.user_key(name)
        if key not in self.accounts:
            raise p.ChatError(p.UNKNOWN_USER, f"there is no user {name[:40]!r}")
        return key

    def room_of(self, name: str) -> RoomRecord:
        """An existing room, by its name in any case; ChatError(unknown_room)."""
        room = self.rooms.get(name.lower()) if p.is_room(name) else None
        if room is None:
            raise p.ChatError(p.UNKNOWN_ROOM, f"there is no room {name[:40]!r}")
        return room

    def member_room(self, ukey: str, name: str) -> RoomRecord:
        """A room ``ukey`` is a member of; ChatError(unknown_room, not_a_member)."""
        room = self.room_of(name)
        if ukey not in room.members:
            raise p.ChatError(p.NOT_A_MEMBER, f"you are not a member of {room.name}")
        return room

    def marker(self, ukey: str, conv: str) -> int:
        """``ukey``'s read marker in the conversation ``conv`` (0: none)."""
        return self.read.get(ukey, {}).get(conv, 0)

    # ------------------------------------------------------------ replayed changes

    def check(self, change: Any) -> None:
        """ValueError unless ``change`` is a journal change that fits the state.

        Its crc was good, so this is not a torn write: a change that does not
        fit is damage (or a bug), and loading refuses it rather than guess.
        Only what would break the state is checked: who was a member when
        is not (concurrent requests of one user may land in either order).
        """
        op = change.get("op") if isinstance(change, dict) else None
        checks = _CHECKS.get(op) if isinstance(op, str) else None
        if checks is None:
            raise ValueError(f"an unknown kind of change {str(op)[:20]!r}")
        for check in checks:
            check(self, change)

    def _signup_fits(self, change: Dict[str, Any]) -> None:
        name = change.get("name")
        if not isinstance(name, str) or not p.USERNAME_RE.match(name):
            raise ValueError("a sign-up with a bad name")
        if p.user_key(name) in self.accounts:
            raise ValueError(f"a second sign-up for {name!r}")
        if (not isinstance(change.get("hash"), str)
                or not isinstance(change.get("created"), (int, float))):
            raise ValueError(f"a bad sign-up for {name!r}")

    def _hash_fits(self, change: Dict[str, Any]) -> None:
        if not isinstance(change.get("hash"), str):
            raise ValueError("a hash change for no account")

    def _user_exists(self, change: Dict[str, Any]) -> None:
        if change.get("user") not in self.accounts:
            raise ValueError(f"a {change['op']} change for no account")

    def _room_exists(self, change: Dict[str, Any]) -> None:
        if change.get("room") not in self.rooms:
            raise ValueError(f"a {change['op']} change for no room")

    def _peer_exists(self, change: Dict[str, Any]) -> None:
        peer = change.get("peer")
        if not isinstance(peer, str) or (peer not in self.rooms and peer not in self.accounts):
            raise ValueError("a read marker for no account or room")

    def _upto_fits(self, change: Dict[str, Any]) -> None:
        if type(change.get("upto")) is not int:
            raise ValueError("a read marker that is not a number")

    def _room_fits(self, change: Dict[str, Any]) -> None:
        name = change.get("name")
        if not isinstance(name, str) or not p.ROOM_RE.match(name):
            raise ValueError("a room with a bad name")
        if name.lower() in self.rooms:
            raise ValueError(f"a second room {name!r}")
        if (not isinstance(change.get("private"), bool) or change.get("by") not in self.accounts
                or not isinstance(change.get("created"), (int, float))):
            raise ValueError(f"a bad room {name!r}")
        _topic_fits(change)

    # ------------------------------------------------------------ applying

    def apply(self, change: Dict[str, Any]) -> None:
        """Make a durable (or replayed) change visible."""
        _APPLY[change["op"]](self, change)

    def _apply_signup(self, change: Dict[str, Any]) -> None:
        self.add_account(Account(change["name"], change["hash"], change["created"]))

    def _apply_hash(self, change: Dict[str, Any]) -> None:
        key = change["user"]
        self.accounts[key] = self.accounts[key]._replace(hash=change["hash"])

    def _apply_read(self, change: Dict[str, Any]) -> None:
        user, peer, upto = change["user"], change["peer"], change["upto"]
        room = self.rooms.get(peer)
        if room is not None and user not in room.members:
            return                      # moved while a leave was on its way
        conv = p.conversation_key(user, peer)
        markers = self.read.get(user, {})
        if upto > markers.get(conv, 0):
            self.read[user] = {**markers, conv: upto}

    def _apply_room(self, change: Dict[str, Any]) -> None:
        name, creator = change["name"], change["by"]
        self.add_room(RoomRecord(name, change["topic"], change["private"], change["created"],
                                 creator, {creator}, set()))

    def _apply_join(self, change: Dict[str, Any]) -> None:
        user, rkey = change["user"], change["room"]
        room = self.rooms[rkey]
        if user in room.members:
            return
        room.members.add(user)
        room.invited.discard(user)
        self.member_of.setdefault(user, set()).add(rkey)
        self.invited_to.get(user, set()).discard(rkey)
        self.read[user] = {**self.read.get(user, {}), room_conv(rkey): change["upto"]}
        room.changed()

    def _apply_leave(self, change: Dict[str, Any]) -> None:
        user, rkey = change["user"], change["room"]
        room = self.rooms[rkey]
        if user not in room.members:
            return
        room.members.discard(user)
        self.member_of[user].discard(rkey)
        markers = dict(self.read.get(user, {}))
        markers.pop(room_conv(rkey), None)
        self.read[user] = markers
        room.changed()

    def _apply_invite(self, change: Dict[str, Any]) -> None:
        user, rkey = change["user"], change["room"]
        room = self.rooms[rkey]
        if user in room.members or not room.private:
            return
        room.invited.add(user)
        self.invited_to.setdefault(user, set()).add(rkey)
        room.changed()

    def _apply_topic(self, change: Dict[str, Any]) -> None:
        room = self.rooms[change["room"]]
        room.topic = change["topic"]
        room.changed()

    def add_account(self, account: Account) -> None:
        key = p.user_key(account.name)
        self.accounts[key] = account
        self.skeletons.setdefault(p.name_skeleton(account.name), key)
        if self._sorted_keys is not None:
            insort(self._sorted_keys, key)

    def add_room(self, room: RoomRecord) -> None:
        rkey = room.name.lower()
        self.rooms[rkey] = room
        for user in room.members:
            self.member_of.setdefault(user, set()).add(rkey)
        for user in room.invited:
            self.invited_to.setdefault(user, set()).add(rkey)

    # ------------------------------------------------------------ the snapshot

    def snapshot(self, seq: int) -> Snapshot:
        """A copy to encode outside the lock (the marker dicts are never changed, and a
        frozen room is a copy)."""
        rooms = {rkey: room.freeze() for rkey, room in self.rooms.items()}
        return Snapshot(seq, dict(self.accounts), dict(self.read), rooms)


def _topic_fits(change: Dict[str, Any]) -> None:
    topic = change.get("topic")
    if not isinstance(topic, str):
        raise ValueError("a topic that is not a string")
    try:
        p.validate_topic(topic)
    except p.ChatError as exc:
        raise ValueError(exc.message) from None


def _is_str(field: str) -> Callable[[AccountState, Dict[str, Any]], None]:
    def check(state: AccountState, change: Dict[str, Any]) -> None:
        if not isinstance(change.get(field), str):
            raise ValueError(f'a {change["op"]} change without "{field}"')
    return check


S = AccountState
#: What a replayed change of each kind must satisfy, in order.
_CHECKS: Dict[str, List[Callable[[AccountState, Dict[str, Any]], None]]] = {
    "signup": [S._signup_fits],
    "hash": [S._user_exists, S._hash_fits],
    "read": [S._user_exists, S._peer_exists, S._upto_fits],
    "room": [S._room_fits],
    "join": [S._user_exists, S._room_exists, S._upto_fits],
    "leave": [S._user_exists, S._room_exists],
    "invite": [S._user_exists, S._room_exists, _is_str("by")],
    "topic": [S._room_exists, lambda state, change: _topic_fits(change), _is_str("by")],
}
#: What a change of each kind does.
_APPLY: Dict[str, Callable[[AccountState, Dict[str, Any]], None]] = {
    "signup": S._apply_signup, "hash": S._apply_hash, "read": S._apply_read,
    "room": S._apply_room, "join": S._apply_join, "leave": S._apply_leave,
    "invite": S._apply_invite, "topic": S._apply_topic,
}
