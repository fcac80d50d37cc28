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
from typing import Callable, List, Optional, Sequence

from chat import __version__  # the package root: a constant, no part

from .. import protocol as p
from ..client import ChatClient
from . import panes
from .keys import Event, InputDecoder, Key, KeyReader, Paste
from .state import (
    MENU_ITEMS,
    ChatState,
    CommandError,
    InputLine,
    RateLimit,
    clean_paste,
    parse_command,
)
from .terminal import TerminalGuard, guarded, suspendable
from .text import sanitize

CTRL = {ch: ord(ch) - 0x60 for ch in "abcdefghijklmnopqrstuvwxyz"}
ESC = 27
ENTER_KEYS = (10, 13, curses.KEY_ENTER)
BACKSPACE_KEYS = (curses.KEY_BACKSPACE, 127, 8)
FKEYS = {curses.KEY_F1: 0, curses.KEY_F2: 1, curses.KEY_F3: 2, curses.KEY_F4: 3,
         curses.KEY_F5: 4, curses.KEY_F6: 5}
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
        panes.put(win, 6 + 2 * len(self.order()), 2, sanitize(self.message),
                  colors.error if self.error else colors.dim)
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
        elif isinstance(ch, str) and ch.isprintable():
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
            self.fail(f"{exc}. Is the server running? Press Enter to try again.")
        return None

    def fail(self, text: str) -> None:
        self.message, self.error = text, True


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

