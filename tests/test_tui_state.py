"""The client's screen logic without a terminal: state on events, keys, commands, layout."""
from __future__ import annotations

import pytest

from chat.protocol import Message
from chat.tui.panes import MIN_HEIGHT, MIN_WIDTH, compute_layout, message_rows
from chat.tui.state import ChatState, CommandError, InputLine, parse_command


def msg(i, sender, to, text="hi", reply_to=None):
    return Message(i, sender, to, text, 1764000000.0 + i, reply_to)


@pytest.fixture
def state():
    s = ChatState("alice", "127.0.0.1:5050")
    s.set_users([("alice", True, 0), ("Bob", True, 0), ("carol", False, 2)])
    return s


def test_parse_commands():
    assert parse_command("/msg bob hello there").args == ["bob"]
    assert parse_command("/msg bob hello there").text == "hello there"
    assert parse_command("/reply ok!").text == "ok!"
    assert parse_command("just text").name == "say"
    assert parse_command("//not a command").text == "/not a command"
    assert parse_command("/USERS").name == "users"
    for bad in ("/msg", "/msg bob", "/reply", "/frobnicate"):
        with pytest.raises(CommandError):
            parse_command(bad)


def test_input_line_edits_like_a_shell_line():
    line = InputLine()
    line.insert("helo")
    line.left()
    line.insert("l")
    assert (line.text, line.cursor) == ("hello", 4)
    line.home()
    line.delete()
    line.end()
    line.backspace()
    assert line.text == "ell"
    assert line.take() == "ell" and line.text == ""
    line.insert("second")
    line.take()
    line.insert("draft")
    line.history_prev()
    assert line.text == "second"
    line.history_prev()
    assert line.text == "ell"
    line.history_next()
    line.history_next()
    assert line.text == "draft"


def test_tab_completes_user_names():
    line = InputLine()
    line.insert("/msg ca")
    line.complete(["alice", "Bob", "carol"])
    assert line.text == "/msg carol "
    line.kill_line()
    line.insert("/msg x")
    line.complete(["alice"])
    assert line.text == "/msg x"


def test_message_from_someone_else_counts_unread_and_beeps(state):
    assert state.on_message(msg(1, "Bob", "alice")) is True
    assert state.convs.get("bob").unread == 1
    assert state.on_message(msg(1, "Bob", "alice")) is False  # the same message again
    assert state.on_message(msg(2, "alice", "Bob")) is False  # my own: no beep
    state.open_conversation("bob")
    assert state.peer == "Bob" and state.convs.get("bob").unread == 0
    assert state.on_message(msg(3, "Bob", "alice")) is True
    assert state.convs.get("bob").unread == 0  # on screen: not unread
    assert state.unread_to_mark() == ("Bob", 3)


def test_views_filter_the_open_conversation(state):
    state.add_messages([msg(1, "Bob", "alice"), msg(2, "carol", "alice"), msg(3, "alice", "Bob")])
    assert [m.id for m in state.visible_messages()] == [1, 2, 3]
    state.open_conversation("BOB")
    assert [m.id for m in state.visible_messages()] == [1, 3]
    assert state.reply_target().id == 1  # the last one received
    state.focus = "messages"
    state.move(-1)
    assert state.selected_message == 3
    state.move(-1)
    assert state.reply_target().id == 1


def test_presence_and_signup_events(state):
    state.on_presence("carol", True)
    assert state.online_names() == ["alice", "Bob", "carol"]
    state.on_presence("Bob", False)
    assert state.online_names() == ["alice", "carol"]
    state.on_signup("dave")
    assert "dave" in state.user_names()


def test_focus_cycles(state):
    seen = []
    for _ in range(3):
        state.cycle_focus()
        seen.append(state.focus)
    assert seen == ["conversations", "messages", "input"]


@pytest.mark.parametrize("h, w", [(MIN_HEIGHT, MIN_WIDTH), (24, 80), (50, 200), (10, 41)])
def test_layout_fits_the_terminal(h, w):
    layout = compute_layout(h, w)
    assert layout is not None
    for rect in (layout.conversations, layout.messages, layout.input, layout.status):
        assert rect.y >= 0 and rect.x >= 0 and rect.h >= 1 and rect.w >= 1
        assert rect.y + rect.h <= h and rect.x + rect.w <= w
    # the whole height above the notice line: no Users/Online halves
    assert layout.conversations.h == h - 2 - layout.notice.h
    assert layout.notice.y + layout.notice.h == layout.input.y


@pytest.mark.parametrize("h, w", [(MIN_HEIGHT - 1, 80), (24, MIN_WIDTH - 1), (1, 1)])
def test_layout_refuses_a_tiny_terminal(h, w):
    assert compute_layout(h, w) is None


def test_message_rows_wrap_and_show_replies(state):
    state.add_messages([msg(1, "Bob", "alice", "question?\nsecond line"),
                        msg(2, "alice", "Bob", "a " * 30, reply_to=1)])
    state.open_conversation("Bob")
    rows = message_rows(state, 20)
    texts = [r[0] for r in rows]
    assert all(len(t) <= 20 for t in texts)
    assert texts[1:3] == ["  question?", "  second line"]
    assert any(t.startswith("  ↪ reply to Bob") for t in texts)
    assert sum(1 for r in rows if r[2] == 2 and r[1] == "text") >= 3
