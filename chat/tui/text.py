"""Text for the terminal: sanitising, display width, wrapping and truncation.

Everything that came from the network (names, message text, error messages)
goes through ``sanitize`` before it reaches the screen, so no peer can move
the cursor, retitle the window, write the clipboard (OSC 52), reorder text
with bidi overrides, or hide characters. The joiners that are text are kept:
ZWJ builds emoji sequences (👨‍👩‍👧) and shapes Indic conjuncts, ZWNJ is part of
Persian and Indic spelling, variation selectors pick a glyph (❤️).

Widths are display columns, counted per grapheme cluster (``graphemes``): CJK
and emoji take two, combining marks none, a flag or a ZWJ family is one wide
character. Wrapping and truncating cut between clusters only, never inside one.
"""
from __future__ import annotations

import unicodedata
from typing import List, Tuple

from . import graphemes
from .graphemes import cluster_width, spans, spans_before

TAB = "    "
REPLACEMENT = "\ufffd"
#: Format characters (Cf) that are text: ZERO WIDTH NON-JOINER and ZERO WIDTH JOINER.
#: Every other one (bidi controls, zero width space, BOM, tags, ...) is refused.
JOINERS = frozenset("\u200c\u200d")


def _placeholder(ch: str) -> str:
    code = ord(ch)
    if code < 0x20:
        return "^" + chr(code + 0x40)          # ^[ for ESC, ^G for BEL, ^@ for NUL
    if code == 0x7F:
        return "^?"
    if 0x80 <= code <= 0x9F:
        return f"<{code:02X}>"                   # 8-bit CSI (9B), OSC (9D), ...
    return REPLACEMENT                            # format characters, surrogates


def _is_unsafe(ch: str) -> bool:
    code = ord(ch)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return True
    if 0xD800 <= code <= 0xDFFF:
        return True
    if ch in JOINERS:
        return False
    category = unicodedata.category(ch)
    if category == "Cn":
        # Unassigned in this Python's tables; in the emoji blocks that means an
        # emoji newer than the tables, which is text like any other emoji.
        return not graphemes.is_pictographic(code)
    # Cf: bidi overrides, isolates and marks (U+202A-202E, U+2066-2069, U+200E/200F,
    # U+061C), zero width space, BOM, tags. Zl/Zp: line and paragraph separators.
    # Co: private use. (Variation selectors are Mn: text.)
    return category in ("Cf", "Zl", "Zp", "Co")


def sanitize(text: str) -> str:
    """One line, safe to draw: tabs become spaces, controls visible placeholders.

    Newlines are controls here too (shown as ^J); callers that want lines use
    ``sanitize_lines``, so the client, never the peer, decides where lines break.
    """
    if text.isprintable() and text.isascii():
        return text
    out = []
    for ch in text:
        if ch == "\t":
            out.append(TAB)
        elif _is_unsafe(ch):
            out.append(_placeholder(ch))
        else:
            out.append(ch)
    return "".join(out)


def sanitize_lines(text: str) -> List[str]:
    """Split on newlines (\\r\\n, \\n, \\r) and sanitise each line."""
    return [sanitize(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]


def is_text(text: str) -> bool:
    """True when every character of ``text`` may be typed or pasted as text.

    ``str.isprintable`` says no to ZWJ and ZWNJ (format characters), which
    would drop the joiner from a typed 👨‍👩‍👧 or from Persian text: this says yes
    to them, and no to controls, escapes, bidi controls and the rest.
    """
    if text.isprintable():
        return True
    return all(ch.isprintable() or ch in JOINERS for ch in text)


def char_width(ch: str) -> int:
    """Columns of one character (or one grapheme cluster) on its own."""
    return cluster_width(ch)


def text_width(text: str) -> int:
    """Columns ``text`` takes, counted per grapheme cluster."""
    return graphemes.text_width(text)


def shown_width(cluster: str) -> int:
    """Columns one cluster takes once sanitised (a tab four, a control two: ^X)."""
    if len(cluster) == 1 and " " <= cluster <= "~":
        return 1
    return text_width(sanitize(cluster))


def window(text: str, cursor: int, room: int) -> Tuple[int, int, int]:
    """Which part of an input line fits ``room`` columns with the cursor in view.

    Returns (start, end, cursor column). Walks out from the cursor a grapheme
    cluster at a time, so the cost is the width of the window, not the length
    of the line: a long paste stays cheap to redraw; and the window never
    begins or ends inside a cluster (a cursor inside one splits it there).
    The cursor keeps one column free for itself.
    """
    start, used = cursor, 0
    for a, b in spans_before(text, cursor):
        w = shown_width(text[a:b])
        if used + w >= room:
            break
        start = a
        used += w
    end, filled = cursor, used
    for a, b in spans(text, cursor):
        w = shown_width(text[a:b])
        if filled + w > room:
            break
        end = b
        filled += w
    return start, end, used


def truncate(text: str, width: int, ellipsis: str = "…") -> str:
    """Cut ``text`` to at most ``width`` columns, marking the cut; clusters stay whole."""
    if width <= 0:
        return ""
    whole = graphemes.fit(text, width)
    if whole == len(text):
        return text
    limit = width - text_width(ellipsis)
    if limit < 0:
        return text[:whole]
    return text[:graphemes.fit(text[:whole], limit)] + ellipsis


def pad(text: str, width: int) -> str:
    """Truncate or pad with spaces to exactly ``width`` columns."""
    text = truncate(text, width)
    return text + " " * (width - text_width(text))


def wrap(line: str, width: int) -> List[str]:
    """Break one (sanitised) line into rows of at most ``width`` columns.

    Breaks at spaces where it can, inside a word where it must, and only ever
    between grapheme clusters: a wide character, a flag, a ZWJ family or a
    letter with its marks stays on one row. A cluster wider than ``width``
    (an emoji in one column) gets a row of its own.
    """
    if width <= 0 or len(line) <= width and line.isascii():
        return [line]
    parts = graphemes.split(line)
    if sum(w for _, w in parts) <= width:
        return [line]
    rows: List[str] = []
    row: List[str] = []
    widths: List[int] = []
    used = 0
    last_space = -1
    for cluster, w in parts:
        if used + w > width and row:
            if last_space > 0 and cluster != " ":
                rows.append("".join(row[:last_space]).rstrip())
                row, widths = row[last_space + 1:], widths[last_space + 1:]
                used = sum(widths)
                if used + w > width:
                    rows.append("".join(row))
                    row, widths, used = [], [], 0
            else:
                rows.append("".join(row))
                row, widths, used = [], [], 0
            last_space = -1
            if cluster == " " and not row:
                continue
        row.append(cluster)
        widths.append(w)
        used += w
        if cluster == " ":
            last_space = len(row) - 1
    rows.append("".join(row))
    return rows


def wrap_text(text: str, width: int) -> List[str]:
    """Sanitise and wrap a whole message (newlines kept as row breaks)."""
    rows: List[str] = []
    for line in sanitize_lines(text):
        rows.extend(wrap(line, width))
    return rows