class ChatApp:
    """The main screen: panes, keys, slash commands, events."""

    def __init__(self, win, client: ChatClient, server: str, beep: bool,
                 reader: Optional[KeyReader] = None) -> None:
        self.win = win
        self.reader = reader or KeyReader(win)
        self.client = client
        self.state = ChatState(client.username or "?", server, beep)
        self.line = InputLine()
        self.colors = panes.Colors()
        self.panes = (panes.UsersPane(), panes.OnlinePane(), panes.MessagesPane())
        self.input_pane = panes.InputPane()
        self.status_bar = panes.StatusBar()
        self.quit = False
        self.bell = RateLimit(BELL_INTERVAL)
        self.decoder = InputDecoder()
        self._esc = False

    # ------------------------------------------------------------ data

    def load(self) -> None:
        """Fetch the user list and the newest messages (after login and reconnects)."""
        try:
            self.state.set_users([(u.username, u.online, u.unread) for u in self.client.users()])
            self.state.add_messages(self.client.history(limit=p.MAX_HISTORY_LIMIT))
            if self.state.peer:
                self.state.add_messages(self.client.history(with_user=self.state.peer,
                                                            limit=p.MAX_HISTORY_LIMIT))
        except (p.ChatError, ConnectionError, TimeoutError) as exc:
            self.state.set_status(f"Could not load: {sanitize(str(exc))}", error=True)

    def mark_read(self) -> None:
        target = self.state.unread_to_mark()
        if target is None:
            return
        try:
            self.client.read(*target)
        except (p.ChatError, ConnectionError, TimeoutError):
            pass  # the count will be fixed at the next read

    def drain_events(self) -> bool:
        changed = False
        while True:
            try:
                ev = self.client.events.get_nowait()
            except queue.Empty:
                return changed
            changed = True
            self.on_event(ev)

    def on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        state = self.state
        if kind == "message":
            try:
                msg = p.Message.from_dict(ev.get("message"))
            except p.ChatError:
                return
            if state.on_message(msg):
                if state.beep and self.bell.allow():
                    notify(True)
                if state.is_open(msg.sender):
                    self.mark_read()
                else:
                    state.set_status(f"New message from {sanitize(msg.sender)}")
        elif kind == "presence":
            state.on_presence(str(ev.get("username")), bool(ev.get("online")))
        elif kind == "signup":
            state.on_signup(str(ev.get("username")))
        elif kind == "connection":
            what = ev.get("state")
            if what == "reconnecting":
                state.connection = "reconnecting…"
                state.set_status(f"Connection lost ({sanitize(str(ev.get('error')))}); "
                                 "reconnecting…", error=True)
            elif what == "resumed":
                state.connection = "connected"
                self.load()
                state.set_status("Reconnected.")
            elif what == "disconnected":
                state.connection = "disconnected"
                state.set_status(f"Disconnected: {sanitize(str(ev.get('error')))}", error=True)
        elif kind == "error":
            state.set_status(f"Server: {sanitize(str(ev.get('message')))}", error=True)

    # ------------------------------------------------------------ actions

    def run_line(self) -> None:
        raw = self.line.take()
        if not raw.strip():
            return
        try:
            cmd = parse_command(raw)
        except CommandError as exc:
            self.state.set_status(str(exc), error=True)
            return
        state = self.state
        if cmd.name == "say":
            if state.peer is None:
                state.set_status("No conversation open: /msg USER TEXT, or pick a user "
                                 "and press Enter.", error=True)
                self.line.set(raw)
                return
            self.send(state.peer, cmd.text)
        elif cmd.name == "msg":
            name = state.canonical(cmd.args[0])
            if name is None:
                state.set_status(f"No user {sanitize(cmd.args[0])!r}.", error=True)
                return
            self.open(name)
            self.send(name, cmd.text)
        elif cmd.name == "open":
            self.action("open", cmd.args[0])
        elif cmd.name == "reply":
            self.reply(cmd.text)
        else:
            self.action(cmd.name)

    def action(self, name: str, arg: Optional[str] = None) -> None:
        state = self.state
        if name == "users":
            state.focus = "users"
            state.set_status("All users: ↑/↓ to choose, Enter to open the conversation.")
        elif name == "online":
            state.focus = "online"
            state.set_status("Users online: ↑/↓ to choose, Enter to open the conversation.")
        elif name == "all":
            self.open(None)
        elif name == "compose":
            state.focus = "input"
            if state.peer is None:
                self.line.set("/msg ")
            state.set_status("Type your message and press Enter.")
        elif name == "reply":
            target = state.reply_target()
            if target is None:
                state.set_status("Nothing to reply to here.", error=True)
                return
            state.focus = "input"
            self.line.set("/reply ")
            state.set_status(f"Replying to {sanitize(target.sender)} (#{target.id}).")
        elif name == "beep":
            state.beep = not state.beep
            state.set_status(f"Beep {'on' if state.beep else 'off'}.")
        elif name == "help":
            state.show_help = True
        elif name == "open" and arg:
            name_ = state.canonical(arg)
            if name_ is None:
                state.set_status(f"No user {sanitize(arg)!r}.", error=True)
            else:
                self.open(name_)
        elif name == "logout":
            raise LoggedOut()
        elif name == "quit":
            self.quit = True

    def open(self, name: Optional[str]) -> None:
        self.state.open_conversation(name)
        if name:
            try:
                self.state.add_messages(self.client.history(with_user=name,
                                                            limit=p.MAX_HISTORY_LIMIT))
            except (p.ChatError, ConnectionError, TimeoutError) as exc:
                self.state.set_status(f"Could not load: {sanitize(str(exc))}", error=True)
            self.mark_read()
            self.state.focus = "input"

    def send(self, to: str, text: str, reply_to: Optional[int] = None,
             keep: Optional[Callable[[str], None]] = None) -> None:
        """Send, or keep the text (``keep``, by default back into the line) and say why not."""
        keep = keep or self.line.set
        try:
            msg = self.client.send(to, text, reply_to=reply_to)
        except p.ChatError as exc:
            self.state.set_status(f"Not sent: {sanitize(exc.message)}", error=True)
            keep(text)
            return
        except (ConnectionError, TimeoutError) as exc:
            self.state.set_status(f"Not sent ({sanitize(str(exc))}); your text is kept.",
                                  error=True)
            keep(text)
            return
        self.state.on_message(msg)
        self.state.scroll = 0
        self.state.set_status(f"Sent to {sanitize(to)}.")

    def reply(self, text: str) -> None:
        target = self.state.reply_target()
        if target is None:
            self.state.set_status("Nothing to reply to: open a conversation with a message "
                                  "in it.", error=True)
            self.line.set("/reply " + text)
            return
        me = p.user_key(self.state.me)
        peer = target.to if p.user_key(target.sender) == me else target.sender
        self.send(peer, text, reply_to=target.id)
        self.state.selected_message = None

    # ------------------------------------------------------------ pastes

    def on_paste(self, text: str) -> None:
        """Pasted text: into the input line, or waiting for Enter; never run as keys."""
        state = self.state
        state.show_help = state.menu_open = self._esc = False
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
            state.set_status("No conversation open: pick a user (Tab, arrows, Enter), then "
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
        return not (state.show_help or state.menu_open or self._esc
                    or self.line.pending is not None)

    def key(self, ch) -> None:
        state = self.state
        if state.show_help:
            state.show_help = False
            return
        if state.menu_open:
            self.menu_key(ch)
            return
        if self._esc:                        # Esc then a digit: Alt-digit for any terminal
            self._esc = False
            if isinstance(ch, str) and ch in "123456":
                self.menu_choose(int(ch) - 1)
                return
            if ch == "m":
                state.menu_open = True
                return
        if ch in FKEYS:
            self.menu_choose(FKEYS[ch])
        elif ch in (curses.KEY_F10, CTRL["o"]):
            state.menu_open, state.menu_index = True, 0
        elif ch == ESC and self.line.pending is not None:
            self.paste_key(ch)
        elif ch == ESC:
            self._esc = True
        elif ch == 9:
            if (state.focus == "input" and self.line.pending is None
                    and self.line.text.strip()):
                self.line.complete(state.user_names())
            else:
                state.cycle_focus(1)
        elif ch == curses.KEY_BTAB:
            state.cycle_focus(-1)
        elif ch == CTRL["b"]:
            self.action("beep")
        elif ch == curses.KEY_PPAGE:
            state.scroll_by(max(1, self.win.getmaxyx()[0] - 4))
        elif ch == curses.KEY_NPAGE:
            state.scroll_by(-max(1, self.win.getmaxyx()[0] - 4))
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
                    CTRL["a"]: line.home, CTRL["e"]: line.end, CTRL["u"]: line.kill_line,
                    curses.KEY_DC: line.delete, curses.KEY_UP: line.history_prev,
                    curses.KEY_DOWN: line.history_next}
        if ch in handlers:
            handlers[ch]()
        elif ch in BACKSPACE_KEYS:
            line.backspace()
        elif ch in ENTER_KEYS:
            self.run_line()
        elif isinstance(ch, str) and (ch.isprintable() or ch == " "):
            line.insert(ch)

    def pane_key(self, ch) -> None:
        state = self.state
        if ch == curses.KEY_UP:
            state.move(-1)
        elif ch == curses.KEY_DOWN:
            state.move(1)
        elif ch in ENTER_KEYS:
            if state.focus == "users":
                self.open(state.selected_user())
            elif state.focus == "online":
                self.open(state.selected_online())
            elif state.focus == "messages" and state.selected_message is not None:
                self.action("reply")
        elif isinstance(ch, str) and ch.isprintable():
            state.focus = "input"              # typing anywhere goes to the input line
            self.input_key(ch)

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
        elif isinstance(ch, str) and ch in "123456":
            self.menu_choose(int(ch) - 1)

    def menu_choose(self, index: int) -> None:
        self.state.menu_open = False
        self.action(MENU_ITEMS[index][2])

    # ------------------------------------------------------------ drawing

    def draw(self) -> None:
        win = self.win
        win.erase()
        height, width = win.getmaxyx()
        layout = panes.compute_layout(height, width)
        if layout is None:
            panes.draw_too_small(win, height, width)
            win.refresh()
            return
        users, online, messages = self.panes
        users.draw(win, layout.users, self.state, self.colors)
        online.draw(win, layout.online, self.state, self.colors)
        messages.draw(win, layout.messages, self.state, self.colors)
        for y in range(layout.messages.y, layout.messages.y + layout.messages.h):
            panes.put(win, y, layout.messages.x - 1, "│", self.colors.dim)
        cursor_x = self.input_pane.draw(win, layout.input, self.state, self.line, self.colors)
        self.status_bar.draw(win, layout.status, self.state, self.colors)
        if self.state.menu_open:
            panes.draw_overlay(win, "Menu (1-6, ↑/↓ Enter)", panes.menu_lines(),
                               self.state.menu_index, self.colors)
        elif self.state.show_help:
            panes.draw_overlay(win, "Help (any key closes)", panes.help_lines(), None,
                               self.colors)
        try:
            curses.curs_set(1 if self.state.focus == "input" else 0)
            win.move(layout.input.y, min(cursor_x, width - 1))
        except curses.error:
            pass
        win.refresh()

    def run(self) -> None:
        """Until /quit: events and keys in, one redraw per batch of keys."""
        self.load()
        self.mark_read()
        dirty = True
        while not self.quit:
            if self.drain_events():
                dirty = True
            if dirty:
                self.draw()
                dirty = False
            for event in coalesce(next_events(self.reader, self.decoder)):
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
        if isinstance(event, str) and event.isprintable():
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
               guard: Optional[TerminalGuard] = None) -> int:
    """Inside curses: bracketed paste on, and typeahead dropped however this ends."""
    guard = guard or TerminalGuard(-1, -1)
    guard.enable_paste()
    try:
        with suspendable(guard, curses.endwin, stdscr.refresh):
            return run_screens(stdscr, client, args, password)
    finally:
        try:
            curses.flushinp()
        except curses.error:
            pass


