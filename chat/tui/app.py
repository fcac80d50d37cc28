"""The curses client: the login screen, the main loop, and key handling.

Runs under ``curses.wrapper`` so the terminal is restored on any exit, inside
``terminal.guarded`` so that bracketed paste is turned off again and unread keys
never reach the shell. The loop waits for keys at most a tenth of a second,
reads every key pending at once, turns pastes into text (``keys.InputDecoder``),
drains the client library's event queue into the state, and redraws once.
"""
from __future__ import annotations

import argparse
import curses
import getpass
import locale
import os
import queue
import socket
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from chat import __version__  # the package root: a constant, no part

from .. import protocol as p
from ..client import ChatClient, ServerUnreachable
from . import panes
from .bell import FocusFilter, should_ring
from .commands import (
    KEY_HELP,
    MENU_ITEMS,
    Command,
    CommandError,
    help_for,
    help_lines,
    parse_command,
)
from .conversations import peer_of
from .keys import ALT_EDIT_KEYS, EDIT_KEYS, Event, InputDecoder, Key, KeyReader, Paste
from .notices import connection_label, drop_stale_events, notice_height
from .outbox import make_outbox
from .preferences import Preferences
from .rooms import RoomCommands
from .scrollback import FETCHED, Scrollback
from .search import SEARCHED, SearchCommands, draw_search
from .settings import Settings
from .state import ChatState, InputLine, RateLimit, clean_paste
from .terminal import TerminalGuard, guarded, suspendable
from .text import is_text, sanitize, wrap_text

CTRL = {ch: ord(ch) - 0x60 for ch in "abcdefghijklmnopqrstuvwxyz"}
ESC = 27
ENTER_KEYS = (10, 13, curses.KEY_ENTER)
BACKSPACE_KEYS = (curses.KEY_BACKSPACE, 127, 8)
#: At most one bell in this many seconds, however fast messages come.
BELL_INTERVAL = 2.0
#: The longest wait for a key; the event queue is drained at least this often.
TICK_MS = 100
#: Keys read in one go before a redraw; a longer paste simply takes two batches.
MAX_BATCH = 16_384


class LoggedOut(Exception):
    """The user chose to log out: back to the login screen."""


def notify(enabled: bool) -> None:
    """A short, non-blocking alert for a new message."""
    if not enabled:
        return
    if sys.platform == "win32":
        try:
            import winsound
            winsound.MessageBeep()
            return
        except (ImportError, RuntimeError):
            pass
    try:
        curses.beep()
    except curses.error:
        pass


# ---------------------------------------------------------------- login screen

class LoginForm:
    """Log in or sign up; the password is never echoed; errors shown in words."""

    def __init__(self, client: ChatClient, server: str, user: Optional[str]) -> None:
        self.client = client
        self.server = server
        self.fields = {"username": user or "", "password": "", "again": ""}
        self.signup = False
        self.field = "password" if user else "username"
        self.message = "Tab: next field · F2 or Ctrl-N: switch log in / sign up · Enter: go"
        self.error = False

    def order(self) -> List[str]:
        return ["username", "password"] + (["again"] if self.signup else [])

    def draw(self, win, colors: panes.Colors) -> None:
        win.erase()
        height, width = win.getmaxyx()
        title = "Sign up for" if self.signup else "Log in to"
        panes.put(win, 1, 2, f"parallel-chat · {title} {self.server}", curses.A_BOLD)
        labels = {"username": "Username", "password": "Password", "again": "Again   "}
        cursor = (3, 2)
        for i, name in enumerate(self.order()):
            value = self.fields[name]
            shown = value if name == "username" else "*" * len(value)
            attr = curses.A_REVERSE if name == self.field else 0
            y = 3 + 2 * i
            panes.put(win, y, 2, f"{labels[name]}: ", curses.A_BOLD)
            panes.put(win, y, 13, panes.pad(shown, max(1, min(34, width - 14))), attr)
            if name == self.field:
                cursor = (y, 13 + min(len(shown), max(0, width - 15)))
        mode = "[ Sign up ]  log in" if self.signup else "[ Log in ]  sign up"
        panes.put(win, 4 + 2 * len(self.order()), 2, mode + "   (F2 / Ctrl-N switches)")
        top = 6 + 2 * len(self.order())
        for i, row in enumerate(wrap_text(sanitize(self.message), max(10, width - 4))[:3]):
            panes.put(win, top + i, 2, row, colors.error if self.error else colors.dim)
        panes.put(win, height - 1, 0, "Esc or Ctrl-C quits", colors.dim)
        try:
            win.move(*cursor)
        except curses.error:
            pass

    def key(self, ch) -> Optional[str]:
        """Handle one key; the logged-in name when done."""
        order = self.order()
        if ch in (9, curses.KEY_DOWN):
            self.field = order[(order.index(self.field) + 1) % len(order)]
        elif ch in (curses.KEY_BTAB, curses.KEY_UP):
            self.field = order[(order.index(self.field) - 1) % len(order)]
        elif ch in (curses.KEY_F2, CTRL["n"]):
            self.signup = not self.signup
            if self.field not in self.order():
                self.field = "password"
        elif ch in BACKSPACE_KEYS:
            self.fields[self.field] = self.fields[self.field][:-1]
        elif ch == CTRL["u"]:
            self.fields[self.field] = ""
        elif ch in ENTER_KEYS:
            return self.submit()
        elif isinstance(ch, str) and is_text(ch):
            self.fields[self.field] += ch
        return None

    def paste(self, text: str) -> None:
        """Pasted text goes into the field as if typed, first line only: a paste never submits."""
        first = clean_paste(text).split("\n", 1)[0]
        self.fields[self.field] += "".join(ch for ch in first if ch != "\t")

    def submit(self) -> Optional[str]:
        """Enter: on to the next field, or from the last one, log in / sign up."""
        name, password = self.fields["username"].strip(), self.fields["password"]
        order = self.order()
        if self.field != order[-1]:
            self.field = order[order.index(self.field) + 1]
            return None
        missing = [f for f in order if not self.fields[f]]
        if missing:
            self.field = missing[0]
            self.fail("Fill in every field.")
            return None
        if self.signup and password != self.fields["again"]:
            self.fail("The two passwords differ; type them again.")
            self.fields["password"] = self.fields["again"] = ""
            self.field = "password"
            return None
        try:
            if not self.client.connected:
                self.client.connect()
            if self.signup:
                self.client.signup(name, password)
            return self.client.login(name, password)
        except p.ChatError as exc:
            self.fail(login_error_text(exc))
        except (ConnectionError, TimeoutError) as exc:
            self.fail(connection_error_text(exc))
        return None

    def fail(self, text: str) -> None:
        self.message, self.error = text, True


