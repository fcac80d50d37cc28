"""What the terminal client shows, and how keys and events change it. No curses here.

The app feeds server events and key presses in; the panes read the state out
and draw it. Keeping this pure is what lets the tests check layout-independent
behaviour (unread counts, selection, slash commands, line editing) without a
terminal.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ..protocol import Message, user_key

FOCUS_ORDER = ("users", "online", "messages", "input")

HELP_LINES = [
    "Keys: Tab next pane · arrows move · Enter open / send · PgUp/PgDn scroll",
    "F1/Alt-1 all users · F2/Alt-2 online · F3/Alt-3 send · F4/Alt-4 my messages",
    "F5/Alt-5 reply · F6/Alt-6 log out · F10/Ctrl-O menu · Ctrl-B beep · Ctrl-C quit",
    "Commands: /msg USER TEXT · /reply TEXT · /users · /online · /all · /beep · /help · /quit",
    "Pasted text is never a command: a pasted /quit shows as //quit and is sent as text.",
    "A paste of several lines is one message: Enter sends it, Esc or Ctrl-U drops it.",
]

MENU_ITEMS = [
    ("1", "View all users", "users"),
    ("2", "View users online", "online"),
    ("3", "Send a message", "compose"),
    ("4", "View my messages", "all"),
    ("5", "Reply to a message", "reply"),
    ("6", "Log out", "logout"),
]


@dataclass
class Command:
    """A parsed input line: a slash command, or plain text (name "say")."""

    name: str
    args: List[str] = field(default_factory=list)
    text: str = ""


COMMANDS = {"msg", "reply", "users", "online", "all", "beep", "help", "quit", "logout", "open"}


class CommandError(ValueError):
    """An input line that cannot be run; the message says why, for the status bar."""


def parse_command(line: str) -> Command:
    """``/msg bob hi there`` → Command("msg", ["bob"], "hi there"); text → "say"."""
    if not line.startswith("/") or line.startswith("//"):
        return Command("say", text=line[1:] if line.startswith("//") else line)
    head, _, rest = line[1:].partition(" ")
    name = head.lower()
    if name not in COMMANDS:
        raise CommandError(f"unknown command /{head}; /help lists them")
    if name == "msg" or name == "open":
        user, _, text = rest.strip().partition(" ")
        if not user:
            raise CommandError(f"usage: /{name} USER" + (" TEXT" if name == "msg" else ""))
        if name == "msg" and not text.strip():
            raise CommandError("usage: /msg USER TEXT")
        return Command(name, [user], text.strip())
    if name == "reply":
        if not rest.strip():
            raise CommandError("usage: /reply TEXT")
        return Command(name, [], rest.strip())
    return Command(name)


def clean_paste(text: str) -> str:
    """Pasted text as a message: one kind of newline, no controls, no blank lines around it."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isprintable():
        text = "".join(ch for ch in text if ch.isprintable() or ch in "\n\t")
    return text.strip("\n")


