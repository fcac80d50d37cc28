"""What the terminal client shows, and how keys and events change it. No curses here.

The app feeds server events and key presses in; the panes read the state out
and draw it. Keeping this pure is what lets the tests check layout-independent
behaviour (unread counts, the conversations list, selection, slash commands,
line editing) without a terminal.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ..protocol import Message, is_room, user_key
from .commands import (  # noqa: F401  (parse_command and friends: part of this API)
    COMMANDS,
    MENU_ITEMS,
    Command,
    CommandError,
    help_lines,
    parse_command,
)
from .conversations import Conversations, mentions, peer_of
from .editing import Completion, complete, is_big_word, shown, word_end, word_start
from .graphemes import next_boundary, previous_boundary
from .history import MessageView, Paging, marker_id
from .text import is_text

#: Tab cycles through these; the users directory is an overlay (F2), not a pane.
FOCUS_ORDER = ("conversations", "messages", "input")


def clean_paste(text: str) -> str:
    """Pasted text as a message: one kind of newline, no controls, no blank lines around it.
    Joiners (ZWJ, ZWNJ) are text: a pasted 👨‍👩‍👧 stays one family."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not is_text(text):
        text = "".join(ch for ch in text if is_text(ch) or ch in "\n\t")
    return text.strip("\n")


class InputLine:
    """A one-line editor with the keys of a shell line (readline's: ``editing``) and a
    history of what was sent. Alt-Enter puts a newline in (shown as ⏎, sent as is).

    A paste of several lines does not fit one line: it waits in ``pending``,
    shown collapsed, until Enter sends it as one message or Esc drops it.
    """

    def __init__(self) -> None:
        self.text = ""
        self.cursor = 0
        self.history: List[str] = []
        self.pending: Optional[str] = None
        self.killed = ""                           # the last kill, for Ctrl-Y
        self._completion: Optional[Completion] = None
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
        """Delete the grapheme cluster before the cursor: a whole 👨‍👩‍👧 or é, as drawn."""
        if self.cursor > 0:
            start = previous_boundary(self.text, self.cursor)
            self.text = self.text[:start] + self.text[self.cursor:]
            self.cursor = start

    def delete(self) -> None:
        """Delete the grapheme cluster under the cursor."""
        end = next_boundary(self.text, self.cursor)
        self.text = self.text[:self.cursor] + self.text[end:]

    def left(self) -> None:
        """One grapheme cluster left: the cursor never lands inside what shows as one."""
        self.cursor = previous_boundary(self.text, self.cursor) if self.cursor > 0 else 0

    def right(self) -> None:
        self.cursor = min(len(self.text), next_boundary(self.text, self.cursor))

    def home(self) -> None:
        self.cursor = 0

    def end(self) -> None:
        self.cursor = len(self.text)

    def kill_line(self) -> None:
        self.text, self.cursor = "", 0

    # readline's words and kills; words by grapheme cluster (see ``editing``)

    def word_left(self) -> None:
        """Alt-b, Ctrl-←: to the start of this word or the one before."""
        self.cursor = word_start(self.text, self.cursor)

    def word_right(self) -> None:
        """Alt-f, Ctrl-→: to the end of this word or the next one."""
        self.cursor = word_end(self.text, self.cursor)

    def _kill(self, start: int, end: int) -> None:
        if start < end:
            self.killed = self.text[start:end]
            self.text = self.text[:start] + self.text[end:]
            self.cursor = start
            self._browse = None

    def kill_word_back(self) -> None:
        """Alt-Backspace: the word before the cursor (stops at punctuation)."""
        self._kill(word_start(self.text, self.cursor), self.cursor)

    def kill_big_word_back(self) -> None:
        """Ctrl-W: back to the whitespace before the cursor (readline's unix-word-rubout)."""
        self._kill(word_start(self.text, self.cursor, is_big_word), self.cursor)

    def kill_word(self) -> None:
        """Alt-d: the word after the cursor."""
        self._kill(self.cursor, word_end(self.text, self.cursor))

    def kill_to_end(self) -> None:
        """Ctrl-K."""
        self._kill(self.cursor, len(self.text))

    def kill_to_start(self) -> None:
        """Ctrl-U."""
        self._kill(0, self.cursor)

    def yank(self) -> None:
        """Ctrl-Y: the last kill back in, at the cursor."""
        self.insert(self.killed)

    def newline(self) -> None:
        """Alt-Enter: a line break inside the message."""
        self.insert("\n")

    def shown(self) -> str:
        """The line as drawn: each newline as ⏎ (one character for one, so the cursor
        and every index stay valid)."""
        return shown(self.text)

    def set(self, text: str) -> None:
        self.text, self.cursor = text, len(text)

    def take(self) -> str:
        """The line as submitted (without Alt-Enter newlines at its ends): remembered in
        the history and cleared."""
        line = self.text.strip("\n") if "\n" in self.text else self.text
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

    def complete(self, names: List[str], step: int = 1) -> bool:
        """Tab (``step`` 1) or Shift-Tab (-1): the next or previous name (a user or a
        #room) for the word before the cursor, ``name: `` at the start of the line, a
        command for a ``/`` word there (``editing.complete``). False: nothing matches."""
        cycle = complete(self.text, self.cursor, names, COMMANDS, self._completion, step)
        if cycle is None:
            return False
        self._completion = cycle
        self.text, self.cursor = cycle.text, cycle.cursor
        return True

    def completing(self) -> bool:
        """True while a Tab cycle is on the line (Shift-Tab steps back through it)."""
        cycle = self._completion
        return cycle is not None and (cycle.text, cycle.cursor) == (self.text, self.cursor)


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
    """An account in the directory (F2, /users)."""

    name: str
    online: bool = False


