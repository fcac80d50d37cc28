"""Readline keys in the input line: words by grapheme cluster, kills, Alt-Enter, and the keys
as the decoder and the app see them. Pure: no terminal (the pty tests are in
test_tui_keys_pty.py)."""
from __future__ import annotations

import curses
import queue

import pytest

from chat.tui import app as tui_app
from chat.tui.editing import is_big_word, shown, word_end, word_start
from chat.tui.keys import (
    ALT_LEFT,
    CTRL_DELETE,
    CTRL_LEFT,
    CTRL_RIGHT,
    InputDecoder,
    named_key,
)
from chat.tui.state import InputLine

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"      # one cluster: 👨‍👩‍👧
E_ACUTE = "e\u0301"                                         # é as e + combining acute
FLAG = "\U0001F1EB\U0001F1F7"                               # 🇫🇷


def line_with(text: str, cursor: int = -1) -> InputLine:
    line = InputLine()
    line.insert(text)
    line.cursor = len(text) if cursor < 0 else cursor
    return line


def stops(text: str, move: str) -> list:
    """The text after the cursor at each stop of repeated word moves, from the end (left) or
    the start (right)."""
    line = line_with(text, -1 if move == "word_left" else 0)
    seen = []
    for _ in range(10):
        before = line.cursor
        getattr(line, move)()
        if line.cursor == before:
            break
        seen.append(line.text[line.cursor:] if move == "word_left" else line.text[:line.cursor])
    return seen


# ---------------------------------------------------------------- words

def test_word_moves_over_ascii_stop_at_punctuation():
    assert stops("git commit -m 'fix it'", "word_left") == [
        "it'", "fix it'", "m 'fix it'", "commit -m 'fix it'", "git commit -m 'fix it'"]
    assert stops("foo.bar baz", "word_right") == ["foo", "foo.bar", "foo.bar baz"]


def test_word_moves_keep_accents_and_combining_marks_in_the_word():
    text = f"caf{E_ACUTE} déjà-vu"
    assert stops(text, "word_left") == ["vu", "déjà-vu", text]
    assert stops(text, "word_right") == [f"caf{E_ACUTE}", f"caf{E_ACUTE} déjà",
                                         text]


def test_word_moves_over_cjk_and_kana():
    text = "東京タワー、大阪 ok"
    assert stops(text, "word_left") == ["ok", "大阪 ok", text]


def test_emoji_are_not_words_and_are_never_split():
    text = f"hi {FAMILY}{FLAG} there"
    left = stops(text, "word_left")
    assert left == ["there", text]
    line = line_with(text)
    line.word_left()
    line.kill_word_back()            # the emoji and the space go, the family whole
    assert line.text == "there" and line.cursor == 0
    line = line_with(f"{FAMILY}x{FAMILY}", 0)
    line.word_right()
    assert line.text[:line.cursor] == f"{FAMILY}x"        # never inside the family


def test_persian_zwnj_stays_inside_its_word():
    word = "می\u200cخواهم"
    line = line_with(f"من {word}")
    line.word_left()
    assert line.text[line.cursor:] == word


def test_word_helpers_from_the_middle_of_a_word():
    text = "alpha beta"
    assert word_start(text, 8) == 6 and word_end(text, 8) == 10
    assert word_start(text, 0) == 0 and word_end(text, 10) == 10
    assert word_start("a.b c.d", 7, is_big_word) == 4


# ---------------------------------------------------------------- kills

def test_ctrl_w_deletes_back_to_whitespace_alt_backspace_to_punctuation():
    line = line_with("see http://x.org/a  ")
    line.kill_big_word_back()
    assert line.text == "see "
    line = line_with("see http://x.org/a")
    line.kill_word_back()
    assert line.text == "see http://x.org/"
    line.kill_word_back()
    assert line.text == "see http://x."
    line = line_with("foo, bar!")
    line.kill_big_word_back()
    assert line.text == "foo, "
    line.kill_big_word_back()
    assert line.text == ""


