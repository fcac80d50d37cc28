"""Rooms: who may create, join, leave, invite and set topics, and the room queries.

Every room change is a change of the accounts journal, so it has the
accounts' promise: durable (fsynced, group-shared) when the call returns,
shown only then, nothing changed when the disk refuses it.

Decisions are made under the store's lock against the durable state. Two
requests whose outcome depends on each other (two joins of one user, a
leave and an invitation of one user to one room, two creations of one name)
are ordered: the later waits until the earlier is settled, then decides on
what is then durable, so that "changed" answers are exact and nothing is
written twice. Which user asked does not hold a room: an invitation or a
topic from a member whose leave is on its way is allowed, as either order
would be.
"""
from __future__ import annotations

import threading
from typing import Callable, Dict, List, Optional, Tuple

from ... import protocol as p
from ..contract import Room
from .accounts import AccountJournal, Change
from .state import room_conv

#: What a change's outcome depends on: ("room", room key) or (user key, room key).
_Busy = Tuple[str, str]
#: A decision: the change to write, or None when nothing changes.
_Decide = Callable[[], Optional[Dict[str, object]]]


class Rooms:
    """Room changes and queries; the state is the accounts journal's."""

    def __init__(self, lock: threading.Lock, accounts: AccountJournal,
                 newest_in: Callable[[str], int], clock: Callable[[], float]) -> None:
        self._lock = lock
        self._accounts = accounts
        self._state = accounts.state
        self._newest_in = newest_in     # conversation key -> its newest durable id; lock held
        self._clock = clock
        self._busy: Dict[_Busy, Change] = {}

    # ------------------------------------------------------------ changes

    def create(self, creator: str, room: str, topic: str = "", private: bool = False) -> Room:
        """Create ``room`` with ``creator`` as its first member (its marker at 0).

        ChatError(invalid_room, invalid_topic, unknown_user, room_taken: in any case).
        """
        p.validate_room_name(room)
        p.validate_topic(topic)
        rkey = room.lower()

        def decide() -> Optional[Dict[str, object]]:
            ckey = self._state.key_of(creator)
            if rkey in self._state.rooms:
                taken = self._state.rooms[rkey].name
                raise p.ChatError(p.ROOM_TAKEN, f"the room name {taken} is taken")
            return {"op": "room", "name": room, "topic": topic, "private": bool(private),
                    "by": ckey, "created": self._clock()}

        self._write(("room", rkey), decide)
        return self._frozen(rkey)

    def join(self, user: str, room: str) -> Tuple[Room, bool]:
        """Join ``room``: (the room, whether that changed anything).

        A member joining again changes nothing and writes nothing. The
        joiner's read marker starts at the room's newest durable message; an
        invitation is used up. ChatError(unknown_room; not_invited for a
        private room without an invitation).
        """
        ukey, rkey = p.user_key(user), room.lower()

        def decide() -> Optional[Dict[str, object]]:
            self._state.key_of(user)
            found = self._state.room_of(room)
            if ukey in found.members:
                return None
            if found.private and ukey not in found.invited:
                raise p.ChatError(p.NOT_INVITED, f"{found.name} is private: joining it takes "
                                                 "an invitation from a member")
            return {"op": "join", "user": ukey, "room": rkey,
                    "upto": self._newest_in(room_conv(rkey))}

        changed = self._write((ukey, rkey), decide)
        return self._frozen(rkey), changed

    def leave(self, user: str, room: str) -> Room:
        """Leave ``room``: its history, search and marker are no longer the user's.

        ChatError(unknown_room, not_a_member). The room stays, members or not.
        """
        ukey, rkey = p.user_key(user), room.lower()

        def decide() -> Optional[Dict[str, object]]:
            self._state.key_of(user)
            self._state.member_room(ukey, room)
            return {"op": "leave", "user": ukey, "room": rkey}

        self._write((ukey, rkey), decide)
        return self._frozen(rkey)

    def invite(self, by: str, room: str, username: str) -> bool:
        """Invite ``username`` to ``room``: whether that changed anything.

        Inviting a member, someone invited already, or anyone to a public room
        changes nothing. ChatError(unknown_room, not_a_member: ``by``, unknown_user).
        """
        ukey, rkey = p.user_key(username), room.lower()

        def decide() -> Optional[Dict[str, object]]:
            bkey = self._state.key_of(by)
            found = self._state.member_room(bkey, room)
            self._state.key_of(username)
            if not found.private or ukey in found.members or ukey in found.invited:
                return None
            return {"op": "invite", "user": ukey, "room": rkey, "by": bkey}

        return self._write((ukey, rkey), decide)

    def set_topic(self, by: str, room: str, topic: str) -> Room:
        """Set the topic of ``room``. ChatError(unknown_room, not_a_member, invalid_topic)."""
        rkey = room.lower()

        def decide() -> Optional[Dict[str, object]]:
            bkey = self._state.key_of(by)
            self._state.member_room(bkey, room)
            p.validate_topic(topic)
            return {"op": "topic", "room": rkey, "topic": topic, "by": bkey}

        self._write(None, decide)
        return self._frozen(rkey)

    def _write(self, busy: Optional[_Busy], decide: _Decide) -> bool:
        """Decide once no change ``busy`` names is on its way, then write the change
        through; whether there was one. ``busy`` stays held until it is settled."""
        while True:
            with self._lock:
                inflight = self._busy.get(busy) if busy is not None else None
                if inflight is None:
                    change = decide()
                    if change is None:
                        return False
                    queued = self._accounts.queue(change, None if busy is None else
                                                  lambda: self._release(busy))
                    if busy is not None:
                        self._busy[busy] = queued
                    break
            self._accounts.settle(inflight)
        self._accounts.write_through(queued)
        return True

    def _release(self, busy: Optional[_Busy]) -> None:
        if busy is not None:
            del self._busy[busy]

    def _frozen(self, rkey: str) -> Room:
        with self._lock:
            return self._state.rooms[rkey].freeze()

    # ------------------------------------------------------------ queries (durable state)

    def get(self, room: str) -> Optional[Room]:
        """The room named ``room`` in any case, or None."""
        with self._lock:
            found = self._state.rooms.get(room.lower())
            return None if found is None else found.freeze()

    def members(self, room: str) -> List[str]:
        """Canonical names of the members, sorted by lower case. ChatError(unknown_room)."""
        with self._lock:
            found = self._state.room_of(room)
            accounts = self._state.accounts
            return [accounts[key].name for key in sorted(found.members)]

    def visible_to(self, user: str) -> List[Room]:
        """Every public room, and the private ones ``user`` is in or invited to, sorted."""
        ukey = p.user_key(user)
        with self._lock:
            rooms = self._state.rooms
            return [rooms[key].freeze() for key in sorted(rooms)
                    if not rooms[key].private or ukey in rooms[key].members
                    or ukey in rooms[key].invited]

    def of(self, user: str) -> List[str]:
        """Canonical names of the rooms ``user`` is a member of, sorted by lower case."""
        with self._lock:
            rooms = self._state.rooms
            return [rooms[key].name for key in sorted(self._state.member_of.get(
                p.user_key(user), ()))]

    def is_member(self, user: str, room: str) -> bool:
        with self._lock:
            found = self._state.rooms.get(room.lower())
            return found is not None and p.user_key(user) in found.members

    def is_invited(self, user: str, room: str) -> bool:
        with self._lock:
            found = self._state.rooms.get(room.lower())
            return found is not None and p.user_key(user) in found.invited
