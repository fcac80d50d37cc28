"""Pasting into the client: text, never keys; one message, never the shell's.

The first half drives the pure pieces (the key decoder, the input line, the
bell limiter, the terminal guard) directly. The second half runs the real
client in a pty, from an interactive shell where it matters, so that a key the
client fails to keep would really be run by ``sh``.
"""
from __future__ import annotations

import curses
import fcntl
import os
import queue
import select
import signal
import struct
import termios
import time
import tty

import pytest

from chat import protocol as p
from chat.tui import app as tui_app
from chat.tui.keys import PASTE_END, PASTE_START, InputDecoder, KeyReader, Paste
from chat.tui.panes import paste_preview
from chat.tui.state import InputLine, RateLimit, parse_command
from chat.tui.terminal import PASTE_OFF, PASTE_ON, TerminalGuard, guarded
from chat.tui.text import text_width
from tests.support import RawConn

REVIEWER_PASTE = "see the log below\n/quit\ntouch {path}\n"
EXIT_KEYS = {"ctrl-c": "\x03", "esc": "\x1b"}


def keys_of(text: str):
    """Keys as the client reads them: control characters as ints, the rest as str."""
    return [ord(ch) if ord(ch) < 32 or ch == "\x7f" else ch for ch in text]


# ---------------------------------------------------------------- the decoder

def test_a_bracketed_paste_is_one_paste_whatever_keys_it_holds():
    decoder = InputDecoder()
    keys = [*PASTE_START, *keys_of("a\n/quit\r"), curses.KEY_UP, 3, *keys_of("b"), *PASTE_END]
    assert decoder.feed(keys, 0.0) == [Paste("a\n/quit\rb", bracketed=True)]
    assert decoder.deadline() is None


def test_paste_markers_split_across_reads_are_still_markers():
    decoder = InputDecoder()
    events = []
    chunks = [["x", 27], ["[", "2"], ["0", "0", "~", "h", "i", 27, "["], ["2", "0", "1"], ["~"]]
    for i, chunk in enumerate(chunks):
        events += decoder.feed(chunk, i * 0.001)
    assert events == ["x", Paste("hi", bracketed=True)]


def test_a_lone_esc_waits_for_the_burst_gap_then_is_a_key():
    decoder = InputDecoder(burst_gap=0.03)
    assert decoder.feed([27], 1.0) == []
    assert decoder.idle(1.01) == []
    assert decoder.deadline() == pytest.approx(1.03)
    assert decoder.idle(1.05) == [27]
    assert decoder.feed([27, "1"], 2.0) == [27, "1"]      # Alt-1 still works


def test_a_paste_whose_end_never_comes_is_given_up_as_text():
    decoder = InputDecoder(stall=2.0)
    assert decoder.feed([*PASTE_START, *keys_of("half")], 0.0) == []
    assert decoder.idle(1.0) == []
    assert decoder.idle(2.5) == [Paste("half", bracketed=True)]
    assert decoder.feed(["k"], 3.0) == ["k"]


def test_resize_passes_through_a_paste():
    decoder = InputDecoder()
    keys = [*PASTE_START, "a", curses.KEY_RESIZE, "b", *PASTE_END]
    assert decoder.feed(keys, 0.0) == [curses.KEY_RESIZE, Paste("ab", bracketed=True)]


def test_text_with_an_enter_in_one_read_is_a_burst_not_keys():
    decoder = InputDecoder(burst_gap=0.03)
    assert decoder.feed(keys_of(REVIEWER_PASTE.format(path="/x")), 5.0) == []
    assert decoder.idle(5.04) == [Paste("see the log below\n/quit\ntouch /x\n", False)]


def test_a_burst_takes_in_what_follows_within_the_gap():
    decoder = InputDecoder(burst_gap=0.03)
    assert decoder.feed(keys_of("one\n/qu"), 0.0) == []
    assert decoder.feed(keys_of("it"), 0.01) == []       # no Enter, but still the paste
    assert decoder.feed(keys_of("\nthree"), 0.02) == []
    assert decoder.feed(["k"], 0.2) == [Paste("one\n/quit\nthree", False), "k"]


def test_typing_is_keys():
    decoder = InputDecoder(burst_gap=0.03)
    assert decoder.feed(keys_of("hello"), 0.0) == list("hello")
    assert decoder.feed([13], 0.2) == [13]
    assert decoder.feed([13, 13], 0.4) == [13, 13]       # no text: a held-down Enter
    assert InputDecoder(bursts=False).feed(keys_of("pw\n"), 0.0) == ["p", "w", 10]