@dataclass
class Picker:
    """A list in an overlay to choose from (users, rooms, members): Enter picks ``value``."""

    kind: str
    title: str
    rows: List[Tuple[str, str]] = field(default_factory=list)   # (label, value)
    index: int = 0

    def move(self, delta: int) -> None:
        if self.rows:
            self.index = max(0, min(len(self.rows) - 1, self.index + delta))

    def chosen(self) -> Optional[str]:
        return self.rows[self.index][1] if 0 <= self.index < len(self.rows) else None


#: What a confirmation asks, by action.
CONFIRM_QUESTIONS = {"logout": "Log out?", "quit": "Quit parallel-chat?"}


class ChatState:
    """Everything on the main screen, updated by events and keys."""

    def __init__(self, me: str, server: str, beep: bool = True) -> None:
        self.me = me
        self.server = server
        self.beep = beep
        self.connection = "connected"
        self.users: Dict[str, UserRow] = {}
        self.convs = Conversations(me)
        self.messages: Dict[int, Message] = {}
        self.peer: Optional[str] = None          # open conversation; None: all messages
        self.focus = "input"
        self.conv_index = 0                       # the selection in the conversations pane
        self.selected_message: Optional[int] = None
        self.view = MessageView()                 # where the messages pane looks (history)
        self.search = None                        # the Ctrl-R search box (search.SearchBox)
        self.status = "Welcome! Alt-1…9 open conversations; F10 opens the menu; /help for more."
        self.status_is_error = False
        self.outbox = None   # the app's outbox.Outbox: messages on their way, drawn pending
        self.menu_open = False
        self.menu_index = 0
        self.picker: Optional[Picker] = None
        self.confirm: Optional[str] = None        # an action waiting for y/n

    # ------------------------------------------------------------ lookups

    def user_names(self) -> List[str]:
        return sorted((u.name for u in self.users.values()), key=str.lower)

    def online_names(self) -> List[str]:
        return [n for n in self.user_names() if self.users[user_key(n)].online]

    def completion_names(self) -> List[str]:
        """What Tab completes: every user and every room in the list."""
        return self.user_names() + [c.name for c in self.convs.ordered() if c.is_room]

    def canonical(self, name: str) -> Optional[str]:
        """The name as the server spells it: a user, or a room you are in; None if neither."""
        if is_room(name):
            conv = self.convs.get(name)
            return conv.name if conv else None
        row = self.users.get(user_key(name))
        return row.name if row else None

    def is_online(self, name: str) -> bool:
        row = self.users.get(user_key(name))
        return bool(row and row.online)

    def selected_conversation(self) -> Optional[str]:
        conv = self.convs.by_number(self.conv_index + 1)
        return conv.name if conv else None

    def open_room(self) -> Optional[str]:
        return self.peer if self.peer and is_room(self.peer) else None

    def visible_messages(self) -> List[Message]:
        """The open conversation, or everything sent and received; ascending by id."""
        msgs = sorted(self.messages.values(), key=lambda m: m.id)
        if self.peer is None:
            return msgs
        key = user_key(self.peer)
        return [m for m in msgs if user_key(peer_of(m, self.me)) == key]

    def reply_target(self) -> Optional[Message]:
        """The selected message, else the last one received in view."""
        if self.selected_message in self.messages:
            return self.messages[self.selected_message]
        mine = user_key(self.me)
        received = [m for m in self.visible_messages() if user_key(m.sender) != mine]
        return received[-1] if received else None

    def mentions_me(self, msg: Message) -> bool:
        return user_key(msg.sender) != user_key(self.me) and mentions(msg.text, self.me)

    # ------------------------------------------------------------ updates

    def set_users(self, rows: List[Tuple[str, bool, int]]) -> None:
        """The directory from ``users``; a user with unread mail joins the conversations,
        and the server's counts replace ours (after a reconnect they are the true ones)."""
        self.users = {user_key(n): UserRow(n, online) for n, online, _ in rows}
        for name, _, unread in rows:
            if (unread or name in self.convs) and not self.is_open(name):
                self.convs.add(name, unread=unread)
        self._clamp()

    def set_status(self, text: str, error: bool = False) -> None:
        self.status, self.status_is_error = text, error

    def add_messages(self, messages: List[Message]) -> None:
        """Loaded history: every direct conversation in it joins the list (rooms join
        only through ``rooms``/``join``: history may hold rooms one has left)."""
        for msg in messages:
            self.messages[msg.id] = msg
            other = peer_of(msg, self.me)
            if not is_room(other) and other not in self.convs:
                self.convs.add(other)

    def on_message(self, msg: Message) -> bool:
        """A message event; True when it deserves the bell: a direct message from someone
        else, or a room message that mentions me (not every room message)."""
        if msg.id in self.messages:
            return False
        self.messages[msg.id] = msg
        other = peer_of(msg, self.me)
        if is_room(other) and other not in self.convs:
            return False                     # a room left meanwhile
        self.convs.on_message(msg, self.is_open(other))
        if self.is_open(other) or self.peer is None:
            self.view.on_new_message()
        if user_key(msg.sender) == user_key(self.me):
            return False
        return not is_room(other) or mentions(msg.text, self.me)

    def on_read(self, name: str, upto: int) -> None:
        """Another session of mine read ``name``: the counts here follow."""
        self.convs.on_read(name, upto, self.messages.values())

    def is_open(self, name: str) -> bool:
        return self.peer is not None and user_key(self.peer) == user_key(name)

    def on_presence(self, name: str, online: bool) -> None:
        row = self.users.setdefault(user_key(name), UserRow(name))
        row.online = online

    def on_signup(self, name: str) -> None:
        self.users.setdefault(user_key(name), UserRow(name))

    def on_room(self, name: str, topic: str, members: int, private: bool,
                unread: int = 0, mentioned: bool = False) -> None:
        """A room I am in, as the server describes it (load, create, join, topic)."""
        conv = self.convs.add(name, topic=topic, members=members, private=private)
        if not self.is_open(name):
            conv.unread, conv.mentioned = unread, mentioned

    def on_room_left(self, name: str) -> None:
        """I left a room (here or in another session): gone from the list."""
        self.convs.remove(name)
        if self.is_open(name):
            self.peer = None
        self._clamp()

    def on_members_changed(self, name: str, delta: int) -> None:
        conv = self.convs.get(name)
        if conv is not None:
            conv.members = max(0, conv.members + delta)

    def on_topic(self, name: str, topic: str) -> None:
        conv = self.convs.get(name)
        if conv is not None:
            conv.topic = topic

    def open_conversation(self, name: Optional[str]) -> None:
        self.peer = self.canonical(name) if name else None
        self.selected_message = None
        conv = self.convs.add(self.peer) if self.peer else None
        self.view.opened(conv.unread if conv else 0)
        self.mark_new_messages()
        if conv is not None and self.peer:
            conv.mark_read()
            self.conv_index = (self.convs.number_of(self.peer) or 1) - 1
            if conv.is_room:
                self.set_status(f"Room {self.peer}. Type and press Enter to send; "
                                "/members, /topic, /invite, /part.")
            else:
                self.set_status(f"Conversation with {self.peer}. Type and press Enter to send.")
        else:
            self.set_status("All messages you sent and received.")

    def cycle_focus(self, step: int = 1) -> None:
        i = FOCUS_ORDER.index(self.focus) if self.focus in FOCUS_ORDER else 0
        self.focus = FOCUS_ORDER[(i + step) % len(FOCUS_ORDER)]
        if self.focus != "messages":
            self.selected_message = None

    def move(self, delta: int) -> None:
        """Arrow keys in the focused pane."""
        if self.focus == "conversations":
            self.conv_index += delta
        elif self.focus == "messages":
            self.move_selection(delta)
        self._clamp()

    def move_selection(self, delta: int) -> None:
        """↑/↓ in the messages pane: the first press picks the lowest message on screen;
        the view scrolls to keep the selection in sight (at the next draw)."""
        ids = [m.id for m in self.visible_messages()]
        if not ids:
            return
        if self.selected_message in ids:
            i = ids.index(self.selected_message) + delta
        else:
            on_screen = [i for i in self.view.visible_ids() if i in ids]
            i = ids.index(on_screen[-1]) if on_screen else len(ids) - 1
        self.selected_message = ids[max(0, min(len(ids) - 1, i))]
        self.view.reveal = True

    def select(self, msg_id: int) -> None:
        """Select a message and bring it into view (a search result)."""
        self.selected_message = msg_id
        self.view.reveal = True

    @property
    def scroll(self) -> int:
        """Rows scrolled up from the bottom (0: the view follows new messages).
        Setting 0 goes back to the bottom."""
        return self.view.scrolled()

    @scroll.setter
    def scroll(self, rows: int) -> None:
        if rows == 0:
            self.view.to_bottom()

    def scroll_by(self, rows: int) -> bool:
        """PgUp (``rows`` > 0) or PgDn; True when the view reached the oldest loaded row."""
        if rows > 0:
            return self.view.page_up(rows)
        self.view.page_down(-rows)
        return False

    def conversation_key(self) -> str:
        """The open conversation as a key of ``view.paging`` ("" for all messages)."""
        return user_key(self.peer) if self.peer else ""

    def paging(self) -> Paging:
        return self.view.paging_of(self.conversation_key())

    def mark_new_messages(self) -> None:
        """Put the "new messages" line at the read marker found when the conversation
        was opened (again once its newest page has loaded)."""
        if self.peer is not None:
            self.view.marker = marker_id(self.visible_messages(), self.me,
                                         self.view.unread_at_open)

    def _clamp(self) -> None:
        self.conv_index = max(0, min(self.conv_index, len(self.convs) - 1))

    def unread_to_mark(self) -> Optional[Tuple[str, int]]:
        """(conversation, newest id from others in it), to move the read marker there."""
        if self.peer is None:
            return None
        me = user_key(self.me)
        theirs = [m.id for m in self.visible_messages() if user_key(m.sender) != me]
        return (self.peer, theirs[-1]) if theirs else None

    # ------------------------------------------------------------ overlays

    def open_picker(self, kind: str, title: str, rows: List[Tuple[str, str]]) -> None:
        self.picker = Picker(kind, title, rows)
        self.menu_open = False

    def confirm_question(self) -> str:
        """The y/n question for the action waiting: it says so when messages typed
        while the connection was down have not been sent yet (they would be lost)."""
        question = CONFIRM_QUESTIONS.get(self.confirm or "", "Sure?")
        waiting = self.outbox.waiting() if self.outbox is not None else 0
        if waiting:
            plural = "message is" if waiting == 1 else "messages are"
            question = f"{waiting} {plural} not sent yet and will be lost. {question}"
        return question

    def ask(self, action: str) -> None:
        """Ask y/n before ``action`` (logging out, quitting)."""
        self.confirm = action
        self.menu_open = False
        self.picker = None

    def directory_rows(self, online_only: bool = False) -> List[Tuple[str, str]]:
        """The users directory: ``● bob (2)`` (online, unread), you marked."""
        rows = []
        for name in (self.online_names() if online_only else self.user_names()):
            conv = self.convs.get(name)
            unread = f" ({conv.unread})" if conv and conv.unread else ""
            mark = "●" if self.is_online(name) else " "
            you = " (you)" if user_key(name) == user_key(self.me) else ""
            rows.append((f"{mark} {name}{you}{unread}", name))
        return rows


def format_time(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))
