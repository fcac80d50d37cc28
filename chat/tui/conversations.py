"""The conversations list (WeeChat's buflist): rooms you are in and people you talk to.

Pure: no curses and no client. The app feeds it what the server says (the
rooms you are in, unread counts, messages, ``read`` events); the left pane
draws ``ordered()``, the status bar draws ``activity()``, and the Alt-digit,
Alt-a and Ctrl-P/Ctrl-N keys ask it where to go.

The order is **stable**, as in WeeChat and irssi: rooms first, then direct
conversations, each by name (case-insensitive). A conversation keeps its number
while messages come and go, so ``Alt-3`` is always ``#team`` and the hands learn
it. Activity is made visible without reordering: every entry shows its unread
count and ``@`` for a mention, and the activity line (``Act: 3:#team(5,@)
5:carol(2)``) lists every conversation with unread messages, the ones that
call for you (mentions and direct messages) first, however long the list is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

from ..protocol import Message, is_room, user_key


@dataclass
class Conversation:
    """One entry of the list: a room (``#team``) or a person (``carol``)."""

    name: str                 # as the server spells it
    unread: int = 0
    mentioned: bool = False   # an unread message mentions you (@you)
    topic: str = ""
    members: int = 0
    private: bool = False

    @property
    def is_room(self) -> bool:
        return is_room(self.name)

    @property
    def calls_for_me(self) -> bool:
        """Unread mail addressed to me in person: a mention, or any direct message."""
        return self.unread > 0 and (self.mentioned or not self.is_room)

    def mark_read(self) -> None:
        self.unread, self.mentioned = 0, False


def mentions(text: str, name: str) -> bool:
    """Whether ``text`` mentions ``name`` the way the server counts it (PROTOCOL.md):
    ``@`` and the name in any case, with no name character just before the ``@`` or
    just after the name: ``hi @bob!`` mentions bob; ``mail@bob`` and ``@bobby`` do not."""
    pattern = rf"(?<![A-Za-z0-9_\-])@{re.escape(name)}(?![A-Za-z0-9_\-])"
    return re.search(pattern, text, re.IGNORECASE) is not None


def peer_of(msg: Message, me: str) -> str:
    """The other side of the conversation ``msg`` belongs to: its room, or the other person."""
    if is_room(msg.to):
        return msg.to
    return msg.to if user_key(msg.sender) == user_key(me) else msg.sender


class Conversations:
    """The conversations you have, with unread counts and mentions; ordered and numbered."""

    def __init__(self, me: str) -> None:
        self.me = me
        self._items: Dict[str, Conversation] = {}

    # ------------------------------------------------------------ lookups

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: str) -> bool:
        return user_key(name) in self._items

    def get(self, name: str) -> Optional[Conversation]:
        return self._items.get(user_key(name))

    def ordered(self) -> List[Conversation]:
        """Rooms, then people, each by name: the numbering (1-based) follows this order."""
        return sorted(self._items.values(),
                      key=lambda c: (not c.is_room, c.name.lower(), c.name))

    def number_of(self, name: str) -> Optional[int]:
        for i, conv in enumerate(self.ordered(), 1):
            if user_key(conv.name) == user_key(name):
                return i
        return None

    def by_number(self, number: int) -> Optional[Conversation]:
        """``Alt-3``: the third conversation, or None if there are fewer."""
        items = self.ordered()
        return items[number - 1] if 1 <= number <= len(items) else None

    def step(self, current: Optional[str], delta: int) -> Optional[Conversation]:
        """``Ctrl-N``/``Ctrl-P``: the next/previous conversation, wrapping around."""
        items = self.ordered()
        if not items:
            return None
        at = self.number_of(current) if current else None
        if at is None:
            return items[0] if delta > 0 else items[-1]
        return items[(at - 1 + delta) % len(items)]

    def next_active(self, current: Optional[str] = None) -> Optional[Conversation]:
        """``Alt-a``: the conversation to look at next. Mentions and direct messages come
        first, then rooms with unread messages; within each, the first after the one open
        (wrapping), so pressing it again walks through all of them."""
        items = self.ordered()
        at = (self.number_of(current) or 0) if current else 0
        rotated = items[at:] + items[:at]
        urgent = [c for c in rotated if c.calls_for_me]
        rest = [c for c in rotated if c.unread and not c.calls_for_me]
        pending = urgent + rest
        return pending[0] if pending else None

    def activity(self) -> str:
        """``Act: 3:#team(5,@) 5:carol(2)``, or "" when nothing is unread. Mentions and
        direct messages first (they are for you), then by number."""
        entries = [(n, c) for n, c in enumerate(self.ordered(), 1) if c.unread]
        entries.sort(key=lambda e: (not e[1].calls_for_me, e[0]))
        if not entries:
            return ""
        return "Act: " + " ".join(
            f"{n}:{c.name}({c.unread}{',@' if c.mentioned else ''})" for n, c in entries)

    # ------------------------------------------------------------ updates

    def add(self, name: str, **fields) -> Conversation:
        """The conversation with ``name`` (made if new); ``fields`` update it."""
        conv = self._items.get(user_key(name))
        if conv is None:
            conv = self._items[user_key(name)] = Conversation(name)
        for key, value in fields.items():
            setattr(conv, key, value)
        return conv

    def remove(self, name: str) -> None:
        self._items.pop(user_key(name), None)

    def on_message(self, msg: Message, is_open: bool) -> Optional[Conversation]:
        """A new message: counted unread unless it is mine or its conversation is open.
        Returns its conversation."""
        conv = self.add(peer_of(msg, self.me))
        if user_key(msg.sender) == user_key(self.me) or is_open:
            return conv
        conv.unread += 1
        if conv.is_room and mentions(msg.text, self.me):
            conv.mentioned = True
        return conv

    def on_read(self, name: str, upto: int, messages: Iterable[Message]) -> None:
        """Another session of mine read ``name`` up to ``upto``: what is left unread is
        what came from others after it (never more than counted before)."""
        conv = self.get(name)
        if conv is None:
            return
        me = user_key(self.me)
        left = [m for m in messages
                if m.id > upto and user_key(m.sender) != me
                and user_key(peer_of(m, self.me)) == user_key(name)]
        conv.unread = min(conv.unread, len(left))
        conv.mentioned = conv.mentioned and any(mentions(m.text, self.me) for m in left)