class ScriptedWindow:
    """getch() and get_wch() from a script: as curses returns them, -1 for "nothing yet"."""

    def __init__(self, codes) -> None:
        self.codes = list(codes)

    def getch(self) -> int:
        return self.codes.pop(0) if self.codes else -1

    def get_wch(self):
        code = self.getch()
        if code == -1:
            raise curses.error("no input")
        return code

    def timeout(self, ms: int) -> None:
        pass


def test_a_character_split_across_reads_is_kept_whole():
    bytes_ = "a中\x1b".encode()
    reader = KeyReader(ScriptedWindow([bytes_[0], bytes_[1], -1, bytes_[2], -1, bytes_[3],
                                       bytes_[4], curses.KEY_UP, 127]), wide=False)
    assert reader.read() == "a"
    assert reader.read() is None                       # the rest of 中 is not here yet
    assert reader.read() is None
    assert [reader.read() for _ in range(4)] == ["中", 27, curses.KEY_UP, 127]


def test_whole_characters_from_get_wch_where_curses_gives_them():
    reader = KeyReader(ScriptedWindow(["中", "\x1b", "\x7f", curses.KEY_UP, -1]), wide=True)
    assert [reader.read() for _ in range(5)] == ["中", 27, 127, curses.KEY_UP, None]


# ---------------------------------------------------------------- the input line

def test_one_pasted_line_is_text_and_a_leading_slash_is_escaped():
    line = InputLine()
    assert line.paste("/quit\n") is False
    assert line.text == "//quit"
    command = parse_command(line.take())
    assert (command.name, command.text) == ("say", "/quit")
    line.insert("see ")
    line.paste("/etc/hosts")
    assert line.text == "see /etc/hosts"                 # only at the start of the line


def test_several_pasted_lines_wait_as_one_message():
    line = InputLine()
    line.insert("typed")
    assert line.paste("a\r\nb\rc\x07\n\n") is True
    assert line.pending == "a\nb\nc" and line.text == "typed"
    assert line.paste("d") is True
    assert line.take_paste() == "a\nb\nc\nd" and line.pending is None
    line.restore_paste("back")
    assert line.pending == "back"


def test_the_preview_says_how_many_lines_and_fits():
    text = REVIEWER_PASTE.format(path="/tmp/x").strip()
    assert paste_preview(text, 80).startswith("[pasted 3 lines: see the log below…]")
    for width in (10, 30, 60):
        assert text_width(paste_preview("中" * 500 + "\nb", width)) <= width


# ---------------------------------------------------------------- the bell

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bell_limiter_allows_one_in_two_seconds():
    clock = Clock()
    bell = RateLimit(2.0, clock)
    rang = []
    for step in range(1000):                    # a message every 5 ms for 5 s
        clock.now = step * 0.005
        if bell.allow():
            rang.append(clock.now)
    assert rang == [0.0, 2.0, 4.0]


# ---------------------------------------------------------------- the app, no terminal

class FakeClient:
    """Just enough of ChatClient for ChatApp: records what would be sent."""

    def __init__(self) -> None:
        self.username = "bob"
        self.events: "queue.Queue[dict]" = queue.Queue()
        self.sent = []

    def send(self, to, text, reply_to=None):
        self.sent.append((to, text))
        return p.Message(len(self.sent), "bob", to, text, time.time(), reply_to)

    def history(self, **_):
        return []

    def read(self, *_):
        pass


@pytest.fixture
def chat_app():
    app = tui_app.ChatApp(None, FakeClient(), "test:1", beep=True)
    app.state.set_users([("alice", True, 0), ("bob", True, 0)])
    app.open("alice")
    return app


def run_keys(app, keys, now=10.0):
    """Keys through the decoder and into the app, as the main loop does."""
    events = app.decoder.feed(keys, now) + app.decoder.idle(now + 1)
    for event in tui_app.coalesce(events):
        app.handle(event)
        if app.quit:
            break


