"""Text for the terminal: sanitising, display width, wrapping and truncation.

Everything that came from the network (names, message text, error messages)
goes through ``sanitize`` before it reaches the screen, so no peer can move
the cursor, retitle the window, write the clipboard (OSC 52), reorder text
with bidi overrides, or hide characters. Widths are display columns: CJK and
most emoji take two, combining marks none.
"""
from __future__ import annotations

import unicodedata
from typing import List, Tuple

TAB = "    "
REPLACEMENT = "\ufffd"


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
    category = unicodedata.category(ch)
    # Cf: bidi overrides and isolates, zero-width characters, BOM. Zl/Zp: line
    # and paragraph separators. Co/Cn: private use and unassigned.
    return category in ("Cf", "Zl", "Zp", "Co", "Cn")


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


def char_width(ch: str) -> int:
    if unicodedata.combining(ch) or ch in "\u200b\u200c\u200d":
        return 0
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 2
    return 1


def text_width(text: str) -> int:
    if text.isascii():
        return len(text)
    return sum(char_width(ch) for ch in text)


def shown_width(ch: str) -> int:
    """Columns one character takes once sanitised (a tab four, a control two: ^X)."""
    if " " <= ch <= "~":
        return 1
    return text_width(sanitize(ch))


def window(text: str, cursor: int, room: int) -> Tuple[int, int, int]:
    """Which part of an input line fits ``room`` columns with the cursor in view.

    Returns (start, end, cursor column). Walks out from the cursor, so the cost
    is the width of the window, not the length of the line: a long paste stays
    cheap to redraw. The cursor keeps one column free for itself.
    """
    start, used = cursor, 0
    while start > 0:
        w = shown_width(text[start - 1])
        if used + w >= room:
            break
        start -= 1
        used += w
    end, filled = cursor, used
    while end < len(text):
        w = shown_width(text[end])
        if filled + w > room:
            break
        end += 1
        filled += w
    return start, end, used


def truncate(text: str, width: int, ellipsis: str = "…") -> str:
    """Cut ``text`` to at most ``width`` columns, marking the cut."""
    if width <= 0:
        return ""
    if text_width(text) <= width:
        return text
    out, used = [], 0
    limit = width - text_width(ellipsis)
    for ch in text:
        w = char_width(ch)
        if used + w > limit:
            break
        out.append(ch)
        used += w
    return "".join(out) + ellipsis if limit >= 0 else text[:width]


def pad(text: str, width: int) -> str:
    """Truncate or pad with spaces to exactly ``width`` columns."""
    text = truncate(text, width)
    return text + " " * (width - text_width(text))


def wrap(line: str, width: int) -> List[str]:
    """Break one (sanitised) line into rows of at most ``width`` columns.

    Breaks at spaces where it can, inside a word where it must; wide
    characters are never split across rows.
    """
    if width <= 0:
        return [line]
    if text_width(line) <= width:
        return [line]
    rows: List[str] = []
    row: List[str] = []
    used = 0
    last_space = -1
    for ch in line:
        w = char_width(ch)
        if used + w > width:
            if last_space > 0 and ch != " ":
                carry = row[last_space + 1:]
                rows.append("".join(row[:last_space]).rstrip())
                row = carry
                used = sum(char_width(c) for c in row)
            else:
                rows.append("".join(row))
                row, used = [], 0
            last_space = -1
            if ch == " " and not row:
                continue
        row.append(ch)
        used += w
        if ch == " ":
            last_space = len(row) - 1
    rows.append("".join(row))
    return rows


def wrap_text(text: str, width: int) -> List[str]:
    """Sanitise and wrap a whole message (newlines kept as row breaks)."""
    rows: List[str] = []
    for line in sanitize_lines(text):
        rows.extend(wrap(line, width))
    return rows
