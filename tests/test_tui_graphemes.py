"""Grapheme clusters in the client: kept as text, measured whole, never split.

Each scenario is checked through ``chat.tui.text`` (what the panes call), so that
it fails on the code-point-by-code-point text module this replaced, and through
``chat.tui.graphemes`` where the clusters themselves are the point.
"""
from __future__ import annotations

import pytest

import chat.tui.graphemes as graphemes
import chat.tui.text as text_mod
from chat.tui.graphemes import (
    cluster_width,
    clusters,
    next_boundary,
    previous_boundary,
    spans,
    spans_before,
)
from chat.tui.text import sanitize, text_width, truncate, window, wrap, wrap_text

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"        # 👨‍👩‍👧
FLAGS = "\U0001F1EB\U0001F1F7\U0001F1E9\U0001F1EA"             # 🇫🇷🇩🇪
HEART = "\u2764\ufe0f"                                         # ❤️ (text-default + VS16)
E_ACUTE = "e\u0301"                                            # é, decomposed
JAMO = "\u1100\u1161\u11a8"                                    # 각 as L V T jamo
PERSIAN = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # می‌خواهم, ZWNJ after ی
KSSA = "\u0915\u094d\u200d\u0937"                              # क्‍ष: virama, then ZWJ
NAMASTE = "\u0928\u092e\u0938\u094d\u0924\u0947"               # नमस्ते
THUMB = "\U0001F44D\U0001F3FD"                                 # 👍🏽 (skin tone)
EMOJI_LINE = (FAMILY + FLAGS + HEART + THUMB + E_ACUTE + JAMO) * 3


def boundaries(text: str) -> set:
    """Every index where a cluster starts or ends."""
    return {0} | {end for _, end in spans(text)}


def test_a_zwj_family_is_one_character_and_is_kept():
    assert list(clusters(FAMILY)) == [FAMILY]
    assert sanitize(FAMILY) == FAMILY                      # not 👨�👩�👧
    assert wrap_text(f"hi {FAMILY}!", 40) == [f"hi {FAMILY}!"]
    assert wrap(FAMILY * 2, 7) == [FAMILY, FAMILY]         # never the man alone on a row
    # Six columns: curses advances 2 + 0 + 2 + 0 + 2 for it (and ncurses 6.4 drops the
    # joiners after a wide emoji), so counting two spilled rows out of their pane.
    assert cluster_width(FAMILY) == text_width(FAMILY) == 6
    assert cluster_width(THUMB) == 4


def test_a_screen_that_joins_emoji_counts_a_family_as_two(monkeypatch):
    monkeypatch.setattr(graphemes, "JOINED_EMOJI_ARE_ONE_GLYPH", True)
    assert cluster_width(FAMILY) == text_width(FAMILY) == 2
    assert cluster_width(THUMB) == 2
    assert wrap(FAMILY * 3, 5) == [FAMILY * 2, FAMILY]
    assert truncate(FAMILY * 3, 5) == FAMILY * 2 + "…"


def test_regional_indicators_pair_into_flags():
    assert list(clusters(FLAGS)) == [FLAGS[:2], FLAGS[2:]]
    assert [cluster_width(c) for c in clusters(FLAGS)] == [2, 2]
    assert wrap(FLAGS, 3) == [FLAGS[:2], FLAGS[2:]]        # not half a flag per row
    assert truncate(FLAGS, 3) == FLAGS[:2] + "…"


def test_variation_selectors_choose_the_width_and_are_kept():
    assert list(clusters(HEART)) == [HEART]
    assert text_width(HEART) == 2                          # VS16: emoji style, wide
    assert text_width("\u2b50\ufe0f") == 2                 # ⭐️: wide already, VS16 adds nothing
    assert text_width("\u2764\ufe0e") == 1                 # VS15: text style stays narrow
    assert text_width("1\ufe0f\u20e3") == 2                # keycap 1️⃣
    ivs = "\u845b\U000E0100"                               # 葛 with an ideographic variation
    assert sanitize(HEART + ivs) == HEART + ivs
    assert text_width(ivs) == 2


def test_a_combining_mark_stays_with_its_letter():
    assert list(clusters(E_ACUTE + "x")) == [E_ACUTE, "x"]
    assert cluster_width(E_ACUTE) == 1
    assert cluster_width("\u0301") == 0                    # a mark alone takes no column
    line = E_ACUTE * 10
    for cursor in range(0, len(line) + 1, 2):
        for room in (1, 2, 3, 4, 7):
            start, end, _ = window(line, cursor, room)
            assert start % 2 == 0 and end % 2 == 0         # the window never opens on a mark


def test_hangul_jamo_make_one_syllable():
    assert list(clusters(JAMO)) == [JAMO]
    assert cluster_width(JAMO) == 2
    assert text_width(JAMO + "\ud55c") == 4                # jamo 각 and precomposed 한
    assert wrap(JAMO * 3, 4) == [JAMO * 2, JAMO]


def test_zwnj_in_persian_is_text():
    assert sanitize(PERSIAN) == PERSIAN
    assert wrap_text(PERSIAN, 80) == [PERSIAN]
    assert text_width(PERSIAN) == 7
    assert text_mod.is_text(PERSIAN)


def test_devanagari_keeps_its_virama_and_zwj():
    for word in (KSSA, NAMASTE, KSSA + " " + NAMASTE):
        assert sanitize(word) == word
        assert "".join(clusters(word)) == word
    assert list(clusters(KSSA)) == [KSSA[:3], KSSA[3]]     # क्‍ + ष: ZWJ joins only pictographs
    assert text_width(KSSA) == 2                            # as terminals draw it
    assert text_width("\u0915\u093e") == 2                 # का: a spacing mark takes a column
    assert truncate(NAMASTE, 3) == NAMASTE[:2] + "…"
    assert truncate(NAMASTE + "!", 4) == NAMASTE[:4] + "…"  # स् keeps its virama