def connection_error_text(exc: Exception) -> str:
    """Why logging in could not reach the server. "Is the server running?" only where
    that is the likely answer: nothing listening (refused) or no answer in time; a name
    that does not resolve or a peer that is not a chat server is said as it is."""
    hint = " Is the server running?" if isinstance(exc, (ServerUnreachable, TimeoutError)) else ""
    text = str(exc)
    return f"{text[:1].upper()}{text[1:]}.{hint} Press Enter to try again."


def login_error_text(exc: p.ChatError) -> str:
    return {
        p.AUTH_FAILED: "Wrong username or password.",
        p.USERNAME_TAKEN: "That name is taken; pick another, or log in (F2).",
        p.INVALID_PASSWORD: f"Passwords are {p.MIN_PASSWORD_CHARS} to "
                            f"{p.MAX_PASSWORD_CHARS} characters.",
        p.INVALID_USERNAME: "Names are 1 to 32 characters: letters, digits, _ . -",
        p.RATE_LIMITED: sanitize(exc.message),
    }.get(exc.code, sanitize(exc.message))


# ---------------------------------------------------------------- main screen

#: Keys that do the same wherever the focus is (unless an overlay has it): key → action.
GLOBAL_KEYS = {
    curses.KEY_F1: "help", curses.KEY_F2: "users", curses.KEY_F10: "menu", CTRL["o"]: "menu",
    CTRL["p"]: "previous", CTRL["n"]: "next", curses.KEY_BTAB: "focus_back",
    curses.KEY_PPAGE: "page_up", curses.KEY_NPAGE: "page_down", CTRL["r"]: "search",
}
#: Alt-x arrives as Esc then x: x → action (the digits go to conversations by number).
ALT_KEYS = {"a": "activity", "m": "menu", **{str(n): f"goto {n}" for n in range(1, 10)},
            "0": "goto 10"}
#: An Esc older than this is not an Alt prefix: a digit typed later is just a digit.
ESC_PREFIX_SECONDS = 0.5


