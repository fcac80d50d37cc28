"""The messages pane's model: the rows it draws and where the view of them is. Pure.

Rows: a day-change line (``── Tuesday 24 November ──``) between messages of
different days; one header (time and sender) over a run of messages from one
sender within ``GROUP_SECONDS`` of each other; the "new messages" line at the
read marker found when the conversation was opened; and above the oldest loaded
message, what is there: "loading older messages", "PgUp loads older messages"
or "beginning of the conversation".

The view is anchored to a message, not to a count of rows from the bottom: a
page of older messages loaded above, or new messages arriving below, leave the
rows on screen where they are. Only a view that follows the bottom (``follow``)
moves with new messages; a view scrolled up counts them (``-- 3 new below --``)
until PgDn or End brings it back down.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..protocol import Message, user_key
from .text import sanitize, text_width, truncate, wrap_text

Row = Tuple[str, str, Optional[int]]   # text, role, message id (None: a line of the pane's own)

#: Messages from one sender this close together share one header.
GROUP_SECONDS = 5 * 60
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def day_of(ts: float) -> Tuple[int, int, int]:
    """The local calendar day of a timestamp: (year, month, day)."""
    t = time.localtime(ts)
    return t.tm_year, t.tm_mon, t.tm_mday


def day_label(ts: float, now: Optional[float] = None) -> str:
    """``Tuesday 24 November`` (the year too when it is not this year's)."""
    t = time.localtime(ts)
    label = f"{DAYS[t.tm_wday]} {t.tm_mday} {MONTHS[t.tm_mon - 1]}"
    this_year = time.localtime(time.time() if now is None else now).tm_year
    return label if t.tm_year == this_year else f"{label} {t.tm_year}"


def rule(label: str, width: int) -> str:
    """``──── label ────`` across ``width`` columns (at least ``── label ──``)."""
    core = f"── {label} ──"
    spare = max(0, width - text_width(core))
    return truncate("─" * (spare // 2) + core + "─" * (spare - spare // 2), width)


def marker_id(messages: Sequence[Message], me: str, unread: int) -> Optional[int]:
    """Where the "new messages" line goes: the oldest of the ``unread`` newest messages
    from others (the server's count when the conversation was opened); None if none."""
    if unread <= 0:
        return None
    mine = user_key(me)
    theirs = [m.id for m in messages if user_key(m.sender) != mine]
    if not theirs:
        return None
    return theirs[max(0, len(theirs) - unread)]


@dataclass
class RowStyle:
    """What the rows need to know besides the messages (all of it from the state)."""

    me: str
    show_to: bool = False                                   # the all-messages view
    quote: Callable[[int], str] = lambda msg_id: f"reply to message #{msg_id}"
    mentions_me: Callable[[Message], bool] = lambda msg: False
    clock: Callable[[float], str] = lambda ts: time.strftime("%H:%M", time.localtime(ts))
    marker: Optional[int] = None                            # the "new messages" line's message
    top: Optional[str] = None                               # the line above the oldest loaded


Prepared = Tuple[Tuple[int, int, int], str, str, Row, List[Row]]   # day, sender, to, head, body


def _prepare(msg: Message, width: int, style: RowStyle, me: str) -> Prepared:
    """What of a message's rows depends on it alone (its day, header and wrapped text)."""
    who = sanitize(msg.sender) + (" → " + sanitize(msg.to) if style.show_to else "")
    sender = user_key(msg.sender)
    head = (truncate(f"{style.clock(msg.ts)} {who}", width), "me" if sender == me else "them",
            msg.id)
    role = "mention" if style.mentions_me(msg) else "text"
    body = [("  " + line, role, msg.id) for line in wrap_text(msg.text, max(1, width - 2))]
    return day_of(msg.ts), sender, user_key(msg.to), head, body


def build_rows(messages: Iterable[Message], width: int, style: RowStyle,
               cache: Optional[Dict[int, Prepared]] = None) -> List[Row]:
    """The pane's rows, each at most ``width`` columns. ``cache`` keeps what depends on
    a message alone between calls (the caller empties it when the width or the view's
    kind changes): a redraw of 10,000 messages then costs a loop, not 10,000 wraps."""
    rows: List[Row] = []
    if style.top is not None:
        rows.append((rule(style.top, width), "paging", None))
    me = user_key(style.me)
    cache = {} if cache is None else cache
    prev: Optional[Message] = None
    prev_day = prev_sender = prev_to = None
    for msg in messages:
        prepared = cache.get(msg.id)
        if prepared is None:
            prepared = cache[msg.id] = _prepare(msg, width, style, me)
        day, sender, to, head, body = prepared
        if prev is not None and day != prev_day:
            rows.append((rule(day_label(msg.ts), width), "day", None))
            prev = None
        if msg.id == style.marker:
            rows.append((rule("new messages", width), "marker", None))
            prev = None
        if (prev is None or sender != prev_sender or to != prev_to
                or not 0 <= msg.ts - prev.ts <= GROUP_SECONDS):
            rows.append(head)
        if msg.reply_to is not None:
            rows.append((truncate("  ↪ " + style.quote(msg.reply_to), width), "quote", msg.id))
        rows.extend(body)
        prev, prev_day, prev_sender, prev_to = msg, day, sender, to
    return rows


def quote_text(original: Optional[Message], msg_id: int, fetching: bool) -> str:
    """The ``↪`` line of a reply: its author and first words, or what is known so far."""
    if original is None:
        return ("reply to an earlier message…" if fetching
                else f"reply to message #{msg_id} (not available)")
    first = sanitize(original.text.split("\n", 1)[0])
    return f"reply to {sanitize(original.sender)}: “{truncate(first, 40)}”"


@dataclass
class Paging:
    """What is known of a conversation's older messages on the server."""

    older: Optional[bool] = None     # None: not asked yet
    loading: bool = False
    oldest: Optional[int] = None     # the cursor of the all-messages view's own pages

    def top_line(self, is_all: bool) -> Optional[str]:
        if self.loading:
            return "loading older messages…"
        if self.older is False:
            return "beginning of your messages" if is_all else "beginning of the conversation"
        return "PgUp loads older messages" if self.older else None


@dataclass
class MessageView:
    """Where the messages pane looks, kept across redraws; reset when a conversation opens.

    ``place`` is called by the pane with the rows it is about to draw and decides
    the first row shown; the keys (``page_up``, ``page_down``, ``to_bottom``,
    ``reveal``) only say what the user asked for.
    """

    follow: bool = True                          # the bottom is shown, and stays shown
    anchor: Optional[Tuple[int, int]] = None     # (message id, rows from its first row) on top
    new_below: int = 0                           # messages arrived below a scrolled-up view
    unread_at_open: int = 0                      # the count when the conversation opened
    marker: Optional[int] = None                 # the "new messages" line's message
    reveal: bool = False                         # bring the selection into view at next place
    paging: Dict[str, Paging] = field(default_factory=dict)   # by conversation key
    quotes: Dict[int, Optional[Message]] = field(default_factory=dict)   # replies' originals
    cache: Dict[int, Prepared] = field(default_factory=dict)
    cache_key: Tuple[int, bool] = (0, False)
    top: int = 0                                 # of the last placement
    height: int = 0
    rows: List[Row] = field(default_factory=list)

    def opened(self, unread: int) -> None:
        self.follow, self.anchor, self.new_below, self.reveal = True, None, 0, False
        self.unread_at_open, self.marker = unread, None
        self.top, self.rows = 0, []

    def paging_of(self, key: str) -> Paging:
        return self.paging.setdefault(key, Paging())

    def row_cache(self, width: int, show_to: bool) -> Dict[int, Prepared]:
        """``build_rows``' cache, emptied when the width or the kind of view changes."""
        if (width, show_to) != self.cache_key:
            self.cache, self.cache_key = {}, (width, show_to)
        return self.cache

    # ------------------------------------------------------------ placing

    def place(self, rows: List[Row], height: int, selected: Optional[int]) -> int:
        """The index of the first row to show: at the bottom when following, else where
        the anchor is; moved just enough to show the selection when asked to."""
        first, last = _spans(rows)
        bottom = max(0, len(rows) - height)
        if self.follow:
            top = bottom
        elif self.anchor is not None and self.anchor[0] in first:
            top = first[self.anchor[0]] + self.anchor[1]
            if self.anchor[1] <= 0 and first[self.anchor[0]] == next(iter(first.values())):
                top = 0       # at the oldest message: the paging line above it shows too
        else:
            top = self.top
        top = max(0, min(top, bottom))
        revealed = False
        if self.reveal and selected in first:
            if first[selected] < top:
                top, revealed = first[selected], True
            elif last[selected] >= top + height:
                top, revealed = min(bottom, last[selected] - height + 1), True
        self.reveal = False
        self.rows, self.height, self.top = rows, height, top
        if revealed and top >= bottom:
            self.to_bottom()
        elif top < bottom:
            self.follow = False
        if not self.follow:
            self.anchor = _anchor_at(rows, top)
        return top

    def scrolled(self) -> int:
        """Rows between the bottom of the view and the last row (0 when at the bottom)."""
        if self.follow:
            return 0
        return max(0, len(self.rows) - self.height - self.top)

    # ------------------------------------------------------------ keys

    def page_up(self, page: int) -> bool:
        """Up a page; True when the view reached the oldest loaded row."""
        if not self.rows:
            return True
        self.follow = False
        self.top = max(0, self.top - page)
        self.anchor = _anchor_at(self.rows, self.top)
        return self.top == 0

    def page_down(self, page: int) -> None:
        """Down a page; at the bottom, the view follows new messages again."""
        bottom = max(0, len(self.rows) - self.height)
        if self.follow or self.top + page >= bottom:
            self.to_bottom()
            return
        self.top += page
        self.anchor = _anchor_at(self.rows, self.top)

    def to_bottom(self) -> None:
        self.follow, self.anchor, self.new_below = True, None, 0

    def on_new_message(self) -> None:
        """A message arrived in the open conversation: counted if the view does not follow."""
        if not self.follow:
            self.new_below += 1

    def visible_ids(self) -> List[int]:
        """The messages on screen at the last placement, top to bottom."""
        seen: List[int] = []
        for _, _, msg_id in self.rows[self.top:self.top + self.height]:
            if msg_id is not None and (not seen or seen[-1] != msg_id):
                seen.append(msg_id)
        return seen


def _spans(rows: List[Row]) -> Tuple[Dict[int, int], Dict[int, int]]:
    """Each message's first and last row index."""
    first: Dict[int, int] = {}
    last: Dict[int, int] = {}
    for i, (_, _, msg_id) in enumerate(rows):
        if msg_id is not None:
            first.setdefault(msg_id, i)
            last[msg_id] = i
    return first, last


def _anchor_at(rows: List[Row], top: int) -> Optional[Tuple[int, int]]:
    """(message, offset) naming row ``top``: the first message row at or after it, with a
    negative offset for the pane's own lines above it (a day line, the paging line)."""
    for i in range(top, len(rows)):
        msg_id = rows[i][2]
        if msg_id is not None:
            first = i
            while first > 0 and rows[first - 1][2] == msg_id:
                first -= 1
            return msg_id, top - first
    return None


def new_below_line(count: int, width: int) -> str:
    return truncate(f"-- {count} new below --  (PgDn)", width)
