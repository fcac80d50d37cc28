"""Keys in, events out: bracketed pastes and paste-like bursts become text, never keys.

A terminal paste reaches the client as keystrokes. Read one by one, a pasted
``/quit`` line would quit, and the lines after it would be typed into the shell.
So every batch of keys the client reads (everything pending at once) goes
through ``InputDecoder`` first:

* With bracketed paste on, the terminal wraps a paste in ``ESC[200~`` ...
  ``ESC[201~``; everything in between is returned as one ``Paste``.
* Without it, a batch that holds an Enter and some text arrived faster than
  anyone types: a paste. It is collected, together with whatever follows within
  ``burst_gap`` seconds, into one ``Paste`` too.

The decoder also names the keys that curses leaves as raw escape sequences when
the terminal's terminfo does not list them (``TERM=screen`` has no Ctrl-←):
``ESC[1;5D`` becomes ``CTRL_LEFT``, a code past every curses key. Where terminfo
lists them, curses gives a code of its own, named ``kLFT5``; ``KeyReader`` maps
that to the same ``CTRL_LEFT``. The input line's keys are a table here
(``EDIT_KEYS``, and ``ALT_EDIT_KEYS`` for those after Esc/Alt).

Pure but for ``KeyReader``: the clock is passed in, so the tests drive it directly.
"""
from __future__ import annotations

import codecs
import curses
import sys
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .text import is_text

Key = Union[str, int]           # a str for a character, an int for a control or special key

PASTE_START: Sequence[Key] = (27, "[", "2", "0", "0", "~")
PASTE_END: Sequence[Key] = (27, "[", "2", "0", "1", "~")
ENTER_KEYS = frozenset((10, 13, curses.KEY_ENTER))
TEXT_KEYS = {10: "\n", 13: "\r", curses.KEY_ENTER: "\n", 9: "\t"}   # control keys kept in a paste

#: Keys curses has no standard code for: codes of our own, past every curses and Unicode code.
CTRL_LEFT, CTRL_RIGHT, ALT_LEFT, ALT_RIGHT, CTRL_DELETE = range(0x110001, 0x110006)
#: What terminals send for them, for terminfo entries that do not list them.
SEQUENCES: Dict[Tuple[Key, ...], int] = {
    tuple([27, *seq]): code for seq, code in (
        ("[1;5D", CTRL_LEFT), ("[1;5C", CTRL_RIGHT), ("[5D", CTRL_LEFT), ("[5C", CTRL_RIGHT),
        ("Od", CTRL_LEFT), ("Oc", CTRL_RIGHT),                  # rxvt
        ("[1;3D", ALT_LEFT), ("[1;3C", ALT_RIGHT), ("[3;5~", CTRL_DELETE))
}
#: The names ncurses gives them where terminfo lists them (extended capabilities), and
#: PDCurses' names on Windows (not tried there).
CURSES_NAMES: Dict[bytes, int] = {
    b"kLFT5": CTRL_LEFT, b"kRIT5": CTRL_RIGHT, b"kLFT3": ALT_LEFT, b"kRIT3": ALT_RIGHT,
    b"kDC5": CTRL_DELETE, b"CTL_LEFT": CTRL_LEFT, b"CTL_RIGHT": CTRL_RIGHT,
    b"ALT_LEFT": ALT_LEFT, b"ALT_RIGHT": ALT_RIGHT, b"CTL_DEL": CTRL_DELETE,
}
_PREFIXES = frozenset(seq[:n] for seq in (*SEQUENCES, tuple(PASTE_START))
                      for n in range(1, len(seq) + 1))

