"""Who is in which room, as the server needs it for fan-out.

The store owns membership durably; this registry keeps, per room, the set
of member keys that a room message or event goes to, so the delivery path
never asks the store (and never takes the store's lock) per message. It is
filled lazily from the store and changed only by the ops that change
membership (create, join, leave), right after the store made the change
durable, under its own lock (taken before the store's, never the other way round).
"""
from __future__ import annotations

import threading
from typing import Callable, Dict, FrozenSet, Optional

from .. import protocol as p

MembersOf = Callable[[str], Optional[FrozenSet[str]]]


class RoomRegistry:
    """Room key -> the user keys of its members (a frozen set, replaced on change,
    so a reader can use it without a lock)."""

    def __init__(self, members_of: MembersOf, changed: Callable[[], None] = lambda: None
                 ) -> None:
        self._members_of = members_of
        self._changed = changed      # told after every change (fan-out caches)
        self._lock = threading.Lock()
        self._rooms: Dict[str, FrozenSet[str]] = {}

    def members(self, room: str) -> FrozenSet[str]:
        """The user keys of ``room``'s members (empty for a room that does not exist)."""
        members = self._rooms.get(room.lower())
        if members is not None:
            return members
        with self._lock:   # loaded under the lock, so no change can slip in between
            members = self._rooms.get(room.lower())
            if members is None:
                members = self._rooms[room.lower()] = self._members_of(room) or frozenset()
            return members

    def joined(self, room: str, user: str) -> None:
        self._change(room, lambda members: members | {p.user_key(user)})

    def left(self, room: str, user: str) -> None:
        self._change(room, lambda members: members - {p.user_key(user)})

    def _change(self, room: str, change: Callable[[FrozenSet[str]], FrozenSet[str]]) -> None:
        key = room.lower()
        with self._lock:
            known = self._rooms.get(key)
            if known is not None:   # else not loaded yet: the next reader loads the truth
                self._rooms[key] = change(known)
        self._changed()
