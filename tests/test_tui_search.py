"""Search (Ctrl-R, /search): the search box, result lines, the debounced requests, and a
jump to the message in its conversation; pure, against a fake client, and in a pty."""
from __future__ import annotations

import time

import pytest

from chat.protocol import Message
from chat.tui.commands import COMMANDS, KEY_HELP, parse_command
from chat.tui.search import SEARCHED, SearchBox, result_line, short_date
from tests.test_tui_scrollback import TUESDAY, PagingClient, fake_app, msg


def test_the_box_keeps_only_the_answer_to_the_query_as_it_is_now():
    box = SearchBox()
    assert box.edit("lun") is True
    first = box.generation
    box.edit("lunch")
    assert box.apply(first, [msg(1)], False) is False        # typing went on: dropped
    assert box.apply(box.generation, [msg(1), msg(9)], True) is True
    assert [m.id for m in box.results] == [9, 1]            # newest first
    assert "2+ found" in box.note
    box.move(5)
    assert box.chosen().id == 1
    assert box.edit("   ") is False and box.results == []


def test_a_result_line_has_conversation_date_author_and_text():
    line = result_line(Message(1, "bob", "#team", "lunch\nat noon", TUESDAY + 3600, None),
                       "alice", 80, now=TUESDAY)
    assert line.startswith("#team        24 Nov 11:00  bob: lunch at noon")
    dm = result_line(msg(2, "alice", "carol", text="x"), "alice", 20)
    assert dm.startswith("carol") and len(dm) <= 20
    assert short_date(TUESDAY, now=TUESDAY + 400 * 86400) == "24 Nov 2026"


def test_search_is_a_command_and_ctrl_r_is_in_the_help():
    assert parse_command("/search lunch at noon").text == "lunch at noon"
    assert "search" in COMMANDS
    assert any(key == "Ctrl-R" for key, _ in KEY_HELP)


def test_typing_searches_and_enter_jumps_to_a_message_not_loaded():
    app = fake_app(400)
    app.client.all[4] = msg(5, text="the needle")
    app.search_debounce = 0
    app.open(None)
    app.handle(18)                                           # Ctrl-R
    assert app.state.search is not None
    app.handle("needle")                                     # typed as one burst
    app.drain_events()
    assert [m.id for m in app.state.search.results] == [5]
    app.handle(13)
    app.drain_events()
    state = app.state
    assert state.search is None and state.peer == "bob" and state.selected_message == 5
    ids = [m.id for m in state.visible_messages()]
    assert 5 in ids and ids == list(range(ids[0], 401))      # one run up to the newest
    assert state.view.reveal                                 # brought into view when drawn


def test_slash_search_opens_the_box_with_results_and_esc_closes_it():
    app = fake_app(30)
    app.search_debounce = 0
    app.line.set("/search m2")
    app.run_line()
    app.drain_events()
    assert len(app.state.search.results) == 11                # m2, m20 … m29
    app.handle(27)
    assert app.state.search is None
    assert SEARCHED == "tui.searched"


def test_a_search_failure_is_said_in_the_box():
    app = fake_app(3)
    app.search_debounce = 0

    def refuse(*args, **kwargs):
        raise ConnectionError("not connected")
    app.client.search = refuse
    app.open_search("x")
    app.drain_events()
    assert "Search failed: not connected" in app.state.search.note
    assert isinstance(app.client, PagingClient)


# ---------------------------------------------------------------- the real client in a pty

pytest.importorskip("pexpect")
pytest.importorskip("pyte")

from tests.support import RawConn  # noqa: E402
from tests.test_tui_rooms import logged_in, signed_up  # noqa: E402
from tests.test_tui_scrollback import press, send_many  # noqa: E402

CTRL_R = "\x12"


def test_pty_ctrl_r_finds_a_message_in_another_conversation_and_enter_opens_it(
        chat_server, terminals):
    signed_up(chat_server, "alice", "carol")
    send_many(chat_server, "carol", "alice", ["the secret recipe is basil"])
    send_many(chat_server, "carol", "alice", [f"later {i:03} " + "é" * 50 for i in range(400)])
    setup = RawConn(chat_server.address)
    setup.login("alice", signup=False)
    setup.ok("room_create", room="#team")
    setup.ok("send", to="#team", text="room chatter")
    setup.close()
    alice = logged_in(chat_server, terminals, "alice")
    press(alice, "alt-1")
    alice.wait_for("#team", "room chatter")
    alice.type(CTRL_R)
    alice.wait_for("Search all conversations")
    alice.type("secret rec")
    screen = alice.wait_for("1 found", "the secret recipe is basil")
    result = next(row for row in screen.splitlines() if "the secret recipe" in row)
    assert "carol" in result and "carol: the secret recipe is basil" in result
    alice.key("enter")
    screen = alice.wait_for("Messages with carol", "the secret recipe is basil")
    assert "Search all conversations" not in screen
    time.sleep(0.3)
    alice.pump()
    y = next(i for i, row in enumerate(alice.screen.display) if "the secret recipe" in row)
    assert alice.screen.buffer[y][30].reverse                  # selected