class ChatApp(RoomCommands, Scrollback, SearchCommands):
    """The main screen: panes, keys, slash commands, events."""

    def __init__(self, win, client: ChatClient, server: str, beep: bool,
                 reader: Optional[KeyReader] = None,
                 prefs: Optional[Preferences] = None) -> None:
        self.win = win
        self.reader = reader or KeyReader(win)
        self.client = client
        self.prefs = prefs or Preferences(no_beep=not beep)
        self.state = ChatState(client.username or "?", server, self.prefs.beep)
        self.state.connection = connection_label(client)
        self.outbox = make_outbox(client)
        self._keepers: Dict[int, Callable[[str], None]] = {}   # where refused text goes back
        self.state.outbox = self.outbox
        self.focus = FocusFilter()
        self.notice_line = panes.NoticeLine()
        self.line = InputLine()
        self.colors = panes.Colors()
        self.conversations_pane = panes.ConversationsPane()
        self.messages_pane = panes.MessagesPane()
        self.input_pane = panes.InputPane()
        self.status_bar = panes.StatusBar()
        self.quit = False
        self.bell = RateLimit(BELL_INTERVAL)
        self.decoder = InputDecoder()
        self._esc: Optional[float] = None      # when a lone Esc came (an Alt prefix)
        self.events: Dict[str, Callable[[dict], None]] = {
            "message": self.on_message_event, "presence": self.on_presence_event,
            "signup": lambda ev: self.state.on_signup(str(ev.get("username"))),
            "connection": self.on_connection_event, "error": self.on_error_event,
            "join": self.on_join_event, "leave": self.on_leave_event,
            "topic": self.on_topic_event, "invited": self.on_invited_event,
            "room": self.on_room_event, "read": self.on_read_event,
            "outbox": self.on_outbox_event,
            FETCHED: self.on_fetched_event, SEARCHED: self.on_search_event,
        }
        self.commands: Dict[str, Callable[[Command], bool]] = {
            "say": self.cmd_say, "msg": self.cmd_msg, "open": self.cmd_open,
            "reply": lambda cmd: self.reply(cmd.text), "join": self.cmd_join,
            "part": self.cmd_part, "create": self.cmd_create, "invite": self.cmd_invite,
            "topic": self.cmd_topic, "help": self.cmd_help, "search": self.cmd_search,
            "mute": lambda cmd: self.cmd_mute(cmd, True),
            "unmute": lambda cmd: self.cmd_mute(cmd, False),
        }
        self.actions: Dict[str, Callable[[], object]] = {
            "users": lambda: self.show_users(False), "online": lambda: self.show_users(True),
            "rooms": self.show_rooms, "members": self.show_members,
            "all": lambda: self.open(None), "compose": self.compose,
            "reply": self.start_reply, "beep": self.toggle_beep, "help": self.show_help,
            "logout": lambda: self.state.ask("logout"), "quit": lambda: self.state.ask("quit"),
            "menu": self.open_menu, "previous": lambda: self.step(-1),
            "next": lambda: self.step(1), "activity": self.next_active,
            "focus_back": lambda: self.state.cycle_focus(-1),
            "page_up": self.page_up, "page_down": self.page_down,
            "bottom": self.to_bottom, "search": self.open_search,
        }

    # ------------------------------------------------------------ data

    def load(self) -> None:
        """Fetch users, rooms and the newest messages (after login and reconnects)."""
        state = self.state
        try:
            state.set_users([(u.username, u.online, u.unread) for u in self.client.users()])
            self.load_rooms()
            state.add_messages(self.client.history(limit=p.MAX_HISTORY_LIMIT))
            if state.peer:
                state.add_messages(self.client.history(with_user=state.peer,
                                                       limit=p.MAX_HISTORY_LIMIT))
        except (p.ChatError, ConnectionError, TimeoutError) as exc:
            state.set_status(f"Could not load: {sanitize(str(exc))}", error=True)

    def mark_read(self) -> None:
        """Move the read marker; not while the connection is down (the request would wait
        for the reconnect, freezing the screen): ``resumed`` marks it then."""
        target = self.state.unread_to_mark()
        if target is None or connection_label(self.client) != "connected":
            return
        try:
            self.client.read(*target)
        except (p.ChatError, ConnectionError, TimeoutError):
            pass  # the count will be fixed at the next read

    def drain_events(self) -> bool:
        label = connection_label(self.client)
        changed, self.state.connection = label != self.state.connection, label
        while True:
            try:
                ev = self.client.events.get_nowait()
            except queue.Empty:
                return changed
            changed = True
            self.on_event(ev)

    # ------------------------------------------------------------ events

    def on_event(self, ev: dict) -> None:
        handler = self.events.get(str(ev.get("event")))
        if handler is not None:
            handler(ev)

    def on_message_event(self, ev: dict) -> None:
        state = self.state
        try:
            msg = p.Message.from_dict(ev.get("message"))
        except p.ChatError:
            return
        if msg.id in state.messages:
            return
        ring = state.on_message(msg)             # direct messages and mentions only
        where = peer_of(msg, state.me)
        if state.is_open(where):
            if p.user_key(msg.sender) != p.user_key(state.me):
                self.mark_read()                 # on screen: read, every room message too
        elif ring:
            state.set_status(f"{sanitize(msg.sender)} mentioned you in {sanitize(where)}."
                             if p.is_room(where) else f"New message from {sanitize(msg.sender)}")
        if should_ring(ring, state.beep, self.prefs.is_muted(where), state.is_open(where),
                       self.focus.focused) and self.bell.allow():
            notify(True)

    def on_presence_event(self, ev: dict) -> None:
        self.state.on_presence(str(ev.get("username")), bool(ev.get("online")))

    def on_connection_event(self, ev: dict) -> None:
        """What happened, said in the notice line; the status bar shows the client's state
        as it is now (``connection_label``), never an event's word for it."""
        state, what = self.state, ev.get("state")
        state.connection = connection_label(self.client)
        if what == "reconnecting":
            state.set_status(f"Connection lost ({sanitize(str(ev.get('error')))}); "
                             "reconnecting…", error=True)
        elif what == "resumed":
            self.load()
            self.mark_read()
            waiting = self.outbox.waiting()
            state.set_status(f"Reconnected; sending {waiting} waiting message"
                             f"{'' if waiting == 1 else 's'}." if waiting else "Reconnected.")
        elif what == "disconnected":
            state.set_status(f"Disconnected: {sanitize(str(ev.get('error')))}", error=True)

    def on_outbox_event(self, ev: dict) -> None:
        """A message sent off the UI thread was stored (or refused: it stays, marked)."""
        item, msg = self.outbox.settle(ev)
        if item is None:
            return
        keep = self._keepers.pop(item.key, None)
        if msg is None:
            why = f"Not sent to {sanitize(item.to)}: {sanitize(str(ev.get('error')))}"
            if keep is not None and not self.line.text and self.line.pending is None:
                self.outbox.forget(item)
                keep(item.text)
                self.state.set_status(why + "; your text is back in the input line.", True)
            else:
                self.state.set_status(why + " (marked ✗ above).", error=True)
            return
        self.state.on_message(msg)
        self.state.scroll = 0
        self.state.set_status(f"Sent to {sanitize(item.to)}.")

    def on_error_event(self, ev: dict) -> None:
        self.state.set_status(f"Server: {sanitize(str(ev.get('message')))}", error=True)

    def on_read_event(self, ev: dict) -> None:
        upto = ev.get("upto")
        if isinstance(upto, int):
            self.state.on_read(str(ev.get("with")), upto)

    # ------------------------------------------------------------ commands

    def run_line(self) -> None:
        """Run the typed line; a command that fails leaves the line as typed, to fix."""
        raw = self.line.take()
        if not raw.strip():
            return
        try:
            cmd = parse_command(raw)
        except CommandError as exc:
            self.fail(str(exc))
            self.line.set(raw)
            return
        handler = self.commands.get(cmd.name)
        ok = handler(cmd) if handler else self.action(cmd.name) is not False
        if ok is False and not self.line.text:
            self.line.set(raw)

    def cmd_say(self, cmd: Command) -> bool:
        if self.state.peer is None:
            return self.fail("No conversation open: /msg USER TEXT, Alt-1…9, or F2 to "
                             "pick a user.")
        return self.send(self.state.peer, cmd.text)

    def cmd_msg(self, cmd: Command) -> bool:
        name = self.state.canonical(cmd.args[0])
        if name is None:
            return self.fail(f"No user {sanitize(cmd.args[0])!r}.")
        self.open(name)
        return self.send(name, cmd.text)

    def cmd_open(self, cmd: Command) -> bool:
        name = self.state.canonical(cmd.args[0])
        if name is None:
            what = "You are not in" if p.is_room(cmd.args[0]) else "No user"
            return self.fail(f"{what} {sanitize(cmd.args[0])!r}.")
        self.open(name)
        return True

    def cmd_help(self, cmd: Command) -> bool:
        if not cmd.args:
            self.show_help()
            return True
        try:
            self.state.set_status(help_for(cmd.args[0]))
        except CommandError as exc:
            return self.fail(str(exc))
        return True

    # ------------------------------------------------------------ actions

    def action(self, name: str) -> object:
        """A menu item, a key or an argument-less command, by name (``goto N`` too)."""
        if name.startswith("goto "):
            return self.goto(int(name.split()[1]))
        handler = self.actions.get(name)
        return handler() if handler else None

    def page(self) -> int:
        return max(1, self.win.getmaxyx()[0] - 4)

    def show_users(self, online_only: bool) -> None:
        state = self.state
        rows = state.directory_rows(online_only)
        title = (f"Online ({len(rows)}) · Enter opens" if online_only
                 else f"Users ({len(rows)}) · ● online · Enter opens")
        state.open_picker("online" if online_only else "users", title, rows)

    def show_help(self) -> None:
        self.state.open_picker("help", "Help (↑/↓ scroll, Esc closes)",
                               [(line, "") for line in help_lines()])

    def open_menu(self) -> None:
        self.state.menu_open, self.state.menu_index = True, 0

    def compose(self) -> None:
        self.state.focus = "input"
        if self.state.peer is None:
            self.line.set("/msg ")
        self.state.set_status("Type your message and press Enter.")

    def start_reply(self) -> bool:
        state = self.state
        target = state.reply_target()
        if target is None:
            return self.fail("Nothing to reply to here.")
        state.focus = "input"
        self.line.set("/reply ")
        state.set_status(f"Replying to {sanitize(target.sender)} (#{target.id}).")
        return True

    def toggle_beep(self) -> None:
        self.state.beep = not self.state.beep
        problem = self.prefs.set_beep(self.state.beep)
        self.state.set_status(f"Beep {'on' if self.state.beep else 'off'}."
                              + (f" ({sanitize(problem)})" if problem else ""), error=bool(problem))

    def cmd_mute(self, cmd: Command, muted: bool) -> bool:
        """``/mute [NAME]``, ``/unmute [NAME]``: no bell for a conversation (the open one
        by default), kept in the settings file."""
        name = self.state.canonical(cmd.args[0]) if cmd.args else self.state.peer
        if name is None:
            return self.fail(f"No conversation {sanitize(cmd.args[0])!r}." if cmd.args else
                             f"Open a conversation first, or /{cmd.name} NAME.")
        problem = self.prefs.mute(name, muted)
        said = f"{sanitize(name)} {'muted: no bell' if muted else 'unmuted'}."
        self.state.set_status(said + (f" ({sanitize(problem)})" if problem else ""),
                              error=bool(problem))
        return True

    def goto(self, number: int) -> bool:
        conv = self.state.convs.by_number(number)
        if conv is None:
            return self.fail(f"No conversation {number}: there are {len(self.state.convs)}.")
        self.open(conv.name)
        return True

    def step(self, delta: int) -> None:
        conv = self.state.convs.step(self.state.peer, delta)
        if conv is not None:
            self.open(conv.name)

    def next_active(self) -> None:
        conv = self.state.convs.next_active(self.state.peer)
        if conv is None:
            self.state.set_status("No activity: nothing unread.")
        else:
            self.open(conv.name)

    def open(self, name: Optional[str]) -> None:
        """Open a conversation: what is loaded shows at once, its newest page comes in
        the background (``Scrollback.open_history``)."""
        self.state.open_conversation(name)
        self.open_history()
        if name:
            self.mark_read()
            self.state.focus = "input"

    def send(self, to: str, text: str, reply_to: Optional[int] = None,
             keep: Optional[Callable[[str], None]] = None) -> bool:
        """Hand the message to the outbox and return at once: it shows pending until the
        server has it (``on_outbox_event``), across a reconnect if need be. If the server
        refuses it, ``keep`` (by default: into the line) gets the text back, when the
        input line is empty by then; else it stays shown, marked with the reason."""
        self.state.scroll = 0
        item = self.outbox.submit(to, text, reply_to)
        self._keepers[item.key] = keep or self.line.set
        if self.state.connection != "connected":
            self.state.set_status(f"Not connected: your message to {sanitize(to)} is kept "
                                  "and sent when the connection is back.", error=True)
        return True

    def reply(self, text: str) -> bool:
        target = self.state.reply_target()
        if target is None:
            self.line.set("/reply " + text)
            return self.fail("Nothing to reply to: open a conversation with a message in it.")
        sent = self.send(peer_of(target, self.state.me), text, reply_to=target.id)
        self.state.selected_message = None
        return sent

    # ------------------------------------------------------------ pastes

    def on_paste(self, text: str) -> None:
        """Pasted text: into the input line, or waiting for Enter; never run as keys."""
        state = self.state
        state.menu_open, state.picker, state.confirm, self._esc = False, None, None, None
        state.focus = "input"
        if not self.line.paste(text):
            return
        pending = self.line.pending or ""
        lines = pending.count("\n") + 1
        if len(pending) > p.MAX_TEXT_CHARS:
            state.set_status(f"Pasted {lines} lines, {len(pending)} characters: a message holds "
                             f"at most {p.MAX_TEXT_CHARS}. Esc drops it.", error=True)
        elif state.peer is None:
            state.set_status(f"Pasted {lines} lines: open a conversation, then Enter sends them "
                             "as one message; Esc drops them.")
        else:
            state.set_status(f"Pasted {lines} lines: Enter sends them to "
                             f"{sanitize(state.peer)} as one message; Esc drops them.")

    def paste_key(self, ch: Key) -> None:
        """Keys while a paste waits: Enter sends it, Esc/Ctrl-U/Backspace drop it."""
        if ch in ENTER_KEYS:
            self.send_paste()
        elif ch in (ESC, CTRL["u"]) or ch in BACKSPACE_KEYS:
            self.line.take_paste()
            self.state.set_status("Paste dropped.")
        else:
            self.state.set_status("A paste is waiting: Enter sends it, Esc drops it.")

    def send_paste(self) -> None:
        state = self.state
        if state.peer is None:
            state.set_status("No conversation open: pick one (Alt-1…9, F2), then "
                             "Enter sends the paste; Esc drops it.", error=True)
            return
        text = self.line.take_paste()
        if text:
            self.send(state.peer, text, keep=self.line.restore_paste)

    # ------------------------------------------------------------ keys

    def handle(self, event: Event) -> None:
        """One event from the decoder: a paste, a run of typed characters, or a key."""
        if isinstance(event, Paste):
            self.on_paste(event.text)
        elif event == curses.KEY_RESIZE:
            curses.update_lines_cols()
        elif isinstance(event, str) and len(event) > 1:
            self.typed(event)
        else:
            self.key(event)

    def typed(self, text: str) -> None:
        """Characters typed in a row: one insert when nothing else claims them (linear cost)."""
        i = 0
        while i < len(text) and not self._plain_typing():
            self.key(text[i])
            i += 1
        if i < len(text):
            self.state.focus = "input"
            self.line.insert(text[i:])

    def _plain_typing(self) -> bool:
        """True when a printable key would only be inserted into the input line."""
        state = self.state
        return not (state.picker or state.menu_open or state.confirm or self._esc
                    or self.line.pending is not None or state.search is not None)

    def key(self, ch) -> None:
        """One key: an overlay takes it first, then an Alt prefix, the keys that work
        everywhere (``GLOBAL_KEYS``), and last the focused pane."""
        state = self.state
        overlay = (self.confirm_key if state.confirm else self.menu_key if state.menu_open
                   else self.picker_key if state.picker
                   else self.search_key if state.search is not None else None)
        if overlay is not None:
            overlay(ch)
            return
        if self._esc is not None:
            fresh = time.monotonic() - self._esc <= ESC_PREFIX_SECONDS
            self._esc = None
            if fresh and isinstance(ch, str) and ch.lower() in ALT_KEYS:
                self.action(ALT_KEYS[ch.lower()])
                return
            if fresh and self.alt_edit_key(ch):
                return
        if ch == curses.KEY_BTAB and state.focus == "input" and self.line.completing():
            self.complete(-1)
        elif ch in GLOBAL_KEYS:
            self.action(GLOBAL_KEYS[ch])
        elif ch == ESC and self.line.pending is not None:
            self.paste_key(ch)
        elif ch == ESC:
            self._esc = time.monotonic()
        elif ch == 9:
            if (state.focus == "input" and self.line.pending is None
                    and self.line.text.strip()):
                self.complete(1)
            else:
                state.cycle_focus(1)
        elif state.focus == "input":
            self.input_key(ch)
        else:
            self.pane_key(ch)

    def input_key(self, ch) -> None:
        line = self.line
        if line.pending is not None:
            self.paste_key(ch)
            return
        handlers = {curses.KEY_LEFT: line.left, curses.KEY_RIGHT: line.right,
                    curses.KEY_HOME: line.home, curses.KEY_END: line.end,
                    CTRL["a"]: line.home, CTRL["e"]: line.end,
                    curses.KEY_DC: line.delete, curses.KEY_UP: line.history_prev,
                    curses.KEY_DOWN: line.history_next}
        if ch in handlers:
            handlers[ch]()
        elif ch in EDIT_KEYS:
            getattr(line, EDIT_KEYS[ch])()
        elif ch in BACKSPACE_KEYS:
            line.backspace()
        elif ch in ENTER_KEYS:
            self.run_line()
        elif isinstance(ch, str) and is_text(ch):
            line.insert(ch)

    def alt_edit_key(self, ch) -> bool:
        """Alt-b/f/d, Alt-Backspace, Alt-Enter (``ALT_EDIT_KEYS``): the input line's from
        any pane, as typing is; True when ``ch`` was one. A waiting paste keeps its keys."""
        name = ALT_EDIT_KEYS.get(ch.lower() if isinstance(ch, str) else ch)
        if name is None or self.line.pending is not None:
            return False
        self.state.focus = "input"
        getattr(self.line, name)()
        return True

    def complete(self, step: int) -> None:
        """Tab / Shift-Tab in the input line: the next / previous matching name (not mine)."""
        me = p.user_key(self.state.me)
        names = [n for n in self.state.completion_names() if p.user_key(n) != me]
        if not self.line.complete(names, step):
            self.state.set_status("Nothing to complete: Tab completes user names, #rooms "
                                  "and /commands.")

    def pane_key(self, ch) -> None:
        state = self.state
        messages = state.focus == "messages"
        moves = {curses.KEY_UP: -1, curses.KEY_DOWN: 1}
        if ch in moves and messages:
            self.move_selection(moves[ch])     # the view follows; ↑ at the top loads older
        elif ch in moves:
            state.move(moves[ch])
        elif messages and ch == curses.KEY_END:
            self.to_bottom()
        elif messages and ch == curses.KEY_HOME:
            self.to_top()
        elif ch in ENTER_KEYS:
            if state.focus == "conversations":
                self.open(state.selected_conversation())
            elif state.focus == "messages" and state.selected_message is not None:
                self.start_reply()
        elif isinstance(ch, str) and is_text(ch):
            state.focus = "input"              # typing anywhere goes to the input line
            self.input_key(ch)

    def confirm_key(self, ch) -> None:
        """y does it; anything else (n, Esc) does not."""
        action, self.state.confirm = self.state.confirm, None
        if isinstance(ch, str) and ch.lower() == "y":
            if action == "logout":
                raise LoggedOut()
            self.quit = True
        else:
            self.state.set_status("Carry on.")

    def menu_key(self, ch) -> None:
        state = self.state
        if ch in (ESC, curses.KEY_F10, CTRL["o"]):
            state.menu_open = False
        elif ch == curses.KEY_UP:
            state.menu_index = (state.menu_index - 1) % len(MENU_ITEMS)
        elif ch == curses.KEY_DOWN:
            state.menu_index = (state.menu_index + 1) % len(MENU_ITEMS)
        elif ch in ENTER_KEYS:
            self.menu_choose(state.menu_index)
        elif isinstance(ch, str) and ch.isdigit() and 1 <= int(ch) <= len(MENU_ITEMS):
            self.menu_choose(int(ch) - 1)

    def menu_choose(self, index: int) -> None:
        self.state.menu_open = False
        self.action(MENU_ITEMS[index][1])

    def picker_key(self, ch) -> None:
        """The users, rooms, members or help overlay: ↑/↓ PgUp/PgDn, Enter picks, Esc closes."""
        picker = self.state.picker
        assert picker is not None
        moves = {curses.KEY_UP: -1, curses.KEY_DOWN: 1,
                 curses.KEY_PPAGE: -self.page(), curses.KEY_NPAGE: self.page()}
        if ch in moves:
            picker.move(moves[ch])
        elif ch in ENTER_KEYS and picker.kind != "help":
            self.state.picker = None
            self.pick(picker.kind, picker.chosen())
        else:
            self.state.picker = None

    def pick(self, kind: str, value: Optional[str]) -> None:
        if value is None:
            return
        if kind == "rooms" and value not in self.state.convs:
            self.cmd_join(Command("join", [value]))
        else:
            self.open(value)

    # ------------------------------------------------------------ drawing

    def draw(self) -> None:
        win = self.win
        win.erase()
        height, width = win.getmaxyx()
        layout = panes.compute_layout(height, width,
                                      notice_height(self.state.status, height, width))
        if layout is None:
            panes.draw_too_small(win, height, width)
            win.refresh()
            return
        state = self.state
        self.conversations_pane.draw(win, layout.conversations, state, self.colors)
        self.messages_pane.draw(win, layout.messages, state, self.colors)
        for y in range(layout.messages.y, layout.messages.y + layout.messages.h):
            panes.put(win, y, layout.messages.x - 1, "│", self.colors.dim)
        cursor_x = self.input_pane.draw(win, layout.input, state, self.line, self.colors)
        self.status_bar.draw(win, layout.status, state, self.colors)
        self.notice_line.draw(win, layout.notice, state, self.colors)
        if state.confirm:
            panes.draw_confirm(win, state, self.colors)
        elif state.menu_open:
            panes.draw_overlay(win, "Menu (1-9, ↑/↓ Enter)", panes.menu_lines(),
                               state.menu_index, self.colors)
        elif state.picker:
            panes.draw_picker(win, state, self.colors)
        elif state.search is not None:
            draw_search(win, state.search, state.me, self.colors)
        try:
            curses.curs_set(1 if state.focus == "input" else 0)
            win.move(layout.input.y, min(cursor_x, width - 1))
        except curses.error:
            pass
        win.refresh()

    def run(self) -> None:
        """Until /quit: events and keys in, one redraw per batch of keys. Ctrl-C asks
        before quitting; a second Ctrl-C while it asks quits."""
        self.load()
        self.mark_read()
        dirty = True
        while not self.quit:
            if self.drain_events():
                dirty = True
            if dirty:
                self.draw()
                dirty = False
            try:
                events = coalesce(self.focus.take(next_events(self.reader, self.decoder)))
            except KeyboardInterrupt:
                if self.state.confirm == "quit":
                    return
                self.state.ask("quit")
                dirty = True
                continue
            for event in events:
                dirty = True
                self.handle(event)
                if self.quit:
                    break                      # whatever came after /quit is dropped


