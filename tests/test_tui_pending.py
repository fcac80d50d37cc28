"""Sending never freezes the screen: a message typed while the server is down shows pending,
is kept across the reconnect and stored exactly once; refused ones say why. Pure tests of
``outbox.py``."""
from __future__ import annotations

import queue
import threading
import time

import pytest

from chat import protocol as p
from chat.tui.outbox import Outbox, pending_rows
from tests.support import RawConn, ServerProcess


def wait_until(term, check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check(term.text()):
        assert time.monotonic() < deadline, f"{what}:\n{term.text()}"
        term.pump()


# ---------------------------------------------------------------- in a pty

def test_a_message_typed_while_the_server_is_down_is_pending_then_sent_once(tmp_path,
                                                                            terminals):
    server = ServerProcess(tmp_path / "db")
    db, port = server.db, server.address[1]
    setup = RawConn(server.address)
    for name in ("alice", "bob"):
        setup.ok("signup", username=name, password="password1")
    setup.close()
    alice = terminals(port, "--user", "alice", env_extra={"CHAT_PASSWORD": "password1"})
    alice.wait_for("alice @ 127.0.0.1")
    alice.line("/open bob")
    alice.wait_for("Messages with bob")
    server.kill()
    alice.wait_for("reconnecting")
    alice.line("typed while the server was down")
    start = time.monotonic()
    alice.type("next")                                 # the input line is usable at once
    wait_until(alice, lambda s: "to bob> next" in s and "pending" in s, 3.0,
               "Enter froze the screen, or the message does not show pending")
    assert time.monotonic() - start < 3.0
    assert "… alice · pending" in alice.text()
    assert "typed while the server was down" in alice.text()
    restarted = ServerProcess(db, port)
    try:
        alice.wait_for("Sent to bob.", timeout=30)
        wait_until(alice, lambda s: "pending" not in s, 5.0, "still shown pending")
        assert "typed while the server was down" in alice.text()
        bob = RawConn(restarted.address)
        bob.login("bob", signup=False)
        texts = [m["text"] for m in bob.all_history(with_="alice")]
        assert texts.count("typed while the server was down") == 1, texts
        bob.close()
    finally:
        restarted.terminate()


def test_quitting_with_unsent_messages_says_they_will_be_lost_and_rooms_fail_fast(
        tmp_path, terminals):
    """Nothing typed is lost without a word: quitting while a message waits for the
    connection says so in the question. A room command while the server is down
    answers at once instead of freezing the screen for the request's timeout."""
    server = ServerProcess(tmp_path / "db")
    setup = RawConn(server.address)
    for name in ("alice", "bob"):
        setup.ok("signup", username=name, password="password1")
    setup.close()
    alice = terminals(server.address[1], "--user", "alice",
                      env_extra={"CHAT_PASSWORD": "password1"})
    alice.wait_for("alice @ 127.0.0.1")
    alice.line("/open bob")
    alice.wait_for("Messages with bob")
    server.kill()
    alice.wait_for("reconnecting")
    alice.type("/join #team")
    alice.wait_for("to bob> /join #team")
    start = time.monotonic()
    alice.key("enter")
    alice.wait_for("not connected", timeout=3)
    assert time.monotonic() - start < 3.0
    alice.type("\x15")                    # Ctrl-U: the failed command's line is kept
    alice.line("still here?")
    alice.wait_for("pending")
    alice.line("/quit")
    alice.wait_for("1 message is not sent yet and will be lost")


# ---------------------------------------------------------------- pure

class FlakySend:
    """Fails with ConnectionError ``drops`` times, then stores (once per nonce)."""

    def __init__(self, drops: int = 0, refuse: bool = False) -> None:
        self.drops, self.refuse = drops, refuse
        self.calls: list = []
        self.stored: dict = {}

    def __call__(self, to, text, reply_to, nonce):
        self.calls.append(nonce)
        if self.refuse:
            raise p.ChatError(p.UNKNOWN_USER, "no user zed")
        if self.drops:
            self.drops -= 1
            raise ConnectionError("not connected")
        msg = self.stored.setdefault(nonce, p.Message(len(self.stored) + 1, "alice", to, text,
                                                      0.0, reply_to))
        return msg


def outcome(posted: "queue.Queue[dict]") -> dict:
    return posted.get(timeout=10)


def test_a_send_that_meets_a_dropped_connection_is_tried_again_with_its_nonce(monkeypatch):
    monkeypatch.setattr("chat.tui.outbox.RETRY_DELAY", 0.01)
    send, posted = FlakySend(drops=3), queue.Queue()
    box = Outbox(send, posted.put)
    item = box.submit("bob", "hello")
    assert box.items == [item] and box.waiting() == 1
    ev = outcome(posted)
    assert len(send.calls) == 4 and set(send.calls) == {item.nonce}
    assert len(send.stored) == 1
    settled, msg = box.settle(ev)
    assert settled == item and msg.text == "hello" and box.items == []
    assert posted.empty()
    box.stop()


def test_a_refused_send_stays_shown_with_the_reason():
    send, posted = FlakySend(refuse=True), queue.Queue()
    box = Outbox(send, posted.put)
    item = box.submit("zed", "hello?")
    settled, msg = box.settle(outcome(posted))
    assert settled == item and msg is None
    assert box.failed == {item.key: "no user zed"} and box.waiting() == 0
    rows = pending_rows(box, "zed", "alice", 60)
    assert rows[0][0] == "✗ alice · not sent: no user zed" and rows[1][0] == "  hello?"
    box.forget(item)
    assert box.items == [] and box.failed == {}
    box.stop()


def test_sends_go_in_the_order_typed_and_submit_returns_at_once():
    gate = threading.Event()
    order: list = []

    def slow_send(to, text, reply_to, nonce):
        gate.wait(10)
        order.append(text)
        return p.Message(len(order), "alice", to, text, 0.0, reply_to)

    posted: "queue.Queue[dict]" = queue.Queue()
    box = Outbox(slow_send, posted.put)
    start = time.monotonic()
    for text in ("one", "two", "three"):
        box.submit("bob", text)
    assert time.monotonic() - start < 0.5
    gate.set()
    for _ in range(3):
        box.settle(outcome(posted))
    assert order == ["one", "two", "three"] and box.items == []
    box.stop()


def test_pending_rows_show_the_open_conversation_only():
    box = Outbox(FlakySend(), lambda ev: None, threaded=False)
    box.items.extend([])  # nothing yet
    assert pending_rows(box, "bob", "alice", 40) == []
    paused = Outbox(lambda *a: (_ for _ in ()).throw(AssertionError), lambda ev: None)
    paused._worker = threading.current_thread()          # no worker: they stay pending
    paused.submit("bob", "to bob")
    paused.submit("#team", "to the room")
    assert [r[0] for r in pending_rows(paused, "Bob", "alice", 40)] == [
        "… alice · pending", "  to bob"]
    assert [r[0] for r in pending_rows(paused, None, "alice", 40)][::2] == [
        "… alice → bob · pending", "… alice → #team · pending"]


@pytest.mark.parametrize("width", [20, 60])
def test_pending_rows_fit_the_width(width):
    paused = Outbox(lambda *a: None, lambda ev: None)
    paused._worker = threading.current_thread()
    paused.submit("bob", "word " * 40)
    rows = pending_rows(paused, "bob", "alice", width)
    assert len(rows) > 2 and all(len(text) <= width for text, _, _ in rows)


class RefusingClient:
    """A stand-in client whose server refuses every send."""

    username = "alice"
    state = "connected"

    def __init__(self) -> None:
        self.events: "queue.Queue[dict]" = queue.Queue()

    def send(self, to, text, reply_to=None):
        raise p.ChatError(p.UNKNOWN_USER, "no user zed")


def test_a_refused_message_comes_back_to_an_empty_input_line():
    from chat.tui import app as tui_app
    app = tui_app.ChatApp(None, RefusingClient(), "test:1", beep=False)
    assert app.send("zed", "hello?") is True
    app.drain_events()
    assert app.line.text == "hello?" and app.outbox.items == []
    assert app.state.status_is_error and "no user zed" in app.state.status


def test_a_refused_message_stays_marked_when_the_line_is_in_use():
    from chat.tui import app as tui_app
    app = tui_app.ChatApp(None, RefusingClient(), "test:1", beep=False)
    app.send("zed", "hello?")
    app.line.set("typing on")
    app.drain_events()
    assert app.line.text == "typing on"
    assert [r[0] for r in pending_rows(app.outbox, "zed", "alice", 60)][0].startswith("✗")
    assert "marked ✗" in app.state.status