def run_screens(stdscr, client: ChatClient, args, password: Optional[str]) -> int:
    server = f"{args.host}:{args.port}"
    stdscr.keypad(True)
    if hasattr(curses, "set_escdelay"):
        curses.set_escdelay(50)
    colors = panes.Colors()
    reader = KeyReader(stdscr, locale.getpreferredencoding(False))
    while True:
        form = LoginForm(client, server, args.user)
        if not client.connected:
            form.fail(f"Cannot reach {server}. Is the server running? Press Enter to try again.")
            if args.user and password is not None:
                form.fields["password"] = password
        elif args.user and password is not None:
            try:
                client.login(args.user, password)
            except p.ChatError as exc:
                form.fail(login_error_text(exc))
            except (ConnectionError, TimeoutError) as exc:
                form.fail(f"{exc}. Press Enter to try again.")
            password = None
        if client.username is None and login_screen(reader, form, colors) is None:
            return 0
        app = ChatApp(stdscr, client, server, beep=not args.no_beep, reader=reader)
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


def login_screen(reader: KeyReader, form: LoginForm, colors: panes.Colors) -> Optional[str]:
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
        events = next_events(reader, decoder)
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
    parser = argparse.ArgumentParser(
        prog="chat-client",
        description="parallel-chat terminal client: split panes for users, who is online "
                    "and messages; keys and slash commands (/help inside).")
    parser.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=p.DEFAULT_PORT,
                        help=f"server port (default {p.DEFAULT_PORT})")
    parser.add_argument("--user", help="log in as USER: only the password is asked "
                                       "(CHAT_PASSWORD in the environment skips that too)")
    parser.add_argument("--no-beep", action="store_true", help="no bell on new messages")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--tls-ca", help="CA certificate (PEM) to trust, e.g. a self-signed one")
    parser.add_argument("--version", action="version", version=f"parallel-chat {__version__}")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
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
    try:
        client.connect()
    except ConnectionError:
        pass  # the login screen says so, and Enter tries again
    try:
        with guarded() as guard:
            return curses.wrapper(run_curses, client, args, password, guard)
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