def next_events(reader: KeyReader, decoder: InputDecoder) -> List[Event]:
    """Every key pending now (waiting at most a tick for the first), decoded."""
    deadline = decoder.deadline()
    wait = TICK_MS
    if deadline is not None:
        wait = max(0, min(TICK_MS, int((deadline - time.monotonic()) * 1000) + 1))
    keys = read_keys(reader, wait)
    now = time.monotonic()
    return decoder.feed(keys, now) if keys else decoder.idle(now)


def read_keys(reader: KeyReader, timeout_ms: int) -> List[Key]:
    """The keys pending now, after waiting up to ``timeout_ms`` for the first.

    Reading them all before drawing is what keeps a paste fast (one redraw, not
    one per character) and what lets the decoder see a burst as a whole.
    """
    reader.timeout(timeout_ms)
    first = reader.read()
    if first is None:
        return []
    keys = [first]
    reader.timeout(0)
    while len(keys) < MAX_BATCH:
        key = reader.read()
        if key is None:
            break
        keys.append(key)
    return keys


def coalesce(events: Sequence[Event]) -> List[Event]:
    """Runs of printable characters as one string each, so typing them costs one insert."""
    out: List[Event] = []
    run: List[str] = []
    for event in events:
        if isinstance(event, str) and is_text(event):
            run.append(event)
            continue
        if run:
            out.append("".join(run))
            run = []
        out.append(event)
    if run:
        out.append("".join(run))
    return out


