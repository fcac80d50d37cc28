"""Terminal text: sanitising hostile strings, display width, wrapping, truncation."""
from __future__ import annotations

import pytest

import chat.tui.text as text_mod
from chat.tui.text import (
    char_width,
    pad,
    sanitize,
    sanitize_lines,
    text_width,
    truncate,
    window,
    wrap,
    wrap_text,
)

HOSTILE = [
    ("\x1b[2J", "^[[2J"),                      # clear screen
    ("\x1b]52;c;ZXZpbA==\x07", "^[]52;c;ZXZpbA==^G"),  # OSC 52: write the clipboard
    ("\x1b]0;title\x1b\\", "^[]0;title^[\\"),  # set the window title
    ("\x9b31m", "<9B>31m"),                    # 8-bit CSI
    ("\x9d0;x\x9c", "<9D>0;x<9C>"),            # 8-bit OSC / ST
    ("bell\x07", "bell^G"),
    ("nul\x00", "nul^@"),
    ("del\x7f", "del^?"),
    ("\u202eevil", "\ufffdevil"),              # right-to-left override
    ("a\u2066b\u2069", "a\ufffdb\ufffd"),      # bidi isolates
    ("zero\u200bwidth", "zero\ufffdwidth"),
    ("\ufeffbom", "\ufffdbom"),
    ("line\u2028sep", "line\ufffdsep"),
    ("lone \udc80", "lone \ufffd"),
    ("tab\there", "tab    here"),
    ("cr\rnl\n", "cr^Mnl^J"),
    ("plain ascii", "plain ascii"),
    ("日本語 🎉 é", "日本語 🎉 é"),
]


@pytest.mark.parametrize("raw, shown", HOSTILE)
def test_sanitize(raw, shown):
    out = sanitize(raw)
    assert out == shown
    assert all(ch >= " " and not 0x7F <= ord(ch) <= 0x9F for ch in out)


def test_sanitize_lines_lets_the_client_split():
    assert sanitize_lines("a\r\nb\rc\n\x1b") == ["a", "b", "c", "^["]


@pytest.mark.parametrize("text, width", [("abc", 3), ("日本", 4), ("🎉", 2), ("e\u0301", 1),
                                         ("", 0), ("a\u200db", 2)])
def test_width(text, width):
    assert text_width(text) == width


def test_char_width_of_combining_mark():
    assert char_width("\u0301") == 0


def test_truncate_and_pad_count_columns():
    assert truncate("hello world", 5) == "hell…"
    assert truncate("日本語テキスト", 5) == "日本…"
    assert text_width(truncate("日本語テキスト", 5)) <= 5
    assert truncate("short", 10) == "short"
    assert truncate("abc", 0) == ""
    assert pad("日本", 6) == "日本  "
    assert text_width(pad("日本語テキスト", 7)) == 7


def test_wrap_prefers_spaces_and_never_splits_wide_chars():
    assert wrap("the quick brown fox", 10) == ["the quick", "brown fox"]
    assert wrap("abcdefghij", 4) == ["abcd", "efgh", "ij"]
    rows = wrap("日本語のテキストです", 5)
    assert all(text_width(r) <= 5 for r in rows)
    assert "".join(rows) == "日本語のテキストです"


def test_wrap_text_keeps_newlines_and_sanitises():
    rows = wrap_text("first line\nsecond \x1b[31m", 40)
    assert rows == ["first line", "second ^[[31m"]
    long = wrap_text("x" * 100, 30)
    assert len(long) == 4 and all(len(r) <= 30 for r in long)


def _old_window(text: str, cursor: int, room: int):
    """The input pane's old loop (quadratic in the line, cubic over a paste): the reference."""
    start = 0
    while text_width(text[start:cursor]) >= room:
        start += 1
    return start


@pytest.mark.parametrize("text", ["a" * 300, "中" * 300, "ab中\tc" * 80, ""])
@pytest.mark.parametrize("room", [1, 5, 40])
def test_the_input_window_keeps_the_cursor_in_view(text, room):
    for cursor in range(0, len(text) + 1, 7):
        start, end, col = window(text, cursor, room)
        if "\t" not in text:
            assert start == _old_window(text, cursor, room)
        assert start <= cursor <= end and col < room
        assert text_width(text[start:end].replace("\t", "    ")) <= room


def test_the_input_window_costs_its_width_not_the_line_length(monkeypatch):
    calls = []
    real = text_mod.shown_width
    monkeypatch.setattr(text_mod, "shown_width", lambda ch: calls.append(ch) or real(ch))
    text = "中" * 100_000
    window(text, len(text), 80)
    window(text, 0, 80)
    assert len(calls) < 200
