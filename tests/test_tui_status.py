"""The notice line and the status bar: errors seen whole at 53 columns, a failed command
keeps its line, and the connection shown as it is (the login-timeout case); pure tests of
``notices.py`` and ``ChatClient.state``."""
from __future__ import annotations

import queue
import time

import pytest

from chat.client import ChatClient
from chat.tui.notices import (
    drop_stale_events,
    notice_height,
    notice_rows,
    status_text,
)
from chat.tui.panes import compute_layout
from chat.tui.text import text_width
from tests.support import RawConn, ServerProcess

LONG_NOTICE = "No conversation open: /msg USER TEXT, Alt-1…9, or F2 to pick a user."


def screen_words(term) -> str:
    """The screen's rows joined by spaces: a notice wrapped over rows reads as one line."""
    return " ".join(row.strip() for row in term.screen.display)


# ---------------------------------------------------------------- in a pty

def test_at_53_columns_an_error_is_seen_whole_and_the_failed_line_is_kept(chat_server,
                                                                          terminals):
    setup = RawConn(chat_server.address)
    for name in ("alice", "bob", "carol", "dave"):
        setup.ok("signup", username=name, password="password1")
    setup.close()
    for name in ("bob", "carol", "dave"):          # activity fills the status bar
        conn = RawConn(chat_server.address)
        conn.login(name, signup=False)
        conn.ok("send", to="alice", text=f"hi from {name}")
        conn.close()
    alice = terminals(chat_server.address[1], "--user", "alice", rows=24, cols=53,
                      env_extra={"CHAT_PASSWORD": "password1"})
    alice.wait_for("alice · connected", "Act:")
    alice.line("/msg zed hello")
    screen = alice.wait_for("No user 'zed'.")
    assert "> /msg zed hello" in screen                   # the failed line is kept
    alice.child.send("\x15")                               # Ctrl-U: clear it
    alice.line("hello nobody")
    deadline = time.monotonic() + 10
    while LONG_NOTICE not in screen_words(alice):
        assert time.monotonic() < deadline, f"the long notice was cut:\n{alice.text()}"
        alice.pump()
    assert "Act:" in alice.screen.display[-1]             # the activity line is still there


def test_after_the_server_closed_the_idle_login_screen_logging_in_shows_connected(
        tmp_path, terminals):
    server = ServerProcess(tmp_path / "db", 0, "--login-timeout", "1")
    try:
        setup = RawConn(server.address)
        setup.ok("signup", username="bob", password="password1")
        setup.close()
        alice = terminals(server.address[1])
        alice.wait_for("Log in to")
        time.sleep(2.5)                                    # the server gives up on us
        alice.key("ctrl-n")
        alice.wait_for("Sign up for")
        alice.line("alice")
        alice.line("password1")
        alice.line("password1")
        alice.wait_for("alice @ 127.0.0.1")
        alice.pump(0.5)
        status = alice.screen.display[-1]
        assert "connected" in status and "disconnected" not in status, status
        alice.line("/msg bob still here")
        alice.wait_for("Sent to bob.")
        alice.pump(1.5)
        status = alice.screen.display[-1]
        assert "· connected" in status and "disconnected" not in status, status
    finally:
        server.terminate()


# ---------------------------------------------------------------- pure

@pytest.mark.parametrize("width", [40, 53, 80, 120])
def test_a_notice_is_never_cut_to_nothing(width):
    rows = notice_rows("No user 'zed'.", width)
    assert rows == [" No user 'zed'."]
    long = notice_rows(LONG_NOTICE * 8, width)
    assert 1 <= len(long) <= 3 and all(text_width(r) <= width for r in long)
    assert long[-1].endswith("…")


def test_a_long_notice_wraps_and_reads_whole():
    rows = notice_rows(LONG_NOTICE, 40)
    assert len(rows) == 2
    assert " ".join(r.strip() for r in rows) == LONG_NOTICE


def test_the_notice_keeps_to_one_row_on_a_short_screen():
    assert notice_height(LONG_NOTICE, 12, 40) == 1
    assert notice_height(LONG_NOTICE, 24, 40) == 2
    layout = compute_layout(24, 80, 2)
    assert layout.notice.y == 20 and layout.notice.h == 2
    assert layout.messages.h == 20 and layout.input.y == 22 and layout.status.y == 23


def test_the_status_bar_shrinks_with_the_width():
    wide = status_text("alice", "127.0.0.1:5050", "connected", "Act: 1:bob(2)", 120)
    assert wide.startswith(" alice @ 127.0.0.1:5050 · connected │ Act: 1:bob(2)")
    assert "F10 menu" in wide
    narrow = status_text("alice", "127.0.0.1:5050", "connected", "Act: 1:bob(2)", 40)
    assert narrow == " alice · connected │ Act: 1:bob(2)"
    tiny = status_text("alice", "x:1", "reconnecting…", "Act: " + "1:bob(2) " * 10, 40)
    assert tiny.startswith(" alice · reconnecting…") and text_width(tiny) <= 40


def test_connection_news_from_the_login_screen_is_dropped():
    events: "queue.Queue[dict]" = queue.Queue()
    for ev in ({"event": "error", "message": "log in within 1 seconds"},
               {"event": "connection", "state": "disconnected"},
               {"event": "presence", "username": "bob", "online": True},
               {"event": "connection", "state": "connected"}):
        events.put(ev)
    drop_stale_events(events)
    assert [events.get_nowait()["event"]] == ["presence"] and events.empty()


def test_the_client_state_is_the_real_one(chat_server):
    client = ChatClient(*chat_server.address, timeout=2.0)
    assert client.state == "disconnected"
    client.connect()
    assert client.state == "connected"
    client.close()
    assert client.state == "closed"