# ---------------------------------------------------------------- entry point

def run_curses(stdscr, client: ChatClient, args, password: Optional[str],
               guard: Optional[TerminalGuard] = None,
               unreachable: Optional[ConnectionError] = None,
               prefs: Optional[Preferences] = None) -> int:
    """Inside curses: bracketed paste and focus reports on, and typeahead dropped however
    this ends."""
    guard = guard or TerminalGuard(-1, -1)
    guard.enable_paste()
    guard.enable_focus()
    try:
        with suspendable(guard, curses.endwin, stdscr.refresh):
            return run_screens(stdscr, client, args, password, unreachable, prefs)
    finally:
        try:
            curses.flushinp()
        except curses.error:
            pass


def run_screens(stdscr, client: ChatClient, args, password: Optional[str],
                unreachable: Optional[ConnectionError] = None,
                prefs: Optional[Preferences] = None) -> int:
    """The login screen and the main screen, again after each log-out. ``unreachable``:
    why the first connection failed, said on the login screen. ``prefs``: the settings
    (the last user is the login screen's default when no --user is given)."""
    server = f"{args.host}:{args.port}"
    prefs = prefs or Preferences(no_beep=args.no_beep)
    warning = prefs.warning
    focus = FocusFilter()
    stdscr.keypad(True)
    if hasattr(curses, "set_escdelay"):
        curses.set_escdelay(50)
    colors = panes.Colors()
    reader = KeyReader(stdscr, locale.getpreferredencoding(False))
    while True:
        form = LoginForm(client, server, args.user or prefs.settings.last_user)
        if not client.connected:
            form.fail(connection_error_text(unreachable) if unreachable else
                      f"Cannot reach {server}. Is the server running? Press Enter to try again.")
            unreachable = None
            if args.user and password is not None:
                form.fields["password"] = password
        elif args.user and password is not None:
            try:
                client.login(args.user, password)
            except p.ChatError as exc:
                form.fail(login_error_text(exc))
            except (ConnectionError, TimeoutError) as exc:
                form.fail(connection_error_text(exc))
            password = None
        if client.username is None and login_screen(reader, form, colors, focus) is None:
            return 0
        app = main_screen(stdscr, client, args, reader, prefs, focus)
        if warning:
            app.state.set_status(f"Settings: {sanitize(warning)}", error=True)
            warning = None
        try:
            app.run()
            return 0
        except LoggedOut:
            try:
                client.logout()
            except (p.ChatError, ConnectionError, TimeoutError):
                pass
            client.username = None
            password = None
        finally:
            app.outbox.stop()


