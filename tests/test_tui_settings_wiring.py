"""The settings file wired in: /mute kept across a restart of the client, the last user
remembered, --no-beep not saved; the bell focus-aware (ESC[?1004h, ESC[I / ESC[O). Each
test's settings live in its own XDG_CONFIG_HOME (conftest ``settings_home``)."""
from __future__ import annotations

import argparse
import json
import time

from chat.tui import settings as st
from chat.tui.bell import ESC, FocusFilter, should_ring
from chat.tui.preferences import Preferences
from tests.support import RawConn

FOCUS_IN, FOCUS_OUT = "\x1b[I", "\x1b[O"


def signed_up(server, *names: str) -> None:
    conn = RawConn(server.address)
    for name in names:
        conn.ok("signup", username=name, password="password1")
    conn.close()


def alice_client(server, terminals, *args: str, beep: bool = True):
    term = terminals(server.address[1], "--user", "alice", *args, beep=beep,
                     env_extra={"CHAT_PASSWORD": "password1"})
    term.wait_for("alice @ 127.0.0.1")
    return term


def bells_after(term, wait: float) -> int:
    term.pump(wait)
    return term.raw.count(b"\x07")


# ---------------------------------------------------------------- in a pty

def test_mute_stops_the_bell_and_survives_a_restart_of_the_client(chat_server, terminals,
                                                                   settings_home):
    signed_up(chat_server, "alice", "bob")
    bob = RawConn(chat_server.address)
    bob.login("bob", signup=False)
    alice = alice_client(chat_server, terminals)
    alice.line("/mute bob")
    alice.wait_for("bob muted")
    bob.ok("send", to="alice", text="first, muted")
    alice.wait_for("first, muted")
    assert bells_after(alice, 1.0) == 0
    saved = json.loads((settings_home / "parallel-chat" / "settings.json").read_text())
    assert saved["muted"] == ["bob"] and saved["last_user"] == "alice"
    alice.close()

    again = alice_client(chat_server, terminals)
    bob.ok("send", to="alice", text="second, still muted")
    again.wait_for("second, still muted")
    assert bells_after(again, 1.0) == 0
    again.line("/unmute bob")
    again.wait_for("bob unmuted")
    bob.ok("send", to="alice", text="third, rings")
    again.wait_for("third, rings")
    assert bells_after(again, 2.0) >= 1
    bob.close()


def test_the_last_user_is_the_default_and_no_beep_is_not_saved(chat_server, terminals,
                                                               settings_home):
    signed_up(chat_server, "alice")
    first = alice_client(chat_server, terminals, beep=False)       # with --no-beep
    first.close()
    saved = json.loads((settings_home / "parallel-chat" / "settings.json").read_text())
    assert saved["beep"] is True and saved["last_user"] == "alice"
    login = terminals(chat_server.address[1])                      # no --user
    screen = login.wait_for("Log in to")
    assert "Username:  alice" in screen
    login.line("password1")                                        # the cursor is on it
    login.wait_for("alice @ 127.0.0.1")


def test_no_bell_for_the_open_conversation_in_a_focused_terminal(chat_server, terminals):
    signed_up(chat_server, "alice", "bob")
    bob = RawConn(chat_server.address)
    bob.login("bob", signup=False)
    alice = alice_client(chat_server, terminals)
    alice.line("/open bob")
    alice.wait_for("Messages with bob")
    alice.child.send(FOCUS_IN)
    alice.pump(0.3)
    bob.ok("send", to="alice", text="you are looking at this")
    screen = alice.wait_for("you are looking at this")
    assert "[I" not in screen                                      # not typed as text
    assert bells_after(alice, 1.0) == 0
    alice.child.send(FOCUS_OUT)
    alice.pump(0.3)
    bob.ok("send", to="alice", text="you looked away")
    alice.wait_for("you looked away")
    assert bells_after(alice, 2.0) == 1
    assert "[O" not in alice.text()
    assert b"\x1b[?1004h" in alice.raw                             # focus reports asked for
    alice.line("/quit")
    alice.wait_for("Quit parallel-chat?")
    alice.type("y")
    deadline = time.monotonic() + 10
    while b"\x1b[?1004l" not in alice.raw:
        assert time.monotonic() < deadline, "focus reports were not turned off on exit"
        alice.pump()
    bob.close()


# ---------------------------------------------------------------- pure

def test_should_ring():
    assert should_ring(True, True, False, False, None)
    assert should_ring(True, True, False, True, None)          # focus unknown: as before
    assert should_ring(True, True, False, True, False)         # looking away
    assert not should_ring(True, True, False, True, True)      # looking at it
    assert should_ring(True, True, False, False, True)         # another conversation
    assert not should_ring(True, True, True, False, None)      # muted
    assert not should_ring(True, False, False, False, None)    # beep off
    assert not should_ring(False, True, False, False, None)    # a plain room message


def test_the_focus_filter_takes_out_reports_and_keeps_keys():
    focus = FocusFilter()
    assert focus.take([ESC, "[", "I", "a"]) == ["a"] and focus.focused is True
    assert focus.take(["x", ESC, "[O", "y"]) == ["x", "y"] and focus.focused is False
    assert focus.take([ESC, "[Ihello"]) == ["hello"] and focus.focused is True
    assert focus.take([ESC, "1"]) == [ESC, "1"]                # Alt-1 stays Alt-1
    assert focus.take([ESC, "[", "A"]) == [ESC, "[", "A"]


def test_preferences_save_each_change_and_keep_no_beep_for_one_run(tmp_path):
    path = tmp_path / "settings.json"
    prefs = Preferences(path, no_beep=True)
    assert prefs.beep is False and prefs.warning is None
    assert prefs.mute("Bob") is None and prefs.is_muted("bob")
    assert prefs.remember_login("chat.example.org", 6000, "alice") is None
    loaded = st.load(path).settings
    assert loaded.beep is True and loaded.muted == {"bob"}
    assert (loaded.last_host, loaded.last_port, loaded.last_user) == (
        "chat.example.org", 6000, "alice")
    assert prefs.set_beep(False) is None and st.load(path).settings.beep is False
    assert prefs.mute("bob", False) is None and not st.load(path).settings.is_muted("bob")
    assert "cannot be muted" in prefs.mute("two words")


def test_a_damaged_settings_file_is_a_warning_and_a_failed_save_is_said(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    prefs = Preferences(path)
    assert prefs.warning and "damaged" in prefs.warning and prefs.beep is True
    folder = tmp_path / "read-only"
    folder.mkdir()
    blocked = Preferences(folder / "sub" / "settings.json")
    folder.chmod(0o500)
    try:
        problem = blocked.mute("bob")
    finally:
        folder.chmod(0o700)
    if problem is not None:                     # root may write anyway
        assert "could not save" in problem
    assert blocked.is_muted("bob")              # this run keeps it all the same


def test_the_last_server_is_the_default_only_when_none_is_given():
    from chat.tui.app import server_defaults
    saved = st.Settings(last_host="chat.example.org", last_port=6000, last_user="alice")
    args = argparse.Namespace(host=None, port=None)
    server_defaults(args, saved)
    assert (args.host, args.port) == ("chat.example.org", 6000)
    args = argparse.Namespace(host=None, port=7000)
    server_defaults(args, saved)
    assert (args.host, args.port) == ("127.0.0.1", 7000)
    args = argparse.Namespace(host=None, port=None)
    server_defaults(args, st.Settings())
    assert (args.host, args.port) == ("127.0.0.1", 5050)