def test_ctrl_k_ctrl_u_alt_d_and_ctrl_y_puts_back_the_last_kill():
    line = line_with("hello brave new world", 6)
    line.kill_to_end()
    assert (line.text, line.cursor) == ("hello ", 6)
    line.yank()
    assert line.text == "hello brave new world"
    line.cursor = 6
    line.kill_word()
    assert line.text == "hello  new world" and line.killed == "brave"
    line.kill_to_start()
    assert (line.text, line.cursor) == (" new world", 0)
    line.kill_to_start()                  # nothing before the cursor: the kill is kept
    line.yank()
    assert line.text == "hello  new world"


def test_kills_take_whole_clusters():
    line = line_with(f"x {E_ACUTE}{FAMILY}")
    line.kill_big_word_back()
    assert line.text == "x "
    line = line_with(f"ok {FAMILY}")
    line.kill_word_back()                # the family is not a word: it goes with "ok"
    assert line.text == ""


def test_alt_enter_newline_is_shown_as_a_mark_and_kept_in_the_text():
    line = line_with("first")
    line.newline()
    line.insert("second")
    assert line.text == "first\nsecond"
    assert line.shown() == "first⏎second" and len(line.shown()) == len(line.text)
    assert shown("plain") == "plain"
    assert line.take() == "first\nsecond"
    line.newline()
    line.insert("after a stray Alt-Enter")
    line.newline()
    assert line.take() == "after a stray Alt-Enter"     # no empty lines at its ends


# ---------------------------------------------------------------- keys

def test_the_decoder_names_ctrl_arrows_that_curses_left_as_sequences():
    decoder = InputDecoder()
    keys = [27, "[", "1", ";", "5", "D", "x", 27, "[", "1", ";", "5", "C", 27, "O", "d",
            27, "[", "1", ";", "3", "D", 27, "[", "3", ";", "5", "~"]
    assert decoder.feed(keys, 0.0) == [CTRL_LEFT, "x", CTRL_RIGHT, CTRL_LEFT, ALT_LEFT,
                                       CTRL_DELETE]


def test_the_decoder_still_gives_esc_and_alt_letters_and_other_sequences():
    decoder = InputDecoder()
    assert decoder.feed([27, "b"], 0.0) == [27, "b"]
    assert decoder.feed([27, "[", "1", ";", "9", "Q"], 1.0) == [27, "[", "1", ";", "9", "Q"]
    assert decoder.feed([27], 2.0) == []
    assert decoder.idle(2.1) == [27]


def test_curses_key_codes_not_named_by_us_pass_through():
    assert named_key(curses.KEY_LEFT) == curses.KEY_LEFT


class FakeClient:
    username = "alice"

    def __init__(self) -> None:
        self.events: "queue.Queue[dict]" = queue.Queue()


@pytest.fixture
def app():
    return tui_app.ChatApp(None, FakeClient(), "test:1", beep=False)


def press(app, *keys) -> None:
    for key in keys:
        app.handle(key)


def test_app_keys_edit_the_line(app):
    press(app, "hello brave world")
    press(app, 27, "b", 27, "b")                 # Alt-b twice
    assert app.line.text[app.line.cursor:] == "brave world"
    press(app, 27, "f", "r")                     # Alt-f, then typing
    assert app.line.text == "hello braver world"
    press(app, tui_app.CTRL["e"], 23)            # Ctrl-E, Ctrl-W
    assert app.line.text == "hello braver "
    press(app, CTRL_LEFT, 11)                    # Ctrl-←, Ctrl-K
    assert app.line.text == "hello "
    press(app, 27, 127)                          # Alt-Backspace
    assert app.line.text == ""


def test_alt_enter_inserts_a_newline_and_enter_alone_still_sends(app):
    press(app, "one", 27, 13, "two")
    assert app.line.text == "one\ntwo" and app.line.pending is None


def test_alt_edit_keys_reach_the_input_line_from_another_pane(app):
    press(app, "abc def")
    app.state.focus = "conversations"
    press(app, 27, "b")
    assert app.state.focus == "input" and app.line.text[app.line.cursor:] == "def"


def test_a_stale_esc_is_no_alt_prefix(app, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(tui_app.time, "monotonic", lambda: clock[0])
    press(app, "abc def", 27)
    clock[0] += tui_app.ESC_PREFIX_SECONDS + 0.5
    press(app, "b")
    assert app.line.text == "abc defb"