def main_screen(stdscr, client: ChatClient, args, reader: KeyReader, prefs: Preferences,
                focus: FocusFilter) -> ChatApp:
    """The main screen after a login: the login remembered, the login screen's connection
    news (a server that closed an idle connection) dropped, the focus carried over."""
    problem = prefs.remember_login(args.host, args.port, client.username or "")
    drop_stale_events(client.events)
    app = ChatApp(stdscr, client, f"{args.host}:{args.port}", beep=prefs.beep, reader=reader,
                  prefs=prefs)
    app.focus = focus
    if problem:
        app.state.set_status(f"Settings: {sanitize(problem)}", error=True)
    return app


def login_screen(reader: KeyReader, form: LoginForm, colors: panes.Colors,
                 focus: Optional[FocusFilter] = None) -> Optional[str]:
    """The login form until logged in (the name) or Esc (None).

    Bracketed pastes go into the field as text (an Esc in their markers must
    not quit); unbracketed bursts stay keys, so a password manager that types
    name, Tab, password, Enter still works.
    """
    decoder = InputDecoder(bursts=False)
    dirty = True
    while True:
        if dirty:
            form.draw(reader.win, colors)
            reader.win.refresh()
        events = (focus or FocusFilter()).take(next_events(reader, decoder))
        dirty = bool(events)
        for event in events:
            if isinstance(event, Paste):
                form.paste(event.text)
            elif event == ESC:
                return None
            elif event != curses.KEY_RESIZE:
                name = form.key(event)
                if name:
                    return name


