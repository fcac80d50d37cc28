"""When the bell rings, and the terminal's focus reports it depends on. Pure.

The bell is for a direct message or a mention (``ChatState.on_message`` says
which), never for a muted conversation, and not for the conversation you are
looking at in a terminal that has the focus. Terminals report focus after
``ESC[?1004h`` (``terminal.FOCUS_ON``) by sending ``ESC[I`` (focus in) and
``ESC[O`` (focus out); ``FocusFilter`` takes those out of the keys before they
could be read as Esc and two typed letters. A terminal that never reports
focus leaves it unknown, and the bell rings as it always did.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

ESC = 27
FOCUS_REPORTS = {"I": True, "O": False}


@dataclass(frozen=True)
class Focus:
    """The terminal gained (``inside``) or lost the focus."""

    inside: bool


def should_ring(wanted: bool, beep: bool, muted: bool, is_open: bool,
                focused: Optional[bool]) -> bool:
    """Whether a message that ``wanted`` the bell (a DM or a mention) rings it."""
    if not (wanted and beep) or muted:
        return False
    return not (is_open and focused is True)


class FocusFilter:
    """Takes focus reports out of a list of decoded events; remembers the last one."""

    def __init__(self) -> None:
        self.focused: Optional[bool] = None       # None: the terminal never said

    def take(self, events: Sequence[object]) -> List[object]:
        """``events`` without the ``ESC [ I`` / ``ESC [ O`` triples (``focused`` follows
        them); a run of typed text that starts with ``[I`` after an Esc is split."""
        out: List[object] = []
        flat = _split_after_esc(events)
        i = 0
        while i < len(flat):
            if (flat[i] == ESC and i + 2 < len(flat) and flat[i + 1] == "["
                    and flat[i + 2] in FOCUS_REPORTS):
                self.focused = FOCUS_REPORTS[str(flat[i + 2])]
                i += 3
                continue
            out.append(flat[i])
            i += 1
        return out


def _split_after_esc(events: Sequence[object]) -> List[Union[object, str]]:
    """The two characters after an Esc as single keys, in case a run of text joined them."""
    flat: List[object] = []
    for i, ev in enumerate(events):
        if (i > 0 and events[i - 1] == ESC and isinstance(ev, str) and len(ev) > 1
                and ev[:1] == "["):
            flat.extend([ev[0], ev[1]])
            if len(ev) > 2:
                flat.append(ev[2:])
        else:
            flat.append(ev)
    return flat
