"""The real chat-client in a pseudo-terminal, read as a person would see the screen."""
from __future__ import annotations

import os
import shlex
import socket
import sys
import threading
import time

import pytest

pexpect = pytest.importorskip("pexpect")
pyte = pytest.importorskip("pyte")

from tests.pyte_scrolling import teach_pyte_scrolling  # noqa: E402
from tests.support import ROOT, RawConn, ServerProcess  # noqa: E402

teach_pyte_scrolling(pyte)   # ncurses scrolls a pane's rows with CSI S/T; pyte 0.8 drops them

KEYS = {"enter": "\r", "tab": "\t", "down": "\x1bOB", "up": "\x1bOA", "f5": "\x1b[15~",
        "f10": "\x1b[21~", "f2": "\x1bOQ", "pgdn": "\x1b[6~", "esc": "\x1b",
        "ctrl-n": "\x0e", "ctrl-p": "\x10", "ctrl-c": "\x03",
        **{f"alt-{c}": "\x1b" + c for c in "0123456789a"}}
#: A pause after typing: longer than the client's burst window, so that text and the Enter
#: after it read as typing, not as a paste (which is never run as a command).
TYPING_PAUSE = 0.1
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
SHELL_PROMPT = "pty-shell$ "
ALT_SCREEN_OFF = b"\x1b[?1049l"     # curses leaving: the client has ended


