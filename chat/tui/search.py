"""Search every conversation: ``Ctrl-R`` (results as you type) and ``/search TEXT``.

``SearchBox`` is the pure part: the query, the results (newest first) and the
choice. ``SearchCommands`` is a mix-in of ``ChatApp``: each change of the query
restarts a short timer (``SEARCH_DEBOUNCE`` seconds), so a word typed quickly
costs one request, made off the UI thread with the v2 ``search`` op; the reply
comes back as a ``tui.searched`` event and is shown only if it answers the query
as it is now. Enter jumps to the message (``Scrollback.jump_to``).
"""
from __future__ import annotations

import curses
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .. import protocol as p
from ..client import ChatClient
from . import panes
from .commands import Command
from .conversations import peer_of
from .state import ChatState
from .text import is_text, pad, sanitize, text_width, truncate

#: The event a finished search posts to the app's event queue.
SEARCHED = "tui.searched"
#: Quiet time after the last key before the request goes out.
SEARCH_DEBOUNCE = 0.3
#: Results asked for (the protocol allows 1 to 100).
SEARCH_LIMIT = 50
MAX_QUERY = 200
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class SearchBox:
    """The search overlay's state. ``generation`` numbers the queries: a reply to an
    older one (typing went on) is dropped."""

    query: str = ""
    results: List[p.Message] = field(default_factory=list)     # newest first
    index: int = 0
    more: bool = False
    note: str = "Type to search every conversation."
    generation: int = 0

    def edit(self, query: str) -> bool:
        """A new query; True when it is worth asking the server."""
        self.query = query[:MAX_QUERY]
        self.generation += 1
        if not self.query.strip():
            self.results, self.index, self.more = [], 0, False
            self.note = "Type to search every conversation."
            return False
        self.note = "Searching…"
        return True

    def apply(self, generation: int, messages: List[p.Message], more: bool) -> bool:
        """The server's answer; False (ignored) if it answers an older query."""
        if generation != self.generation:
            return False
        self.results = sorted(messages, key=lambda m: m.id, reverse=True)
        self.index, self.more = 0, more
        count = len(self.results)
        self.note = (f"No message contains “{self.query}”." if not count else
                     f"{count}{'+' if more else ''} found · ↑/↓ choose · Enter opens · Esc closes")
        return True

    def move(self, delta: int) -> None:
        if self.results:
            self.index = max(0, min(len(self.results) - 1, self.index + delta))

    def chosen(self) -> Optional[p.Message]:
        return self.results[self.index] if 0 <= self.index < len(self.results) else None


def short_date(ts: float, now: Optional[float] = None) -> str:
    """``24 Nov 14:05``; ``24 Nov 2025`` for another year."""
    t = time.localtime(ts)
    this_year = time.localtime(time.time() if now is None else now).tm_year
    day = f"{t.tm_mday:>2} {MONTHS[t.tm_mon - 1]}"
    return f"{day} {t.tm_hour:02}:{t.tm_min:02}" if t.tm_year == this_year else f"{day} {t.tm_year}"


def result_line(msg: p.Message, me: str, width: int, now: Optional[float] = None) -> str:
    """One result: conversation, date, author and the text's first line."""
    where = truncate(sanitize(peer_of(msg, me)), 12)
    where += " " * max(0, 12 - text_width(where))
    text = sanitize(msg.text.replace("\n", " "))
    return truncate(f"{where} {short_date(msg.ts, now)}  {sanitize(msg.sender)}: {text}", width)


def draw_search(win, box: SearchBox, me: str, colors: panes.Colors) -> None:
    """The search overlay: the query, what happened, the results; the choice highlighted."""
    height, width = win.getmaxyx()
    box_w = max(20, width - 4)
    rows = max(1, min(height - 6, max(5, len(box.results))))
    x0, y0 = (width - box_w) // 2, 1
    top = panes.scroll_top(box.index, rows)
    panes.put(win, y0, x0, pad(" Search all conversations (Ctrl-R) ", box_w), colors.focus_title)
    panes.put(win, y0 + 1, x0, pad(f" Find: {sanitize(box.query)}▏", box_w), colors.selected)
    panes.put(win, y0 + 2, x0, pad(" " + sanitize(box.note), box_w), colors.dim)
    shown = box.results[top:top + rows]
    for i in range(rows):
        line = result_line(shown[i], me, box_w - 2) if i < len(shown) else ""
        attr = colors.selected if shown and top + i == box.index else 0
        panes.put(win, y0 + 3 + i, x0, pad(" " + line, box_w), attr)
    panes.put(win, y0 + 3 + rows, x0, pad(" Esc closes ", box_w), colors.title)


class SearchCommands:
    """``Ctrl-R``, ``/search TEXT`` and the keys of the search overlay."""

    state: ChatState
    client: ChatClient
    search_debounce = SEARCH_DEBOUNCE

    def fail(self, text: str) -> bool:          # RoomCommands'
        raise NotImplementedError

    def jump_to(self, msg: p.Message) -> None:  # Scrollback's
        raise NotImplementedError

    def open_search(self, query: str = "") -> None:
        state = self.state
        state.menu_open, state.picker = False, None
        state.search = SearchBox()
        if query:
            self.search_for(query, delay=0.0)     # typed whole: no reason to wait

    def cmd_search(self, cmd: Command) -> bool:
        self.open_search(cmd.text.strip())
        return True

    def search_key(self, ch) -> None:
        box: SearchBox = self.state.search
        moves = {curses.KEY_UP: -1, curses.KEY_DOWN: 1, curses.KEY_PPAGE: -10,
                 curses.KEY_NPAGE: 10, 18: 1}          # Ctrl-R again: the next older one
        if ch == 27:
            self.state.search = None
        elif ch in (10, 13, curses.KEY_ENTER):
            chosen = box.chosen()
            if chosen is not None:
                self.state.search = None
                self.jump_to(chosen)
        elif ch in moves:
            box.move(moves[ch])
        elif ch in (curses.KEY_BACKSPACE, 127, 8):
            self.search_for(box.query[:-1])
        elif ch == 21:                                  # Ctrl-U
            self.search_for("")
        elif isinstance(ch, str) and is_text(ch):
            self.search_for(box.query + ch)

    def search_for(self, query: str, delay: Optional[float] = None) -> None:
        """Change the query; the request goes out once typing pauses (``delay``, by
        default ``search_debounce`` seconds), on another thread."""
        box: SearchBox = self.state.search
        if not box.edit(query):
            return
        generation, query = box.generation, box.query
        if self.search_debounce <= 0:            # tests: at once, on this thread
            self._search(generation, query)
            return
        delay = self.search_debounce if delay is None else delay
        timer = threading.Timer(delay, self._search, args=(generation, query))
        timer.daemon = True
        timer.start()

    def _search(self, generation: int, query: str) -> None:
        """On the timer's thread: ask, unless typing went on meanwhile; post the answer."""
        box = self.state.search
        if box is None or box.generation != generation:
            return
        event: Dict[str, Any] = {"event": SEARCHED, "generation": generation}
        try:
            event["result"] = self.client.search(query, limit=SEARCH_LIMIT)
        except (p.ChatError, ConnectionError, TimeoutError) as exc:
            event["error"] = str(getattr(exc, "message", "") or exc)
        self.client.events.put(event)

    def on_search_event(self, ev: Dict[str, Any]) -> None:
        box = self.state.search
        if box is None or ev.get("generation") != box.generation:
            return
        if ev.get("error") is not None:
            box.note = f"Search failed: {sanitize(str(ev['error']))}"
            return
        messages, more = ev["result"]
        box.apply(box.generation, messages, more)