def test_cjk_is_wide_and_a_variation_never_leaves_its_ideograph():
    assert text_width("日本語") == 6
    assert text_width("\uff21\uff22") == 4                 # fullwidth ＡＢ
    assert wrap("日本語", 5) == ["日本", "語"]
    ivs = "\u845b\U000E0100"
    assert wrap(ivs * 3, 4) == [ivs * 2, ivs]
    assert truncate(ivs * 3, 5) == ivs * 2 + "…"


@pytest.mark.parametrize("width", [7, 9, 11, 13, 15, 19])
def test_wrapping_emoji_at_odd_widths_never_splits_a_cluster(width):
    rows = wrap(EMOJI_LINE, width)
    assert "".join(rows) == EMOJI_LINE
    assert all(0 < text_width(row) <= width for row in rows)
    whole = [c for row in rows for c in clusters(row)]
    assert whole == list(clusters(EMOJI_LINE))
    spaced = wrap(" ".join([FAMILY, FLAGS, HEART, THUMB] * 4), width)
    assert all(text_width(row) <= width for row in spaced)
    assert all(set(clusters(row)) <= {FAMILY, FLAGS[:2], FLAGS[2:], HEART, THUMB, " "}
               for row in spaced)


def test_truncation_with_an_ellipsis_never_splits_a_cluster():
    cuts = boundaries(EMOJI_LINE)
    for width in range(1, text_width(EMOJI_LINE) + 2):
        out = truncate(EMOJI_LINE, width)
        assert text_width(out) <= width
        kept = out[:-1] if out.endswith("…") else out
        assert EMOJI_LINE.startswith(kept) and len(kept) in cuts
        kept = truncate(EMOJI_LINE, width, ellipsis="")
        assert text_width(kept) <= width and len(kept) in cuts


@pytest.mark.parametrize("raw, shown", [
    ("a\u200d\x1b[31m", "a\u200d^[[31m"),                # ESC, beside a kept ZWJ
    ("\u200c\x9b31m", "\u200c<9B>31m"),                   # 8-bit CSI, beside a kept ZWNJ
    (FAMILY + "\u202eevil", FAMILY + "\ufffdevil"),        # right-to-left override
    ("\u2066" + PERSIAN + "\u2069", "\ufffd" + PERSIAN + "\ufffd"),   # isolates
    ("\u200e\u200f\u061c" + KSSA, "\ufffd\ufffd\ufffd" + KSSA),       # LRM, RLM, ALM
    ("\u202a\u202b\u202c\u202d" + FAMILY, "\ufffd" * 4 + FAMILY),    # embeddings, overrides
    ("zero\u200bwidth\u200d", "zero\ufffdwidth\u200d"),     # ZWSP is not a joiner
    (FAMILY + "\U000E0067\U000E007F", FAMILY + "\ufffd\ufffd"),   # tags hide text: refused
])
def test_escapes_c1_and_bidi_controls_are_still_refused(raw, shown):
    out = sanitize(raw)
    assert out == shown
    assert not any(0x7F <= ord(ch) <= 0x9F or ch == "\x1b" for ch in out)


def test_typed_or_pasted_joiners_count_as_text():
    is_text = text_mod.is_text
    assert is_text(FAMILY) and is_text(KSSA) and is_text(HEART)
    assert not is_text("\x1b") and not is_text("\u202e") and not is_text("a\u200b")


def test_the_input_window_keeps_a_family_whole():
    line = "ab" + FAMILY * 5 + "cd"
    cuts = boundaries(line)
    for cursor in sorted(cuts):
        for room in (1, 2, 3, 4, 5, 8):
            start, end, col = window(line, cursor, room)
            assert start in cuts and end in cuts
            assert start <= cursor <= end and col < room
            assert text_width(line[start:end]) <= room


def test_the_input_window_costs_its_width_on_a_paste_of_flags(monkeypatch):
    calls = []
    real = text_mod.shown_width
    monkeypatch.setattr(text_mod, "shown_width", lambda s: calls.append(s) or real(s))
    line = FLAGS * 20_000
    start, end, col = window(line, len(line), 80)
    assert line[start:end] == FLAGS[2:] + FLAGS * 19 and col == 78    # 39 flags, 1 free
    assert window(line, 0, 80)[:2] == (0, len(FLAGS) * 20)
    assert len(calls) < 200
    assert all(len(c) == 2 for c in calls)                 # whole flags were measured


def test_segmenting_backwards_agrees_with_forwards():
    text = "\r\n".join(["x" + FAMILY + FLAGS + "\U0001F1EB", JAMO + "\ud55c\u11a8",
                        HEART + THUMB + E_ACUTE, PERSIAN, KSSA + NAMASTE, "\x1b\u0301"])
    for end in range(len(text) + 1):
        assert list(spans_before(text, end))[::-1] == list(spans(text, 0, end))
    assert "".join(clusters(text)) == text
    assert "\r\n" in set(clusters(text))                    # CR LF is one cluster


def test_moving_a_cursor_by_clusters():
    line = "a" + FAMILY + FLAGS + E_ACUTE
    stops = [0, 1, 1 + len(FAMILY), 3 + len(FAMILY), 5 + len(FAMILY), len(line)]
    assert stops[-2] + 2 == len(line)
    for here, there in zip(stops, stops[1:]):
        assert next_boundary(line, here) == there
        assert previous_boundary(line, there) == here
    assert next_boundary(line, len(line)) == len(line)
    assert previous_boundary(line, 0) == 0
