"""Drawing: the layout of the main screen and one class per pane.

Panes only read ``ChatState`` and draw it; they never change it. Every string
drawn goes through ``text.pad``/``text.sanitize`` first, and ``put`` never lets
curses raise for the bottom-right cell or a too-narrow window.
"""
from __future__ import annotations

import curses
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..protocol import Message
from .commands import MENU_ITEMS
from .history import RowStyle, build_rows, new_below_line, quote_text
from .notices import notice_rows, status_text
from .outbox import pending_rows
from .state import CONFIRM_QUESTIONS, ChatState, format_time
from .text import pad, sanitize, text_width, truncate, window

MIN_WIDTH = 40
MIN_HEIGHT = 10


@dataclass(frozen=True)
class Rect:
    y: int
    x: int
    h: int
    w: int


@dataclass(frozen=True)
class Layout:
    conversations: Rect
    messages: Rect
    input: Rect
    status: Rect
    notice: Rect


def compute_layout(height: int, width: int, notice_rows: int = 1) -> Optional[Layout]:
    """Where each pane goes for a terminal of this size; None if it is too small.

    The conversations list has the whole height on the left: it is what tells
    you where there is something to read. The users directory is an overlay (F2).
    The notice (``notices.py``) has ``notice_rows`` rows of its own above the input.
    """
    if height < MIN_HEIGHT or width < MIN_WIDTH:
        return None
    side = max(14, min(24, width // 4))
    body = height - 2 - notice_rows        # notice, input line and status bar below
    return Layout(
        conversations=Rect(0, 0, body, side),
        messages=Rect(0, side + 1, body, width - side - 1),
        input=Rect(height - 2, 0, 1, width),
        status=Rect(height - 1, 0, 1, width),
        notice=Rect(body, 0, notice_rows, width),
    )


class Colors:
    """Attributes by role; plain attributes where the terminal has no colour."""

    def __init__(self) -> None:
        self.title = curses.A_REVERSE
        self.focus_title = curses.A_REVERSE | curses.A_BOLD
        self.selected = curses.A_REVERSE
        self.unread = curses.A_BOLD
        self.online = curses.A_BOLD
        self.me = curses.A_BOLD
        self.error = curses.A_BOLD
        self.dim = curses.A_DIM
        try:
            if curses.has_colors():
                curses.start_color()
                curses.use_default_colors()
                curses.init_pair(1, curses.COLOR_GREEN, -1)
                curses.init_pair(2, curses.COLOR_CYAN, -1)
                curses.init_pair(3, curses.COLOR_RED, -1)
                curses.init_pair(4, curses.COLOR_YELLOW, -1)
                self.online = curses.color_pair(1) | curses.A_BOLD
                self.me = curses.color_pair(2) | curses.A_BOLD
                self.error = curses.color_pair(3) | curses.A_BOLD
                self.unread = curses.color_pair(4) | curses.A_BOLD
        except curses.error:
            pass


def put(win, y: int, x: int, text: str, attr: int = 0) -> None:
    """addstr that clips to the window and never raises (bottom-right cell, resizes)."""
    height, width = win.getmaxyx()
    if not 0 <= y < height or not 0 <= x < width:
        return
    text = truncate(text, width - x, ellipsis="")
    try:
        win.addstr(y, x, text, attr)
    except curses.error:
        pass  # writing the last cell moves the cursor off the window: harmless


def draw_title(win, rect: Rect, title: str, focused: bool, colors: Colors) -> None:
    attr = colors.focus_title if focused else colors.title
    marker = "▶ " if focused else "  "
    put(win, rect.y, rect.x, pad(marker + title, rect.w), attr)


def scroll_top(selected: int, rows: int) -> int:
    """First row to show so that the selected one stays in view."""
    return max(0, selected - rows + 1)


def conversation_label(number: int, name: str, unread: int, mentioned: bool,
                       online: Optional[bool], width: int) -> str:
    """One entry of the list: `` 3 #team (5,@)`` or `` 5 ●carol (2)``; the count is never
    cut off (the name is, first)."""
    count = f" ({unread}{',@' if mentioned else ''})" if unread else ""
    mark = "" if online is None else ("●" if online else " ")
    head = f"{number:>2} {mark}"
    room = max(1, width - text_width(head) - text_width(count))
    return truncate(head + truncate(sanitize(name), room) + count, width)


class ConversationsPane:
    """The rooms you are in and the people you talk to, numbered for Alt-1…9 (WeeChat's
    buflist): unread counts, ``@`` for a mention, the open one highlighted."""

    def draw(self, win, rect: Rect, state: ChatState, colors: Colors) -> None:
        convs = state.convs.ordered()
        focused = state.focus == "conversations"
        draw_title(win, rect, "Conversations", focused, colors)
        rows = rect.h - 1
        if not convs:
            for i, hint in enumerate(["F2: all users", "/join #room", "/rooms"][:rows]):
                put(win, rect.y + 1 + i, rect.x + 1, hint, colors.dim)
            return
        anchor = state.conv_index if focused else (state.convs.number_of(state.peer or "")
                                                   or 1) - 1
        top = scroll_top(anchor, rows)
        hidden = sum(1 for c in convs[top + rows:] if c.unread)
        if hidden and rows > 1:          # activity below the fold: said on the last row
            rows -= 1
            put(win, rect.y + rect.h - 1, rect.x,
                pad(truncate(f" ↓ {hidden} more unread", rect.w), rect.w), colors.unread)
        for i, conv in enumerate(convs[top:top + rows]):
            index = top + i
            online = None if conv.is_room else state.is_online(conv.name)
            text = conversation_label(index + 1, conv.name, conv.unread, conv.mentioned,
                                      online, rect.w)
            attr = 0
            if conv.mentioned or (conv.unread and not conv.is_room):
                attr |= colors.error
            elif conv.unread:
                attr |= colors.unread
            if state.is_open(conv.name) or (focused and index == state.conv_index):
                attr |= colors.selected
            put(win, rect.y + 1 + i, rect.x, pad(text, rect.w), attr)


Row = Tuple[str, str, Optional[int]]   # text, role, message id


def message_rows(state: ChatState, width: int) -> List[Row]:
    """The messages pane as rows of at most ``width`` columns (pure: tested directly):
    day lines, runs of one sender under one header, the read marker, the paging line
    (``history.build_rows``)."""
    view = state.view
    style = RowStyle(state.me, show_to=state.peer is None,
                     quote=lambda msg_id: _quote(state, msg_id),
                     mentions_me=state.mentions_me, clock=format_time, marker=view.marker,
                     top=state.paging().top_line(state.peer is None))
    return build_rows(state.visible_messages(), width, style,
                      view.row_cache(width, style.show_to))


def _quote(state: ChatState, msg_id: int) -> str:
    original: Optional[Message] = state.messages.get(msg_id) or state.view.quotes.get(msg_id)
    return quote_text(original, msg_id, fetching=msg_id not in state.view.quotes)


def messages_title(state: ChatState) -> str:
    """``#team · 3 members · lunch at noon``, ``Messages with bob`` or ``All my messages``."""
    if state.peer is None:
        return "All my messages"
    conv = state.convs.get(state.peer)
    if conv is None or not conv.is_room:
        return f"Messages with {sanitize(state.peer)}"
    people = f"{conv.members} member{'' if conv.members == 1 else 's'}"
    title = f"{sanitize(conv.name)} · {people}"
    return title + (f" · {sanitize(conv.topic)}" if conv.topic else "")


class MessagesPane:
    """The open conversation (or all messages), newest at the bottom, scrollable. Drawing
    tells ``state.view`` where the rows fell (``MessageView.place``), which the keys use."""

    def draw(self, win, rect: Rect, state: ChatState, colors: Colors) -> None:
        view = state.view
        title = messages_title(state)
        if view.scrolled():
            title += "  (scrolled up; PgDn returns)"
        draw_title(win, rect, title, state.focus == "messages", colors)
        rows = message_rows(state, rect.w - 1) + pending_rows(state.outbox, state.peer,
                                                             state.me, rect.w - 1)
        height = rect.h - 1
        if not any(row[2] is not None for row in rows) and len(rows) <= 1:
            hint = ("No messages yet. Type below and press Enter to send."
                    if state.peer else "No messages yet. F2 lists the users; Enter opens one.")
            put(win, rect.y + 2, rect.x + 1, hint, colors.dim)
        top = view.place(rows, height, state.selected_message)
        visible = rows[top:top + height]
        if view.new_below and not view.follow and len(visible) == height:
            visible[-1] = (new_below_line(view.new_below, rect.w - 1), "newbelow", None)
        for i, (text, role, msg_id) in enumerate(visible):
            attr = {"me": colors.me, "them": colors.online | curses.A_BOLD,
                    "quote": colors.dim, "mention": colors.unread, "day": colors.dim,
                    "paging": colors.dim, "marker": colors.error,
                    "newbelow": colors.focus_title}.get(role, 0)
            if msg_id is not None and msg_id == state.selected_message:
                attr |= colors.selected
            put(win, rect.y + 1 + i, rect.x + 1, pad(text, rect.w - 1), attr)


PASTE_HINT = " Enter sends · Esc drops"


def paste_preview(text: str, width: int) -> str:
    """A waiting multi-line paste, collapsed: ``[pasted 3 lines: first line…]``.

    The hint on the keys goes first when the line is short; then the first line.
    """
    lines = text.count("\n") + 1
    first = next((line for line in text.split("\n", 8) if line.strip()), "")
    head = f"[pasted {lines} lines: "
    hint = PASTE_HINT if width >= text_width(head) + text_width(PASTE_HINT) + 12 else ""
    room = max(1, width - text_width(head) - 1 - text_width(hint))
    shown = truncate(sanitize(first[:room + 1].strip()), room)
    if not shown.endswith("…"):
        shown += "…"
    return truncate(head + shown + "]" + hint, width)


class InputPane:
    """The input line; scrolls sideways to keep the cursor in view.

    Only the part in view is measured and sanitised, so a redraw costs the
    width of the terminal, however long the line.
    """

    def draw(self, win, rect: Rect, state: ChatState, line, colors: Colors) -> int:
        prompt = f"to {truncate(sanitize(state.peer), 20)}> " if state.peer else "> "
        attr = curses.A_BOLD if state.focus == "input" else 0
        prompt_w = text_width(prompt)
        if line.pending is not None:
            preview = paste_preview(line.pending, rect.w - prompt_w)
            put(win, rect.y, rect.x, pad(prompt + preview, rect.w), attr | colors.me)
            return rect.x + min(rect.w - 1, prompt_w + text_width(preview))
        room = max(1, rect.w - prompt_w - 1)
        text = line.shown()                        # a newline as ⏎, same length
        start, end, cursor_col = window(text, line.cursor, room)
        put(win, rect.y, rect.x, pad(prompt + sanitize(text[start:end]), rect.w), attr)
        return rect.x + prompt_w + cursor_col


class StatusBar:
    """Who you are and the connection, then the activity line; the server's address and
    key hints only where there is room (``notices.status_text``). Notices have their own
    line (``NoticeLine``), so nothing here hides them."""

    def draw(self, win, rect: Rect, state: ChatState, colors: Colors) -> None:
        conn = state.connection
        text = status_text(state.me, state.server, conn, state.convs.activity(), rect.w)
        attr = colors.title if conn == "connected" else colors.error
        put(win, rect.y, rect.x, pad(text, rect.w), attr)


class NoticeLine:
    """The notice (an error, a hint, "Sent to bob."): its own row(s) above the input,
    wrapped, never cut to nothing."""

    def draw(self, win, rect: Rect, state: ChatState, colors: Colors) -> None:
        attr = colors.error if state.status_is_error else colors.dim
        for i, row in enumerate(notice_rows(state.status, rect.w, rect.h)):
            put(win, rect.y + i, rect.x, pad(row, rect.w), attr)


def draw_too_small(win, height: int, width: int) -> None:
    lines = [f"Too small: {width}×{height}.", f"Need {MIN_WIDTH}×{MIN_HEIGHT} or more.",
             "Enlarge it, or Ctrl-C."]
    for i, line in enumerate(lines[:height]):
        put(win, i, 0, line[:width])


def draw_overlay(win, title: str, lines: List[str], selected: Optional[int],
                 colors: Colors) -> None:
    """A centred box (the menu, the help)."""
    height, width = win.getmaxyx()
    box_w = min(width - 2, max(text_width(line) for line in lines + [title]) + 4)
    box_h = min(height - 2, len(lines) + 2)
    y0, x0 = max(0, (height - box_h) // 2), max(0, (width - box_w) // 2)
    put(win, y0, x0, pad(f" {title} ", box_w), colors.focus_title)
    for i, line in enumerate(lines[:box_h - 2]):
        attr = colors.selected if i == selected else 0
        put(win, y0 + 1 + i, x0, pad("  " + line, box_w), attr)
    put(win, y0 + box_h - 1, x0, pad(" Esc closes ", box_w), colors.title)


def menu_lines() -> List[str]:
    return [f"{i}  {label}" for i, (label, _) in enumerate(MENU_ITEMS, 1)]


def draw_picker(win, state: ChatState, colors: Colors) -> None:
    """The users directory, the rooms, the members: a list in a box, scrolled to the choice."""
    picker = state.picker
    if picker is None:
        return
    height = win.getmaxyx()[0]
    rows = max(1, height - 4)
    top = scroll_top(picker.index, rows)
    lines = [sanitize(label) for label, _ in picker.rows[top:top + rows]] or ["(none)"]
    draw_overlay(win, picker.title, lines, picker.index - top, colors)


def draw_confirm(win, state: ChatState, colors: Colors) -> None:
    question = state.confirm_question()
    title = CONFIRM_QUESTIONS.get(state.confirm or "", "Sure?")
    draw_overlay(win, title, [question, "y: yes · n or Esc: no"], None, colors)
