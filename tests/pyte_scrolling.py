"""Teach pyte the two scrolling sequences ncurses sends and pyte 0.8 ignores.

When rows of a pane shift (a page of older messages loaded above, a "new
messages" line put in), ncurses scrolls the region with ``CSI n T`` (scroll
down) or ``CSI n S`` (scroll up) instead of redrawing it. pyte drops both, so
its screen keeps stale rows that no real terminal shows. ``teach_pyte_scrolling``
adds them: with the region's margins, the cursor staying where it was.
"""
from __future__ import annotations


def _scroll(screen, count, down: bool) -> None:
    margins = screen.margins
    top, bottom = (margins.top, margins.bottom) if margins else (0, screen.lines - 1)
    y, x = screen.cursor.y, screen.cursor.x
    for _ in range(max(1, count or 1)):
        screen.cursor.y = top if down else bottom
        if down:
            screen.reverse_index()
        else:
            screen.index()
    screen.cursor.y, screen.cursor.x = y, x


def scroll_up(screen, count=1, *args, **kwargs) -> None:
    _scroll(screen, count, False)


def scroll_down(screen, count=1, *args, **kwargs) -> None:
    _scroll(screen, count, True)


def teach_pyte_scrolling(pyte) -> None:
    """Idempotent: ``Stream.csi`` maps S and T to the screen methods added here."""
    pyte.Stream.csi.setdefault("S", "scroll_up")
    pyte.Stream.csi.setdefault("T", "scroll_down")
    if not hasattr(pyte.Screen, "scroll_up"):
        pyte.Screen.scroll_up = scroll_up
    if not hasattr(pyte.Screen, "scroll_down"):
        pyte.Screen.scroll_down = scroll_down
