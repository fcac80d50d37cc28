"""Tab completion: names (users and #rooms) and /commands, cycling on repeated Tab, back with
Shift-Tab, ``name: `` at the start of the line. Pure, plus the app's Tab and Shift-Tab."""
from __future__ import annotations

import curses
import queue

import pytest

from chat.tui import app as tui_app
from chat.tui.commands import COMMANDS
from chat.tui.editing import completion_choices
from chat.tui.state import InputLine

NAMES = ["alice", "Albert", "bob", "#alpha", "#team", "al-x"]


def tabs(text: str, count: int, step: int = 1, names=NAMES) -> list:
    line = InputLine()
    line.insert(text)
    seen = []
    for _ in range(count):
        line.complete(names, step)
        seen.append(line.text)
    return seen


def test_repeated_tab_cycles_through_the_matches_in_order_and_wraps():
    assert tabs("hi al", 5) == ["hi al-x ", "hi Albert ", "hi alice ", "hi al-x ",
                                "hi Albert "]


def test_shift_tab_goes_back_and_starts_from_the_last_match():
    assert tabs("hi al", 2, step=-1) == ["hi alice ", "hi Albert "]
    line = InputLine()
    line.insert("hi al")
    line.complete(NAMES)
    line.complete(NAMES)
    line.complete(NAMES, -1)
    assert line.text == "hi al-x "


def test_at_the_start_of_the_line_a_name_completes_as_an_address():
    assert tabs("bo", 1) == ["bob: "]
    assert tabs("#te", 1) == ["#team "]             # a room is not someone to address


def test_rooms_complete_after_a_hash_and_never_for_a_bare_word():
    assert tabs("join us in #a", 1) == ["join us in #alpha "]
    assert tabs("te", 1) == ["te"]


def test_mentions_complete_with_the_at_sign_kept():
    assert tabs("thanks @bo", 1) == ["thanks @bob "]
    assert tabs("@ALI", 1) == ["@alice "]


def test_commands_complete_at_the_start_of_the_line_only():
    assert tabs("/he", 1) == ["/help "]
    assert tabs("/lo", 1) == ["/logout "]
    assert tabs("see /he", 1) == ["see /he"]
    cycle = tabs("/", 1)
    assert cycle == ["/"]                           # a lone slash: nothing to go on
    choices = completion_choices("/m", 2, NAMES, COMMANDS)
    assert choices == (0, sorted(f"/{c} " for c in COMMANDS if c.startswith("m")))
    assert "/msg " in choices[1]


def test_a_command_then_a_name_and_case_is_ignored():
    assert tabs("/msg AL", 2) == ["/msg al-x ", "/msg Albert "]
    assert tabs("/open #T", 1) == ["/open #team "]


def test_nothing_matches_nothing_changes():
    line = InputLine()
    line.insert("hi zed")
    assert line.complete(NAMES) is False and line.text == "hi zed"
    assert InputLine().complete(NAMES) is False


def test_completion_in_the_middle_of_the_line_keeps_the_rest():
    line = InputLine()
    line.insert("hi al, how are you")
    line.cursor = 5
    line.complete(NAMES)
    assert line.text == "hi al-x, how are you"
    line = InputLine()
    line.insert("hi al you")
    line.cursor = 5
    line.complete(NAMES)                            # a space follows: none added
    assert line.text == "hi al-x you" and line.cursor == 7
    line.complete(NAMES)
    assert line.text == "hi Albert you"


def test_an_edit_between_tabs_starts_a_new_completion():
    line = InputLine()
    line.insert("al")
    line.complete(NAMES)
    assert line.text == "al-x: "
    assert line.completing()
    line.backspace()
    line.backspace()
    line.backspace()
    assert not line.completing() and line.text == "al-"
    line.complete(NAMES)
    assert line.text == "al-x: "


def test_duplicate_names_in_another_case_complete_once():
    assert tabs("x b", 2, names=["bob", "Bob", "bert"]) == ["x bert ", "x bob "]


class FakeClient:
    username = "carol"

    def __init__(self) -> None:
        self.events: "queue.Queue[dict]" = queue.Queue()


@pytest.fixture
def app():
    app = tui_app.ChatApp(None, FakeClient(), "test:1", beep=False)
    app.state.set_users([("alice", True, 0), ("albert", False, 0), ("bob", True, 0)])
    return app


def test_the_app_tab_cycles_and_shift_tab_steps_back_in_the_input_line(app):
    app.handle("al")
    app.handle(9)
    assert app.line.text == "albert: "
    app.handle(9)
    assert app.line.text == "alice: "
    app.handle(curses.KEY_BTAB)
    assert app.line.text == "albert: " and app.state.focus == "input"


def test_the_app_tab_on_an_empty_line_and_shift_tab_outside_a_cycle_move_the_focus(app):
    app.handle(9)
    assert app.state.focus != "input"
    app.state.focus = "input"
    app.handle("zz")
    app.handle(9)
    assert app.line.text == "zz" and "Nothing to complete" in app.state.status
    app.handle(curses.KEY_BTAB)
    assert app.state.focus != "input"
