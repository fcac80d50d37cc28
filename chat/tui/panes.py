"""Drawing: the layout of the main screen and one class per pane.

Panes only read ``ChatState`` and draw it; they never change it. Every string
drawn goes through ``text.pad``/``text.sanitize`` first, and ``put`` never lets
curses raise for the bottom-right cell or a too-narrow window.
"""
from __future__ import annotations

import curses
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..protocol import Message, user_key
from .state import HELP_LINES, MENU_ITEMS, ChatState, format_time
from .text import pad, sanitize, text_width, truncate, window, wrap_text

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
    users: Rect
    online: Rect
    messages: Rect
    input: Rect
    status: Rect


def compute_layout(height: int, width: int) -> Optional[Layout]:
    """Where each pane goes for a terminal of this size; None if it is too small."""
    if height < MIN_HEIGHT or width < MIN_WIDTH:
        return None
    side = max(14, min(28, width // 4))
    body = height - 2                      # input line and status bar below
    users_h = max(3, (body * 3) // 5)
    online_h = body - users_h
    return Layout(
        users=Rect(0, 0, users_h, side),
        online=Rect(users_h, 0, online_h, side),
        messages=Rect(0, side + 1, body, width - side - 1),
        input=Rect(height - 2, 0, 1, width),
        status=Rect(height - 1, 0, 1, width),
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


class UsersPane:
    """Every account: ● online, (n) unread, the open conversation highlighted."""

    def draw(self, win, rect: Rect, state: ChatState, colors: Colors) -> None:
        names = state.user_names()
        draw_title(win, rect, f"Users ({len(names)})", state.focus == "users", colors)
        rows = rect.h - 1
        top = scroll_top(state.user_index, rows)
        for i, name in enumerate(names[top:top + rows]):
            row = state.users[user_key(name)]
            index = top + i
            mark = "●" if row.online else " "
            label = sanitize(name) + (" (you)" if user_key(name) == user_key(state.me) else "")
            unread = f" ({row.unread})" if row.unread else ""
            text = f"{mark} {truncate(label, rect.w - 3 - len(unread))}{unread}"
            attr = 0
            if row.unread:
                attr |= colors.unread
            elif row.online:
                attr |= colors.online
            if state.is_open(name) or (state.focus == "users" and index == state.user_index):
                attr |= colors.selected
            put(win, rect.y + 1 + i, rect.x, pad(text, rect.w), attr)


class OnlinePane:
    """Who is online now, live from presence events."""

    def draw(self, win, rect: Rect, state: ChatState, colors: Colors) -> None:
        names = state.online_names()
        draw_title(win, rect, f"Online ({len(names)})", state.focus == "online", colors)
        rows = rect.h - 1
        top = scroll_top(state.online_index, rows)
        for i, name in enumerate(names[top:top + rows]):
            selected = state.focus == "online" and top + i == state.online_index
            attr = colors.online | (colors.selected if selected else 0)
            put(win, rect.y + 1 + i, rect.x, pad("● " + sanitize(name), rect.w), attr)


Row = Tuple[str, str, Optional[int]]   # text, role, message id


def message_rows(state: ChatState, width: int) -> List[Row]:
    """The messages pane as rows of at most ``width`` columns (pure: tested directly)."""
    rows: List[Row] = []
    me = user_key(state.me)
    for msg in state.visible_messages():
        who = sanitize(msg.sender)
        if state.peer is None:
            who += " → " + sanitize(msg.to)
        role = "me" if user_key(msg.sender) == me else "them"
        rows.append((truncate(f"{format_time(msg.ts)} {who}", width), role, msg.id))
        if msg.reply_to is not None:
            rows.append((truncate("  ↪ " + _quote(state, msg.reply_to), width), "quote", msg.id))
        for line in wrap_text(msg.text, max(1, width - 2)):
            rows.append(("  " + line, "text", msg.id))
    return rows


def _quote(state: ChatState, msg_id: int) -> str:
    original: Optional[Message] = state.messages.get(msg_id)
    if original is None:
        return f"reply to message #{msg_id}"
    first = sanitize(original.text.split("\n", 1)[0])
    return f"reply to {sanitize(original.sender)}: “{truncate(first, 40)}”"


class MessagesPane:
    """The open conversation (or all messages), newest at the bottom, scrollable."""

    def draw(self, win, rect: Rect, state: ChatState, colors: Colors) -> None:
        title = f"Messages with {sanitize(state.peer)}" if state.peer else "All my messages"
        if state.scroll:
            title += f"  (scrolled up {state.scroll}; PgDn returns)"
        draw_title(win, rect, title, state.focus == "messages", colors)
        rows = message_rows(state, rect.w - 1)
        height = rect.h - 1
        if not rows:
            hint = ("No messages yet. Type below and press Enter to send."
                    if state.peer else "No messages yet. Pick a user (Tab, arrows, Enter).")
            put(win, rect.y + 2, rect.x + 1, hint, colors.dim)
            return
        state.scroll = min(state.scroll, max(0, len(rows) - height))
        end = len(rows) - state.scroll
        visible = rows[max(0, end - height):end]
        for i, (text, role, msg_id) in enumerate(visible):
            attr = {"me": colors.me, "them": colors.online | curses.A_BOLD,
                    "quote": colors.dim}.get(role, 0)
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
        start, end, cursor_col = window(line.text, line.cursor, room)
        put(win, rect.y, rect.x, pad(prompt + sanitize(line.text[start:end]), rect.w), attr)
        return rect.x + prompt_w + cursor_col


class StatusBar:
    def draw(self, win, rect: Rect, state: ChatState, colors: Colors) -> None:
        conn = state.connection
        left = (f" {sanitize(state.me)} @ {state.server} · {conn} · "
                f"beep {'on' if state.beep else 'off'} · F10 menu · /help · ")
        attr = colors.error if state.status_is_error or conn != "connected" else colors.title
        put(win, rect.y, rect.x, pad(left + sanitize(state.status), rect.w), attr)


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
    return [f"{key}  {label}" for key, label, _ in MENU_ITEMS]


def help_lines() -> List[str]:
    return list(HELP_LINES)