class Terminal:
    """A chat-client under a pty, its output fed to a pyte screen.

    With ``shell=True`` the client runs from an interactive ``sh`` in the pty,
    as a person runs it: keys the client leaves unread would reach that shell.
    """

    def __init__(self, port: int, *args: str, rows: int = 30, cols: int = 100,
                 env_extra=None, beep: bool = False, shell: bool = False,
                 python_args=("-m", "chat.client")) -> None:
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        env = {**os.environ, "TERM": "screen", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               **(env_extra or {})}
        flags = [] if beep else ["--no-beep"]
        argv = [*python_args, "--port", str(port), *flags, *args]
        if not shell:
            self.child = pexpect.spawn(sys.executable, argv, cwd=str(ROOT), env=env,
                                       dimensions=(rows, cols))
            return
        env.pop("ENV", None)
        env["PS1"] = SHELL_PROMPT
        self.child = pexpect.spawn("sh", ["-i"], cwd=str(ROOT), env=env,
                                   dimensions=(rows, cols))
        self.wait_raw(SHELL_PROMPT.encode())
        self.child.send(shlex.join([sys.executable, *argv]) + "\n")

    def pump(self, wait: float = 0.05) -> None:
        while True:
            try:
                data = self.child.read_nonblocking(65536, timeout=wait)
            except (pexpect.TIMEOUT, pexpect.EOF):
                return
            self.raw += data
            self.stream.feed(data)
            wait = 0.01

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, *needles: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            screen = self.text()
            if all(n in screen for n in needles):
                return screen
        raise AssertionError(f"never saw {needles!r} on the screen:\n{self.text()}")

    def wait_raw(self, needle: bytes, start: int = 0, timeout: float = 15.0) -> int:
        """Where ``needle`` first shows in the output after ``start``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            at = self.raw.find(needle, start)
            if at >= 0:
                return at
        raise AssertionError(f"never saw {needle!r} in the output:\n{bytes(self.raw[-500:])!r}")

    def type(self, text: str) -> None:
        self.child.send(text)
        time.sleep(TYPING_PAUSE)

    def send_all(self, data: str) -> None:
        """Write at once however long (a paste), reading the screen meanwhile so neither
        side blocks on a full pty buffer."""
        payload = data.encode()

        def write() -> None:
            view = memoryview(payload)
            while view:
                view = view[os.write(self.child.child_fd, view):]

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        while writer.is_alive():
            self.pump(0.01)
        writer.join()

    def paste(self, text: str, bracketed: bool = True) -> None:
        """What a terminal sends for a paste: bracketed, or the bare bytes in one go."""
        self.send_all(PASTE_START + text + PASTE_END if bracketed else text)

    def client_ended(self) -> bool:
        self.pump()
        return ALT_SCREEN_OFF in self.raw

    def shell_ran_everything(self) -> None:
        """Have the shell run one more command and wait for it: whatever was left in its
        input before (keys the client did not read) has run by then."""
        self.child.send("echo shell-$((6 * 7))\n")
        self.wait_raw(b"shell-42")

    def key(self, name: str) -> None:
        self.child.send(KEYS[name])
        time.sleep(0.05)

    def line(self, text: str) -> None:
        self.type(text)
        self.key("enter")

    def resize(self, rows: int, cols: int) -> None:
        self.screen.resize(rows, cols)
        self.child.setwinsize(rows, cols)

    def close(self) -> None:
        self.child.terminate(force=True)


def sign_up_on_screen(term: Terminal, name: str, password: str = "password1") -> None:
    term.wait_for("Log in to")
    term.key("ctrl-n")
    term.wait_for("Sign up for")
    term.line(name)
    term.line(password)
    term.line(password)
    term.wait_for(f"{name} @ 127.0.0.1")


def bob_terminal(terminals, server) -> Terminal:
    setup = RawConn(server.address)
    setup.ok("signup", username="bob", password="password1")
    setup.close()
    return terminals(server.address[1], "--user", "bob", env_extra={"CHAT_PASSWORD": "password1"})


def test_two_people_chat_and_reply(server, terminals):
    alice = terminals(server.address[1])
    sign_up_on_screen(alice, "alice")
    bob = bob_terminal(terminals, server)
    bob.wait_for("bob @ 127.0.0.1", "All my messages")
    bob.line("/msg alice hello from bob")
    screen = alice.wait_for("bob → alice", "hello from bob")
    assert " 1 ●bob (1)" in screen  # conversation 1: online, one unread
    alice.key("alt-1")
    alice.wait_for("Messages with bob")
    alice.key("f10")
    alice.wait_for("Reply to a message")
    alice.type("6")
    alice.wait_for("Replying to bob")
    alice.type(" glad you wrote")
    alice.key("enter")
    screen = bob.wait_for("↪ reply to bob: “hello from bob”", "glad you wrote")
    alice.wait_for("Sent to bob.")
    assert "Messages with alice" in screen  # /msg opened the conversation


def test_slash_commands_and_menu(server, terminals):
    alice = terminals(server.address[1])
    sign_up_on_screen(alice, "alice")
    alice.line("/beep")
    alice.wait_for("Beep on.")  # the terminals run with --no-beep
    alice.line("/beep")
    alice.wait_for("Beep off.")
    alice.line("/nonsense")
    alice.wait_for("unknown command /nonsense")
    alice.key("f10")
    alice.wait_for("Menu", "View users online", "Log out")
    alice.type("8")
    alice.wait_for("Log out?", "y: yes")
    alice.type("y")
    alice.wait_for("Log in to")


def test_resize_redraws_and_too_small_says_so(server, terminals):
    alice = terminals(server.address[1])
    sign_up_on_screen(alice, "alice")
    alice.resize(8, 30)
    alice.wait_for("Too small: 30×8")
    alice.resize(24, 70)
    screen = alice.wait_for("Conversations", "All my messages")
    assert "Too small" not in screen


def test_reconnects_after_a_server_restart_and_shows_what_was_missed(server, terminals):
    alice = terminals(server.address[1])
    sign_up_on_screen(alice, "alice")
    db, port = server.db, server.address[1]
    server.kill()
    alice.wait_for("reconnecting")
    restarted = ServerProcess(db, port)
    try:
        bob = RawConn(restarted.address)
        bob.login("bob")
        bob.ok("send", to="alice", text="sent while you were away")
        screen = alice.wait_for("sent while you were away", "connected")
        assert "reconnecting" not in screen
        bob.close()
    finally:
        restarted.terminate()


def test_no_raw_escape_from_the_network_reaches_the_terminal(server, terminals):
    alice = terminals(server.address[1])
    sign_up_on_screen(alice, "alice")
    mallory = RawConn(server.address)
    mallory.login("mallory")
    payload = "\x1b]0;PWNED\x07\x1b]52;c;Q0xJUA==\x07\x9b6n\x1b[31mRED\u202eEVIL"
    mallory.ok("send", to="alice", text=payload)
    screen = alice.wait_for("^[]0;PWNED^G")
    assert "^[[31mRED" in screen and "<9B>6n" in screen
    raw = bytes(alice.raw)
    for forbidden in (b"\x1b]0;PWNED", b"\x1b]52;", b"\xc2\x9b6n", b"\x9b6n", b"\xe2\x80\xae"):
        assert forbidden not in raw
    mallory.close()


def test_server_unreachable_then_retry(tmp_path, terminals):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    term = terminals(port, "--user", "carol", env_extra={"CHAT_PASSWORD": "password1"})
    term.wait_for(f"Cannot reach 127.0.0.1:{port}: Connection refused", "Is the server running?")
    server = ServerProcess(tmp_path / "db", port)
    try:
        setup = RawConn(server.address)
        setup.ok("signup", username="carol", password="password1")
        setup.close()
        term.key("enter")
        term.wait_for("carol @ 127.0.0.1", "All my messages")
    finally:
        server.terminate()


def test_a_message_from_someone_else_rings_the_bell_unless_turned_off(server, terminals):
    alice = terminals(server.address[1], beep=True)
    sign_up_on_screen(alice, "alice")
    bob = RawConn(server.address)
    bob.login("bob")
    alice.line("/msg bob my own message does not ring")
    alice.wait_for("Sent to bob.")
    assert b"\x07" not in alice.raw
    bob.ok("send", to="alice", text="ding")
    alice.wait_for("ding")
    deadline = time.monotonic() + 5
    while b"\x07" not in alice.raw and time.monotonic() < deadline:
        alice.pump()
    assert b"\x07" in alice.raw
    alice.line("/beep")
    alice.wait_for("Beep off.")
    rang = alice.raw.count(b"\x07")
    bob.ok("send", to="alice", text="silent now")
    alice.wait_for("silent now")
    alice.pump(0.3)
    assert alice.raw.count(b"\x07") == rang
    bob.close()
