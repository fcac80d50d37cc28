"""Line editing that readline users expect: words, kills and Tab completion. Pure.

Words are found by grapheme cluster (``graphemes``), so no motion or kill ever
lands inside what shows as one character (é written e + U+0301, 👨‍👩‍👧, a flag).
Two kinds of word, as in readline:

* a *word* (Alt-b, Alt-f, Ctrl-←/→, Alt-Backspace, Alt-d) is a run of letters
  and digits in any script: ``foo.bar`` is two words, 東京 is one, an emoji is
  not part of a word;
* a *big word* (Ctrl-W, readline's unix-word-rubout) runs to the previous
  whitespace: Ctrl-W after ``see http://x.org/a`` deletes the whole address.

Tab completion cycles: the first Tab puts in the first match, each further Tab
the next one, Shift-Tab the one before, for as long as nothing else was edited.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from ..protocol import is_room
from .graphemes import spans, spans_before

#: Shown in the input line for a newline typed with Alt-Enter (the message keeps "\n").
NEWLINE_MARK = "⏎"


def is_word(cluster: str) -> bool:
    """A cluster that is part of a word: it begins with a letter or a digit (any script)."""
    return cluster[:1].isalnum()


def is_big_word(cluster: str) -> bool:
    """A cluster that is part of a whitespace-delimited word (Ctrl-W)."""
    return not cluster.isspace()


def word_start(text: str, i: int, word: Callable[[str], bool] = is_word) -> int:
    """Where the word before ``i`` begins: past non-word clusters, then past the word."""
    pos, seen = i, False
    for a, b in spans_before(text, i):
        inside = word(text[a:b])
        if seen and not inside:
            break
        seen = seen or inside
        pos = a
    return pos


def word_end(text: str, i: int, word: Callable[[str], bool] = is_word) -> int:
    """Where the word after ``i`` ends: past non-word clusters, then past the word."""
    pos, seen = i, False
    for a, b in spans(text, i):
        inside = word(text[a:b])
        if seen and not inside:
            break
        seen = seen or inside
        pos = b
    return pos


def shown(text: str) -> str:
    """The input line as drawn: a newline as ``⏎`` (one column, one character: indices
    and the cursor stay where they are)."""
    return text.replace("\n", NEWLINE_MARK) if "\n" in text else text


# ---------------------------------------------------------------- completion

@dataclass
class Completion:
    """A Tab cycle in progress: which replacements, which one is in, and the line it left
    (any other edit changes the line, and the next Tab starts afresh)."""

    start: int
    choices: List[str]
    index: int
    text: str = ""
    cursor: int = 0


def completion_choices(text: str, cursor: int, names: Iterable[str],
                       commands: Iterable[str]) -> Optional[Tuple[int, List[str]]]:
    """(where the word begins, its replacements in cycling order), or None.

    The word is what precedes the cursor back to whitespace. ``/cm`` at the start
    of the line completes a command (``/create ``); ``@al`` a mention
    (``@alice ``); anything else a user or a ``#room``, as ``name: `` when it is
    the first word (addressing someone), else ``name ``. Matches ignore case and
    are ordered alphabetically ignoring case.
    """
    start = word_start(text, cursor, is_big_word)
    word = text[start:cursor]
    if not word or word in ("/", "@"):
        return None
    after = text[cursor:cursor + 1]          # a space there: none added; other text: no suffix
    if word.startswith("/"):
        if start:
            return None
        lead, pool = "/", commands
    else:
        lead, pool = ("@", names) if word.startswith("@") else ("", names)
    key = word[len(lead):].casefold()
    found: Dict[str, str] = {}
    for name in pool:
        if name.casefold().startswith(key):
            found.setdefault(name.casefold(), name)
    if not found:
        return None
    choices = []
    for name in sorted(found.values(), key=str.casefold):
        end = ": " if start == 0 and not lead and not is_room(name) else " "
        if after:
            end = end.rstrip() if after.isspace() else ""
        choices.append(lead + name + end)
    return start, choices


def complete(text: str, cursor: int, names: Iterable[str], commands: Iterable[str],
             last: Optional[Completion], step: int = 1) -> Optional[Completion]:
    """The next step of Tab (``step`` 1) or Shift-Tab (-1): the cycle with the line it
    makes in ``text``/``cursor``, or None when nothing completes."""
    if last is not None and last.text == text and last.cursor == cursor:
        cycle = Completion(last.start, last.choices, (last.index + step) % len(last.choices))
    else:
        found = completion_choices(text, cursor, names, commands)
        if found is None:
            return None
        start, choices = found
        cycle = Completion(start, choices, 0 if step > 0 else len(choices) - 1)
    choice = cycle.choices[cycle.index]       # replaces the word, or the choice before
    cycle.text = text[:cycle.start] + choice + text[cursor:]
    cycle.cursor = cycle.start + len(choice)
    return cycle