CTRL = {ch: ord(ch) - 0x60 for ch in "abcdefghijklmnopqrstuvwxyz"}
BACKSPACE_KEYS = (curses.KEY_BACKSPACE, 127, 8)
#: The input line's keys (readline's): key → ``InputLine`` method.
EDIT_KEYS: Dict[Key, str] = {
    CTRL["w"]: "kill_big_word_back", CTRL["k"]: "kill_to_end", CTRL["u"]: "kill_to_start",
    CTRL["y"]: "yank", CTRL_LEFT: "word_left", CTRL_RIGHT: "word_right",
    ALT_LEFT: "word_left", ALT_RIGHT: "word_right", CTRL_DELETE: "kill_word",
}
#: The same after Esc (Alt-x; a str key is matched lower-cased): key → method.
ALT_EDIT_KEYS: Dict[Key, str] = {
    "b": "word_left", "f": "word_right", "d": "kill_word",
    curses.KEY_LEFT: "word_left", curses.KEY_RIGHT: "word_right",
    **{k: "kill_word_back" for k in BACKSPACE_KEYS},
    **{k: "newline" for k in ENTER_KEYS},
}

#: Keys arriving this soon after a burst belong to it (no one types that fast).
BURST_GAP = 0.03
#: A bracketed paste whose end marker never comes is given up after this long.
PASTE_STALL = 2.0


@dataclass(frozen=True)
class Paste:
    """Text that was pasted: to be shown and confirmed, never run as keys."""

    text: str
    bracketed: bool


Event = Union[str, int, Paste]


class KeyReader:
    """Keys from a curses window: a str per character, an int per control or special key.

    With ncurses it reads bytes (``getch``) and decodes them here, incrementally:
    ncurses' ``get_wch`` throws away a character whose bytes arrive in two reads
    (a long paste does that), and garbles what follows. Here the first bytes wait
    in the decoder for the rest. PDCurses (Windows) reads whole characters from
    the console, so there ``get_wch`` is used (``wide``).
    """

    def __init__(self, win, encoding: str = "utf-8", wide: bool = sys.platform == "win32"):
        self.win = win
        self.wide = wide
        self.decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._chars: Deque[str] = deque()

    def timeout(self, ms: int) -> None:
        self.win.timeout(ms)

    def read(self) -> Optional[Key]:
        """The next key, or None when none is pending within the window's timeout."""
        return self._read_wide() if self.wide else self._read_bytes()

    def _read_bytes(self) -> Optional[Key]:
        while not self._chars:
            code = self.win.getch()
            if code < 0:
                return None
            if code > 0xFF:
                return named_key(code)         # KEY_*, and Ctrl-← and friends by name
            if code < 0x20 or code == 0x7F:
                return code                    # Enter, Esc, Ctrl-x
            self._chars.extend(self.decoder.decode(bytes((code,))))
        return self._chars.popleft()

    def _read_wide(self) -> Optional[Key]:
        try:
            key = self.win.get_wch()
        except curses.error:
            return None
        if isinstance(key, str):
            return ord(key) if key < " " or key == "\x7f" else key
        return named_key(key)


_NAMED: Dict[int, int] = {}


def named_key(code: int) -> int:
    """A curses key code, or ours for a key that ncurses knows only by name (kLFT5)."""
    if code not in _NAMED:
        try:
            name = curses.keyname(code)
        except (curses.error, ValueError):
            name = b""
        _NAMED[code] = CURSES_NAMES.get(name, code)
    return _NAMED[code]


def paste_text(keys: Iterable[Key]) -> str:
    """The text of pasted keys: characters kept, Enter and Tab as text, other keys dropped."""
    out = []
    for key in keys:
        if isinstance(key, str):
            if is_text(key):
                out.append(key)
        elif key in TEXT_KEYS:
            out.append(TEXT_KEYS[key])
    return "".join(out)


def is_burst(keys: Sequence[Key]) -> bool:
    """True for a batch that holds an Enter and text: pasted, or it would run a line unseen."""
    has_enter = any(not isinstance(k, str) and k in ENTER_KEYS for k in keys)
    return has_enter and any(isinstance(k, str) and is_text(k) for k in keys)