@pytest.mark.parametrize("bracketed", [True, False])
def test_the_reviewers_paste_sends_nothing_until_enter_then_one_message(chat_app, bracketed):
    keys = keys_of(REVIEWER_PASTE.format(path="/tmp/x"))
    run_keys(chat_app, [*PASTE_START, *keys, *PASTE_END] if bracketed else keys)
    assert not chat_app.quit and chat_app.client.sent == []
    assert chat_app.line.pending == "see the log below\n/quit\ntouch /tmp/x"
    run_keys(chat_app, [13], now=20.0)
    assert chat_app.client.sent == [("alice", "see the log below\n/quit\ntouch /tmp/x")]
    assert not chat_app.quit and chat_app.line.pending is None


@pytest.mark.parametrize("drop", [27, 21, 127])       # Esc, Ctrl-U, Backspace
def test_a_waiting_paste_can_be_dropped(chat_app, drop):
    run_keys(chat_app, keys_of("a\nb\n"))
    run_keys(chat_app, [drop], now=20.0)
    run_keys(chat_app, [13], now=30.0)
    assert chat_app.line.pending is None and chat_app.client.sent == []


def test_a_pasted_slash_command_is_sent_as_text(chat_app):
    run_keys(chat_app, [*PASTE_START, *"/quit", *PASTE_END])
    assert chat_app.line.text == "//quit"
    run_keys(chat_app, [13], now=20.0)
    assert chat_app.client.sent == [("alice", "/quit")] and not chat_app.quit


def test_a_long_run_of_typed_keys_is_one_insert(chat_app, monkeypatch):
    inserts = []
    real = chat_app.line.insert
    monkeypatch.setattr(chat_app.line, "insert", lambda s: inserts.append(s) or real(s))
    run_keys(chat_app, list("x" * 4000))
    assert chat_app.line.text == "x" * 4000 and len(inserts) == 1


def test_a_flood_of_messages_rings_the_bell_at_most_every_two_seconds(chat_app, monkeypatch):
    rings = []
    monkeypatch.setattr(tui_app, "notify", lambda enabled: rings.append(enabled))
    clock = Clock()
    chat_app.bell.clock = clock
    for i in range(300):                        # 300 messages in 3 s
        clock.now = 100 + i * 0.01
        msg = p.Message(1000 + i, "alice", "bob", f"m{i}", 0.0, None)
        chat_app.on_event({"event": "message", "message": msg.to_dict()})
    assert len(rings) == 2                      # at 100.0 and 102.0


# ---------------------------------------------------------------- the terminal guard

def read_output(fd: int, size: int, timeout: float = 5.0) -> bytes:
    """``size`` bytes from a pty master, or what came within ``timeout``; output reaches the
    master a moment after it is written, so an immediate read may find nothing."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < size and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            data += os.read(fd, size - len(data))
    return data


def pending_input(fd: int) -> int:
    """Bytes waiting to be read on a terminal."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_the_guard_turns_bracketed_paste_off_once_and_drops_unread_keys():
    master, slave = os.openpty()
    tty.setcbreak(slave)                              # as curses leaves it: no echo
    try:
        guard = TerminalGuard(slave, slave)
        guard.enable_paste()
        assert read_output(master, len(PASTE_ON)) == PASTE_ON
        keys = b"touch /tmp/never\n"
        os.write(master, keys)
        deadline = time.monotonic() + 5
        while pending_input(slave) < len(keys) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pending_input(slave) == len(keys)
        guard.restore()
        guard.restore()
        assert read_output(master, 2 * len(PASTE_OFF), timeout=0.5) == PASTE_OFF
        assert pending_input(slave) == 0              # the keys are gone
    finally:
        os.close(master)
        os.close(slave)


def test_guarded_restores_on_a_crash_and_turns_sigterm_into_an_exit():
    master, slave = os.openpty()
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(RuntimeError):
            with guarded(slave, slave) as guard:
                guard.enable_paste()
                with pytest.raises(SystemExit):
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(1)
                raise RuntimeError("a crash")
        assert read_output(master, len(PASTE_ON + PASTE_OFF)) == PASTE_ON + PASTE_OFF
        assert signal.getsignal(signal.SIGTERM) == before
    finally:
        os.close(master)
        os.close(slave)


# ---------------------------------------------------------------- the real client in a pty

pexpect = pytest.importorskip("pexpect")
pytest.importorskip("pyte")


