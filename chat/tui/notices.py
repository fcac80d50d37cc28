"""The notice line above the input, the status bar's text, and the connection as it is.

Pure: ``panes.NoticeLine`` and ``panes.StatusBar`` draw what these say. A
notice (an error, a hint, "Sent to bob.") has a line of its own, so it is never
squeezed out by the status bar's fixed part: a long one wraps onto up to
``MAX_NOTICE_ROWS`` rows. The status bar keeps who you are and the connection,
then the activity line; the server's address and key hints only where there is
room.
"""
from __future__ import annotations

import queue
from typing import Any, Dict, List

from .text import sanitize, text_width, truncate, wrap_text

#: A long notice wraps onto this many rows at most (the last one ends with … if cut).
MAX_NOTICE_ROWS = 3
#: Below this height a notice keeps to one row: the messages need the room more.
TALL_ENOUGH = 16
HINTS = " · F10 menu · /help"
#: Narrower than this, the server's address gives way to the activity line.
ADDRESS_FROM = 72
#: What the status bar says for each state of the client library (``ChatClient.state``).
CONNECTION_LABELS = {"connected": "connected", "reconnecting": "reconnecting…",
                     "disconnected": "disconnected", "closed": "disconnected"}


def notice_rows(text: str, width: int, max_rows: int = MAX_NOTICE_ROWS) -> List[str]:
    """The notice as rows of at most ``width`` columns (one leading space), never empty."""
    rows = wrap_text(sanitize(text), max(1, width - 1)) or [""]
    if len(rows) > max_rows:
        rows = rows[:max_rows]
        rows[-1] = truncate(rows[-1] + " …", max(1, width - 1))
    return [" " + row for row in rows]


def notice_height(text: str, height: int, width: int) -> int:
    """How many rows the notice takes on a screen of this size."""
    room = MAX_NOTICE_ROWS if height >= TALL_ENOUGH else 1
    return len(notice_rows(text, width, room))


def status_text(me: str, server: str, connection: str, activity: str, width: int) -> str:
    """`` alice @ host:port · connected │ Act: 1:bob(2) · F10 menu · /help``, shrunk to
    fit: the hints go first, then the address; who you are and the connection stay."""
    where = f" @ {sanitize(server)}" if width >= ADDRESS_FROM else ""
    text = f" {sanitize(me)}{where} · {connection}"
    if activity:
        text += " │ " + sanitize(activity)
    if text_width(text) + len(HINTS) <= width:
        text += HINTS
    return truncate(text, width)


def connection_label(client: Any) -> str:
    """The connection as the client library has it now, in the status bar's words
    (a stand-in client without ``state`` counts as connected)."""
    return CONNECTION_LABELS.get(getattr(client, "state", "connected"), "disconnected")


def drop_stale_events(events: "queue.Queue[Dict[str, Any]]") -> None:
    """Before the main screen: forget connection news from the login screen (a server that
    closed an idle connection, then the reconnect to log in); keep everything else."""
    kept = []
    while True:
        try:
            ev = events.get_nowait()
        except queue.Empty:
            break
        if ev.get("event") not in ("connection", "error"):
            kept.append(ev)
    for ev in kept:
        events.put(ev)

