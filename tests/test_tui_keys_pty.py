"""Readline keys, Alt-Enter, Tab completion and the Esc prefix in the real client, in a pty,
read off the screen as a person would."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("pexpect")
pytest.importorskip("pyte")

from tests.support import RawConn  # noqa: E402
from tests.test_tui_e2e import sign_up_on_screen  # noqa: E402

CTRL_W, CTRL_K, ESC = "\x17", "\x0b", "\x1b"
ALT_ENTER = ESC + "\r"


@pytest.fixture
def bob(server):
    conn = RawConn(server.address)
    conn.login("bob")
    yield conn
    conn.close()


def input_row(term) -> str:
    """The input line: the row with the prompt (``> `` or ``to bob> ``)."""
    rows = [row for row in term.screen.display if row.lstrip().startswith(("> ", "to "))]
    return rows[-1].rstrip() if rows else ""


def wait_input(term, expected: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        term.pump()
        if input_row(term).endswith(expected):
            return input_row(term)
    raise AssertionError(f"the input line is {input_row(term)!r}, not …{expected!r}:\n"
                         f"{term.text()}")


def received(conn: RawConn, text: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ev = conn.event("message", timeout=max(0.1, deadline - time.monotonic()))
        if ev["message"]["text"] == text:
            return
    raise AssertionError(f"bob never got {text!r}")


def test_ctrl_w_deletes_the_last_word_and_ctrl_k_the_rest(server, terminals, bob):
    alice = terminals(server.address[1])
    sign_up_on_screen(alice, "alice")
    alice.type("/msg bob hello brave world")
    alice.type(CTRL_W)
    wait_input(alice, "> /msg bob hello brave")
    alice.type("new ")
    alice.type(CTRL_W + CTRL_W)
    wait_input(alice, "> /msg bob hello")
    alice.type("there")
    alice.key("enter")
    alice.wait_for("hello there")
    received(bob, "hello there")


def test_alt_b_moves_back_a_word_and_typing_goes_there(server, terminals, bob):
    alice = terminals(server.address[1])
    sign_up_on_screen(alice, "alice")
    alice.type("/msg bob one three")
    alice.type(ESC + "b")
    alice.type("two ")
    wait_input(alice, "> /msg bob one two three")
    alice.key("enter")
    received(bob, "one two three")


@pytest.mark.parametrize("term", ["screen", "xterm-256color"])
def test_ctrl_left_and_right_move_by_words_whatever_the_terminfo(server, terminals, bob, term):
    """TERM=screen lists no Ctrl-←: the client reads ESC[1;5D itself; xterm's terminfo lists
    it (kLFT5) and curses gives its own code."""
    alice = terminals(server.address[1], env_extra={"TERM": term})
    sign_up_on_screen(alice, "alice")
    alice.type("/msg bob alpha gamma delta")
    alice.type("\x1b[1;5D\x1b[1;5D")
    alice.type("beta ")
    alice.type("\x1b[1;5C" + CTRL_K)
    wait_input(alice, "> /msg bob alpha beta gamma")
    alice.key("enter")
    received(bob, "alpha beta gamma")


def test_alt_enter_makes_a_two_line_message(server, terminals, bob):
    alice = terminals(server.address[1])
    sign_up_on_screen(alice, "alice")
    alice.type("/msg bob first line")
    alice.type(ALT_ENTER)
    alice.type("second line")
    wait_input(alice, "> /msg bob first line⏎second line")
    alice.key("enter")
    received(bob, "first line\nsecond line")
    screen = alice.wait_for("first line", "second line")
    rows = screen.splitlines()
    first = next(i for i, row in enumerate(rows) if row.rstrip().endswith("first line"))
    assert rows[first + 1].strip().endswith("second line")     # its own row


def test_tab_cycles_through_names_and_shift_tab_goes_back(server, terminals):
    for name in ("andy", "anne", "bob"):
        setup = RawConn(server.address)
        setup.ok("signup", username=name, password="password1")
        setup.close()
    alice = terminals(server.address[1])
    sign_up_on_screen(alice, "alice")
    alice.type("an")
    alice.key("tab")
    wait_input(alice, "> andy:")
    alice.key("tab")
    wait_input(alice, "> anne:")
    alice.type("\x1b[Z")                              # Shift-Tab
    wait_input(alice, "> andy:")
    alice.type(CTRL_W + CTRL_W + "/ms")
    alice.key("tab")
    wait_input(alice, "> /msg")
    alice.type("b")
    alice.key("tab")
    alice.type("hi")
    wait_input(alice, "> /msg bob hi")


def test_a_stale_esc_does_not_turn_a_later_digit_into_alt_digit(server, terminals):
    alice = terminals(server.address[1])
    sign_up_on_screen(alice, "alice")
    for name in ("bob", "carol"):
        peer = RawConn(server.address)
        peer.login(name)
        peer.ok("send", to="alice", text=f"hello from {name}")
        peer.close()
    alice.wait_for("hello from bob", "hello from carol")
    alice.key("esc")
    time.sleep(1.0)
    alice.type("2")
    wait_input(alice, "> 2")
    assert "Messages with" not in alice.text()
    alice.type("\x7f")                                # Backspace: the 2 goes
    alice.type(ESC + "2")                             # a fresh Esc prefix is Alt
    alice.wait_for("Messages with carol")