class InputLine:
    """A one-line editor with the keys of a shell line and a history of what was sent.

    A paste of several lines does not fit one line: it waits in ``pending``,
    shown collapsed, until Enter sends it as one message or Esc drops it.
    """

    def __init__(self) -> None:
        self.text = ""
        self.cursor = 0
        self.history: List[str] = []
        self.pending: Optional[str] = None
        self._browse: Optional[int] = None
        self._draft = ""

    def paste(self, text: str) -> bool:
        """Pasted text, never a command; True when it waits in ``pending`` for Enter.

        One line goes into the line as typed text, except that a leading ``/``
        is doubled (the ``//`` escape): the user sees it, and Enter sends it as
        text rather than running it. Several lines wait in ``pending``.
        """
        text = clean_paste(text)
        if not text.strip():
            return self.pending is not None
        if self.pending is not None:
            self.pending += "\n" + text
            return True
        if "\n" in text:
            self.pending = text
            return True
        if self.cursor == 0 and text.startswith("/"):
            text = "/" + text
        self.insert(text)
        return False

    def take_paste(self) -> Optional[str]:
        """The waiting paste, now to be sent; the line beneath it is kept."""
        text, self.pending = self.pending, None
        return text

    def restore_paste(self, text: str) -> None:
        """Put back a paste that could not be sent."""
        self.pending = text if self.pending is None else text + "\n" + self.pending

    def insert(self, s: str) -> None:
        self.text = self.text[:self.cursor] + s + self.text[self.cursor:]
        self.cursor += len(s)
        self._browse = None

    def backspace(self) -> None:
        if self.cursor > 0:
            self.text = self.text[:self.cursor - 1] + self.text[self.cursor:]
            self.cursor -= 1

    def delete(self) -> None:
        self.text = self.text[:self.cursor] + self.text[self.cursor + 1:]

    def left(self) -> None:
        self.cursor = max(0, self.cursor - 1)

    def right(self) -> None:
        self.cursor = min(len(self.text), self.cursor + 1)

    def home(self) -> None:
        self.cursor = 0

    def end(self) -> None:
        self.cursor = len(self.text)

    def kill_line(self) -> None:
        self.text, self.cursor = "", 0

    def set(self, text: str) -> None:
        self.text, self.cursor = text, len(text)

    def take(self) -> str:
        """The line as submitted: remembered in the history and cleared."""
        line = self.text
        if line.strip() and (not self.history or self.history[-1] != line):
            self.history.append(line)
        self.kill_line()
        self._browse = None
        return line

    def history_prev(self) -> None:
        if not self.history:
            return
        if self._browse is None:
            self._draft = self.text
            self._browse = len(self.history)
        self._browse = max(0, self._browse - 1)
        self.set(self.history[self._browse])

    def history_next(self) -> None:
        if self._browse is None:
            return
        self._browse += 1
        if self._browse >= len(self.history):
            self._browse = None
            self.set(self._draft)
        else:
            self.set(self.history[self._browse])

    def complete(self, names: List[str]) -> None:
        """Complete the user name before the cursor (Tab), shell-style."""
        start = self.text.rfind(" ", 0, self.cursor) + 1
        prefix = self.text[start:self.cursor]
        if prefix.startswith("/"):
            return
        matches = sorted({n for n in names if n.lower().startswith(prefix.lower())},
                         key=str.lower)
        if not matches or not prefix and len(matches) > 1:
            return
        common = matches[0]
        for other in matches[1:]:
            while not other.lower().startswith(common.lower()):
                common = common[:-1]
        if len(matches) == 1:
            common += " "
        self.text = self.text[:start] + common + self.text[self.cursor:]
        self.cursor = start + len(common)