def port_number(text: str) -> int:
    """``--port``: 1 to 65535, said in words rather than a traceback."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, not {text!r}")
    return port


def unresolvable(host: str, port: int) -> Optional[str]:
    """Why ``host`` names no address to connect to (None if it resolves):
    a name that does not resolve is no reason to ask whether the server is running."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"{host!r} does not resolve to an address ({exc.strerror or exc})"
    except UnicodeError as exc:      # e.g. an empty label in an IDNA name
        return f"{host!r} is not a valid host name ({exc})"
    return None


def parse_args(argv: Optional[List[str]] = None):
    keys = "\n".join(f"  {k:<16} {what}" for k, what in KEY_HELP)
    parser = argparse.ArgumentParser(
        prog="chat-client", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="parallel-chat terminal client: your conversations (rooms and people) "
                    "on the left, the open one on the right; slash commands (/help inside).",
        epilog=f"keys on the main screen:\n{keys}")
    parser.add_argument("--host", help="server address (default: the last one logged in to, "
                                       "else 127.0.0.1)")
    parser.add_argument("--port", type=port_number,
                        help=f"server port (default: the last one, else {p.DEFAULT_PORT})")
    parser.add_argument("--user", help="log in as USER: only the password is asked "
                                       "(CHAT_PASSWORD in the environment skips that too)")
    parser.add_argument("--no-beep", action="store_true",
                        help="no bell on new messages, this run only (/beep is saved)")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--tls-ca", help="CA certificate (PEM) to trust, e.g. a self-signed one")
    parser.add_argument("--version", action="version", version=f"parallel-chat {__version__}")
    return parser.parse_args(argv)