class InputDecoder:
    """Turns batches of keys into keys and ``Paste`` events.

    ``feed`` takes everything that was pending at one read; ``idle`` is called
    when a read found nothing, and ``deadline`` says by when the caller must
    read again (a burst or a half-read marker waiting to be settled).
    """

    def __init__(self, bursts: bool = True, burst_gap: float = BURST_GAP,
                 stall: float = PASTE_STALL,
                 passthrough: Iterable[int] = (curses.KEY_RESIZE,)) -> None:
        self.bursts = bursts
        self.burst_gap = burst_gap
        self.stall = stall
        self.passthrough = frozenset(passthrough)
        self._held: List[Key] = []               # a possible start marker, half read
        self._paste: Optional[List[Key]] = None  # inside a bracketed paste
        self._tail: List[Key] = []               # a possible end marker, half read
        self._burst: Optional[List[str]] = None  # an unbracketed paste being collected
        self._last = 0.0                         # when the last keys arrived

    # ------------------------------------------------------------ public

    def feed(self, keys: Sequence[Key], now: float) -> List[Event]:
        """Events for one batch of keys read at ``now``."""
        out: List[Event] = []
        if self._burst is not None and now - self._last > self.burst_gap:
            out.extend(self._close_burst())
        self._last = now
        plain: List[Key] = []
        for key in keys:
            if self._paste is not None:
                self._in_paste(key, out)
            else:
                self._outside(key, plain, out)
        self._flush_plain(plain, out)
        return out

    def idle(self, now: float) -> List[Event]:
        """Events owed when nothing more arrived: a finished burst, a lone Esc."""
        out: List[Event] = []
        quiet = now - self._last
        if self._held and quiet >= self.burst_gap:
            held, self._held = self._held, []
            self._flush_plain(held, out)
        if self._burst is not None and quiet >= self.burst_gap:
            out.extend(self._close_burst())
        if self._paste is not None and quiet >= self.stall:
            out.extend(self._close_paste())
        return out

    def deadline(self) -> Optional[float]:
        """When ``idle`` is next due, or None when nothing is waiting."""
        if self._paste is not None:
            return self._last + self.stall
        if self._held or self._burst is not None:
            return self._last + self.burst_gap
        return None

    # ------------------------------------------------------------ steps

    def _outside(self, key: Key, plain: List[Key], out: List[Event]) -> None:
        """A key outside a bracketed paste: watch for the start marker, and for the
        sequences of keys that curses did not name (``SEQUENCES``)."""
        self._held.append(key)
        held = tuple(self._held)
        if held in _PREFIXES:
            if held in SEQUENCES:
                self._held = []
                plain.append(SEQUENCES[held])
            elif len(held) == len(PASTE_START) and list(held) == list(PASTE_START):
                self._held = []
                self._flush_plain(plain, out)
                plain.clear()
                self._paste = []
            return
        held, self._held = self._held, []
        if len(held) > 1 and held[-1] == PASTE_START[0]:
            plain.extend(held[:-1])                # the last Esc may start a marker yet
            self._held = [held[-1]]
        else:
            plain.extend(held)

    def _in_paste(self, key: Key, out: List[Event]) -> None:
        """A key inside a bracketed paste: text, until the end marker."""
        if not isinstance(key, str) and key in self.passthrough:
            out.append(key)
            return
        self._tail.append(key)
        if list(PASTE_END[:len(self._tail)]) == self._tail:
            if len(self._tail) == len(PASTE_END):
                self._tail = []
                out.extend(self._close_paste())
            return
        tail, self._tail = self._tail, []
        if len(tail) > 1 and tail[-1] == PASTE_END[0]:
            self._paste.extend(tail[:-1])          # type: ignore[union-attr]
            self._tail = [tail[-1]]
        else:
            self._paste.extend(tail)               # type: ignore[union-attr]

    def _flush_plain(self, plain: List[Key], out: List[Event]) -> None:
        """Ordinary keys of a batch: keys, or the start or rest of a burst."""
        if not plain:
            return
        if self._burst is not None:
            self._burst.append(paste_text(plain))
        elif self.bursts and is_burst(plain):
            self._burst = [paste_text(plain)]
        else:
            out.extend(plain)

    def _close_burst(self) -> List[Event]:
        text, self._burst = "".join(self._burst or ()), None
        return [Paste(text, bracketed=False)] if text else []

    def _close_paste(self) -> List[Event]:
        text = paste_text((self._paste or []) + self._tail)   # a half-read marker: dropped Esc
        self._paste, self._tail = None, []
        return [Paste(text, bracketed=True)] if text else []