class RateLimit:
    """At most one event per ``interval`` seconds: a flood of messages rings the bell once.

    The clock is passed in so that tests need not sleep.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: Optional[float] = None

    def allow(self) -> bool:
        """True, and the interval restarts, if the last allowed event is old enough."""
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True


@dataclass
class UserRow:
    name: str
    online: bool = False
    unread: int = 0


class ChatState:
    """Everything on the main screen, updated by events and keys."""

    def __init__(self, me: str, server: str, beep: bool = True) -> None:
        self.me = me
        self.server = server
        self.beep = beep
        self.connection = "connected"
        self.users: Dict[str, UserRow] = {}
        self.messages: Dict[int, Message] = {}
        self.peer: Optional[str] = None          # open conversation; None: all messages
        self.focus = "input"
        self.user_index = 0
        self.online_index = 0
        self.selected_message: Optional[int] = None
        self.scroll = 0                           # rows scrolled up from the bottom
        self.status = "Welcome! Tab moves between panes; F10 opens the menu; /help for commands."
        self.status_is_error = False
        self.menu_open = False
        self.menu_index = 0
        self.show_help = False

    # ------------------------------------------------------------ lookups

    def user_names(self) -> List[str]:
        return sorted((u.name for u in self.users.values()), key=str.lower)

    def online_names(self) -> List[str]:
        return [n for n in self.user_names() if self.users[user_key(n)].online]

    def canonical(self, name: str) -> Optional[str]:
        row = self.users.get(user_key(name))
        return row.name if row else None

    def selected_user(self) -> Optional[str]:
        names = self.user_names()
        return names[self.user_index] if 0 <= self.user_index < len(names) else None

    def selected_online(self) -> Optional[str]:
        names = self.online_names()
        return names[self.online_index] if 0 <= self.online_index < len(names) else None

    def visible_messages(self) -> List[Message]:
        """The open conversation, or everything sent and received; ascending by id."""
        msgs = sorted(self.messages.values(), key=lambda m: m.id)
        if self.peer is None:
            return msgs
        key, me = user_key(self.peer), user_key(self.me)
        return [m for m in msgs if {user_key(m.sender), user_key(m.to)} == {key, me}
                or (key == me and user_key(m.sender) == me and user_key(m.to) == me)]

    def reply_target(self) -> Optional[Message]:
        """The selected message, else the last one received in view."""
        if self.selected_message in self.messages:
            return self.messages[self.selected_message]
        mine = user_key(self.me)
        received = [m for m in self.visible_messages() if user_key(m.sender) != mine]
        return received[-1] if received else None

    # ------------------------------------------------------------ updates

    def set_users(self, rows: List[Tuple[str, bool, int]]) -> None:
        self.users = {user_key(n): UserRow(n, online, unread) for n, online, unread in rows}
        self._clamp()

    def set_status(self, text: str, error: bool = False) -> None:
        self.status, self.status_is_error = text, error

    def add_messages(self, messages: List[Message]) -> None:
        for msg in messages:
            self.messages[msg.id] = msg

    def on_message(self, msg: Message) -> bool:
        """A message event; True when it deserves a beep (someone else wrote it)."""
        if msg.id in self.messages:
            return False
        self.messages[msg.id] = msg
        from_me = user_key(msg.sender) == user_key(self.me)
        if not from_me:
            row = self.users.setdefault(user_key(msg.sender), UserRow(msg.sender, True))
            if not self.is_open(msg.sender):
                row.unread += 1
            else:
                self.scroll = 0
        return not from_me

    def is_open(self, name: str) -> bool:
        return self.peer is not None and user_key(self.peer) == user_key(name)

    def on_presence(self, name: str, online: bool) -> None:
        row = self.users.setdefault(user_key(name), UserRow(name))
        row.online = online
        self._clamp()

    def on_signup(self, name: str) -> None:
        self.users.setdefault(user_key(name), UserRow(name))

    def open_conversation(self, name: Optional[str]) -> None:
        self.peer = self.canonical(name) if name else None
        self.scroll = 0
        self.selected_message = None
        if self.peer:
            self.users[user_key(self.peer)].unread = 0
            names = self.user_names()
            self.user_index = names.index(self.peer)
            self.set_status(f"Conversation with {self.peer}. Type and press Enter to send.")
        else:
            self.set_status("All messages you sent and received.")

    def cycle_focus(self, step: int = 1) -> None:
        i = FOCUS_ORDER.index(self.focus)
        self.focus = FOCUS_ORDER[(i + step) % len(FOCUS_ORDER)]
        if self.focus != "messages":
            self.selected_message = None

    def move(self, delta: int) -> None:
        """Arrow keys in the focused pane."""
        if self.focus == "users":
            self.user_index += delta
        elif self.focus == "online":
            self.online_index += delta
        elif self.focus == "messages":
            msgs = self.visible_messages()
            if not msgs:
                return
            ids = [m.id for m in msgs]
            if self.selected_message not in ids:
                i = len(ids) - 1 if delta < 0 else len(ids) - 1
            else:
                i = ids.index(self.selected_message) + delta
            self.selected_message = ids[max(0, min(len(ids) - 1, i))]
        self._clamp()

    def scroll_by(self, rows: int) -> None:
        self.scroll = max(0, self.scroll + rows)

    def _clamp(self) -> None:
        self.user_index = max(0, min(self.user_index, len(self.users) - 1))
        self.online_index = max(0, min(self.online_index, len(self.online_names()) - 1))

    def unread_to_mark(self) -> Optional[Tuple[str, int]]:
        """(peer, newest id from them) when the open conversation has unread mail."""
        if self.peer is None:
            return None
        theirs = [m.id for m in self.visible_messages()
                  if user_key(m.sender) == user_key(self.peer)]
        return (self.peer, theirs[-1]) if theirs else None


def format_time(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))