def bob_with_alice(server, terminals, **kwargs):
    """bob's client (from a shell) with the conversation with alice open; alice raw."""
    setup = RawConn(server.address)
    setup.ok("signup", username="bob", password="password1")
    setup.close()
    alice = RawConn(server.address)
    alice.login("alice")
    term = terminals(server.address[1], "--user", "bob",
                     env_extra={"CHAT_PASSWORD": "password1"}, **kwargs)
    term.wait_for("bob @ 127.0.0.1")
    term.line("/open alice")
    term.wait_for("Messages with alice")
    return term, alice


@pytest.mark.parametrize("bracketed", [True, False], ids=["bracketed", "unbracketed"])
def test_the_reviewers_paste_never_reaches_the_shell(chat_server, terminals, tmp_path, bracketed):
    term, alice = bob_with_alice(chat_server, terminals, shell=True)
    pwned = tmp_path / "PWNED"
    text = REVIEWER_PASTE.format(path=pwned)
    term.paste(text, bracketed=bracketed)
    term.pump(1.0)
    assert not pwned.exists(), "a pasted line ran in the shell"
    assert not term.client_ended(), "the pasted /quit closed the client"
    assert alice.all_history() == [], "pasted lines were sent one by one"
    term.wait_for("[pasted 3 lines: see the log below…]")
    term.key("enter")
    term.wait_for("Sent to alice.")
    assert [m["text"] for m in alice.all_history()] == [text.rstrip("\n")]
    term.line("/quit")
    term.wait_for("Quit parallel-chat?")
    term.type("y")
    term.wait_raw(b"\x1b[?1049l")
    term.shell_ran_everything()
    assert not pwned.exists()
    alice.close()


@pytest.mark.parametrize("exit_keys", ["ctrl-c", "esc"])
def test_keys_after_quitting_never_reach_the_shell(chat_server, terminals, tmp_path, exit_keys):
    pwned = tmp_path / "PWNED"
    term = terminals(chat_server.address[1], shell=True)
    term.wait_for("Log in to")
    term.send_all(EXIT_KEYS[exit_keys] + f" touch {pwned}\n")
    term.wait_raw(b"\x1b[?1049l")
    term.shell_ran_everything()
    assert not pwned.exists(), "keys read after the client ended ran in the shell"


@pytest.mark.parametrize("chars", ["a", "中"], ids=["ascii", "cjk"])
def test_a_4000_character_paste_shows_and_is_sent_whole(chat_server, terminals, chars):
    term, alice = bob_with_alice(chat_server, terminals)
    text = chars * 3995 + "<END>"
    term.paste(text)
    screen = term.wait_for("<END>", timeout=30)
    assert "200~" not in screen and "201~" not in screen
    term.key("enter")
    term.wait_for("Sent to alice.", timeout=30)
    assert [m["text"] for m in alice.all_history()] == [text]
    alice.close()


CRASH = ("import sys; from chat.tui import app; "
         "app.LoginForm.draw = lambda *a: 1 / 0; sys.exit(app.main(sys.argv[1:]))")


@pytest.mark.parametrize("how", ["esc", "ctrl-c", "sigterm", "crash"])
def test_bracketed_paste_is_on_while_running_and_off_on_every_exit(chat_server, terminals, how):
    if how == "crash":
        term = terminals(chat_server.address[1], python_args=("-c", CRASH))
        term.wait_raw(b"ZeroDivisionError")
    else:
        term = terminals(chat_server.address[1])
        term.wait_for("Log in to")
        {"esc": lambda: term.key("esc"), "ctrl-c": lambda: term.key("ctrl-c"),
         "sigterm": lambda: term.child.kill(signal.SIGTERM)}[how]()
    term.child.expect(pexpect.EOF, timeout=15)
    raw = bytes(term.raw) + (term.child.before or b"")
    assert PASTE_ON in raw, "bracketed paste was never turned on"
    assert raw.rfind(PASTE_OFF) > raw.rfind(PASTE_ON), "left on after the client ended"


def test_ctrl_z_gives_the_shell_its_terminal_without_bracketed_paste(chat_server, terminals):
    term = terminals(chat_server.address[1], shell=True)
    term.wait_for("Log in to")
    term.child.send("\x1a")
    stopped = term.wait_raw(b"Stopped")
    raw = bytes(term.raw[:stopped])
    assert PASTE_ON in raw and raw.rfind(PASTE_OFF) > raw.rfind(PASTE_ON)
    term.child.send("fg\n")
    term.wait_raw(PASTE_ON, start=stopped)
    term.type("carol")
    term.wait_for("carol")                         # the client reads keys again
