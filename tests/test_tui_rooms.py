"""The real chat-client in a pty: the conversations list, the activity line, Alt-digits,
rooms, mentions and the bell, confirmations, and unread counts across two sessions."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("pexpect")
pytest.importorskip("pyte")

from tests.support import RawConn  # noqa: E402
from tests.test_tui_e2e import KEYS  # noqa: E402

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"


def signed_up(server, *names: str) -> None:
    conn = RawConn(server.address)
    for name in names:
        conn.ok("signup", username=name, password="password1")
    conn.close()


def logged_in(server, terminals, name: str, **kwargs):
    """``name``'s client (signed up already), on its main screen."""
    term = terminals(server.address[1], "--user", name,
                     env_extra={"CHAT_PASSWORD": "password1"}, **kwargs)
    term.wait_for(f"{name} @ 127.0.0.1")
    return term


def press(term, name: str) -> None:
    term.child.send(KEYS[name])
    time.sleep(0.1)


def status_line(term) -> str:
    return term.screen.display[-1]


def wait_gone(term, needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while needle in term.text():
        assert time.monotonic() < deadline, f"{needle!r} still on the screen:\n{term.text()}"
        term.pump()


def rings(term, wait: float = 1.0) -> int:
    term.pump(wait)
    return term.raw.count(b"\x07")


def test_an_unread_dm_from_below_the_fold_shows_in_the_list_and_the_activity_line(
        chat_server, terminals):
    names = [f"user{i:02}" for i in range(21)]           # alice, 21 users and zed: 23
    signed_up(chat_server, "alice", *names)
    alice = logged_in(chat_server, terminals, "alice", rows=24, cols=80)
    zed = RawConn(chat_server.address)
    zed.login("zed")
    zed.ok("send", to="alice", text="are you there?")
    screen = alice.wait_for("zed (1)")
    assert "Act: 1:zed(1)" in status_line(alice)
    alice.type("x")                                        # the next key keeps it visible
    alice.pump(0.3)
    assert "Act: 1:zed(1)" in status_line(alice)
    assert screen.count("user0") == 0                       # no half-screen Users pane
    press(alice, "alt-a")
    alice.wait_for("Messages with zed", "are you there?")
    assert "Act:" not in status_line(alice)
    zed.close()


def test_the_users_directory_is_an_overlay_that_opens_a_conversation(chat_server, terminals):
    names = [f"user{i:02}" for i in range(21)]
    signed_up(chat_server, "alice", *names, "zed")
    alice = logged_in(chat_server, terminals, "alice", rows=24, cols=80)
    press(alice, "f2")
    alice.wait_for("Users (23)", "● alice (you)", "user00")
    press(alice, "pgdn")
    press(alice, "pgdn")
    alice.wait_for("zed")
    alice.key("enter")
    alice.wait_for("Messages with zed", " 1  zed")
    assert "Users (23)" not in alice.text()


def test_alt_digits_and_ctrl_n_p_move_between_conversations(chat_server, terminals):
    signed_up(chat_server, "alice", "bob", "carol")
    setup = RawConn(chat_server.address)
    setup.login("alice", signup=False)
    setup.ok("room_create", room="#team", topic="the team")
    setup.ok("send", to="bob", text="to bob")
    setup.ok("send", to="carol", text="to carol")
    setup.close()
    alice = logged_in(chat_server, terminals, "alice")
    alice.wait_for(" 1 #team", " 2 ", "bob", " 3 ", "carol")
    press(alice, "alt-3")
    alice.wait_for("Messages with carol", "to carol")
    press(alice, "alt-1")
    alice.wait_for("#team · 1 member · the team")
    press(alice, "ctrl-n")
    alice.wait_for("Messages with bob", "to bob")
    press(alice, "ctrl-p")
    alice.wait_for("#team · 1 member")


def test_create_join_and_talk_in_a_room(chat_server, terminals):
    signed_up(chat_server, "alice", "bob")
    alice = logged_in(chat_server, terminals, "alice")
    bob = logged_in(chat_server, terminals, "bob")
    alice.line("/create #team")
    alice.wait_for("#team · 1 member")
    alice.line("/topic lunch at noon")
    alice.wait_for("#team · 1 member · lunch at noon")
    bob.line("/join #team")
    bob.wait_for("#team · 2 members · lunch at noon")
    alice.wait_for("#team · 2 members")
    bob.line("hello team")
    alice.wait_for("hello team")
    alice.line("hi bob")
    bob.wait_for("hi bob", "hello team")
    bob.line("/part")
    bob.wait_for("You left #team")
    alice.wait_for("#team · 1 member")


def test_rooms_lists_public_rooms_and_enter_joins(chat_server, terminals):
    signed_up(chat_server, "alice", "bob")
    setup = RawConn(chat_server.address)
    setup.login("bob", signup=False)
    setup.ok("room_create", room="#general", topic="all things")
    setup.close()
    alice = logged_in(chat_server, terminals, "alice")
    alice.line("/rooms")
    alice.wait_for("#general (1) all things")
    alice.key("enter")
    alice.wait_for("#general · 2 members · all things")


def test_a_mention_rings_the_bell_and_a_plain_room_message_does_not(chat_server, terminals):
    signed_up(chat_server, "alice", "bob")
    bob = RawConn(chat_server.address)
    bob.login("bob", signup=False)
    bob.ok("room_create", room="#team")
    bob.ok("invite", room="#team", username="alice")
    alice = logged_in(chat_server, terminals, "alice", beep=True)
    alice.line("/join #team")
    alice.wait_for("#team · 2 members")
    press(alice, "f10")
    alice.wait_for("View my messages")
    alice.type("5")                                    # away from the room
    alice.wait_for("All my messages")
    before = rings(alice)
    bob.ok("send", to="#team", text="just chatting")
    alice.wait_for("Act: 1:#team(1)")
    assert rings(alice) == before, "a plain room message rang the bell"
    bob.ok("send", to="#team", text="@alice can you look?")
    alice.wait_for("Act: 1:#team(2,@)", "can you look?")
    assert rings(alice, 2.0) > before, "a mention did not ring the bell"
    bob.close()


@pytest.mark.parametrize("how", ["/quit", "ctrl-c", "/logout"])
def test_quitting_and_logging_out_ask_first(chat_server, terminals, how):
    signed_up(chat_server, "alice")
    alice = logged_in(chat_server, terminals, "alice")
    question = "Log out?" if how == "/logout" else "Quit parallel-chat?"
    ask = (lambda: alice.line(how)) if how.startswith("/") else (lambda: press(alice, how))
    ask()
    alice.wait_for(question, "y: yes")
    alice.type("n")
    alice.pump(0.3)
    assert not alice.client_ended() and question not in alice.text()
    ask()
    alice.wait_for(question)
    alice.type("y")
    if how == "/logout":
        alice.wait_for("Log in to")
    else:
        alice.wait_raw(b"\x1b[?1049l")


def test_reading_in_one_session_clears_the_count_in_the_other(chat_server, terminals):
    signed_up(chat_server, "alice", "carol")
    first = logged_in(chat_server, terminals, "alice")
    second = logged_in(chat_server, terminals, "alice")
    carol = RawConn(chat_server.address)
    carol.login("carol", signup=False)
    carol.ok("send", to="alice", text="one")
    carol.ok("send", to="alice", text="two")
    first.wait_for("carol (2)")
    second.wait_for("carol (2)")
    first.line("/open carol")
    first.wait_for("Messages with carol", "two")
    wait_gone(second, "carol (2)", timeout=1.5)        # within a second or so
    assert "Act:" not in status_line(second)
    carol.close()


def test_a_typed_zwj_emoji_is_sent_whole(chat_server, terminals):
    signed_up(chat_server, "alice", "bob")
    alice = logged_in(chat_server, terminals, "alice")
    bob = RawConn(chat_server.address)
    bob.login("bob", signup=False)
    alice.line("/open bob")
    alice.wait_for("Messages with bob")
    for ch in "x" + FAMILY:                              # typed, a key at a time
        alice.child.send(ch)
        time.sleep(0.05)
    alice.key("enter")
    alice.wait_raw(b"Sent to bob")   # pyte drops a write after a ZWJ: read the raw bytes
    assert [m["text"] for m in bob.all_history()] == ["x" + FAMILY]
    bob.close()


def test_help_names_the_new_commands(chat_server, terminals):
    signed_up(chat_server, "alice")
    alice = logged_in(chat_server, terminals, "alice", rows=40, cols=100)
    alice.line("/help")
    alice.wait_for("/open USER|#ROOM", "/logout", "/join #ROOM", "/rooms", "Alt-a")
    alice.key("esc")
    alice.line("/help part")
    alice.wait_for("/part [#ROOM]: leave the open room")