def server_defaults(args, settings: Settings) -> None:
    """--host and --port when not given: the last server logged in to (when neither was
    given), else 127.0.0.1 and the default port."""
    if args.host is None and args.port is None and settings.last_host:
        args.host, args.port = settings.last_host, settings.last_port
    args.host = args.host or "127.0.0.1"
    args.port = args.port or p.DEFAULT_PORT


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    prefs = Preferences.from_environment(no_beep=args.no_beep)
    server_defaults(args, prefs.settings)
    problem = unresolvable(args.host, args.port)
    if problem is not None:
        print(f"chat-client: cannot connect: {problem}", file=sys.stderr)
        return 1
    locale.setlocale(locale.LC_ALL, "")
    password = None
    if args.user:
        password = os.environ.get("CHAT_PASSWORD")
        if password is None:
            try:
                password = getpass.getpass(f"Password for {args.user}: ")
            except (EOFError, KeyboardInterrupt):
                return 1
    client = ChatClient(args.host, args.port, tls=args.tls, tls_ca=args.tls_ca)
    unreachable: Optional[ConnectionError] = None
    try:
        client.connect()
    except ConnectionError as exc:
        unreachable = exc  # the login screen says so, and Enter tries again
    try:
        with guarded() as guard:
            return curses.wrapper(run_curses, client, args, password, guard, unreachable,
                                  prefs)
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
