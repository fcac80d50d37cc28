"""Who a room message mentions: the protocol's delimiting rule, as a pure function.

PROTOCOL-v2, "Precise rules": ``@name`` mentions ``name`` (any case) only when
the character before ``@`` is not a letter, digit, ``_`` or ``-`` (so
``mail@bob`` mentions nobody) and the character after the name is not one
either (so ``@bobby`` and ``@bob-x`` do not mention bob). A ``.`` may be part
of a version 1 name but does not block a mention: ``@bob.`` mentions bob (and
an account named ``bob.`` if there is one).
"""
from __future__ import annotations

import re
from typing import Set

#: An ``@`` and the longest run of characters a username may have after it.
_CANDIDATE = re.compile(r"@([A-Za-z0-9_.\-]{1,64})")
MAX_NAME = 32


def _joins(ch: str) -> bool:
    """Whether ``ch`` beside a name makes it part of a longer word (no mention)."""
    return ch.isalnum() or ch in "_-"


def mentioned(text: str) -> Set[str]:
    """The lower-cased names ``text`` mentions (whether or not they are accounts)."""
    names: Set[str] = set()
    if "@" not in text:
        return names
    for m in _CANDIDATE.finditer(text):
        at = m.start()
        if at > 0 and _joins(text[at - 1]):
            continue
        start = m.start(1)
        for end in range(start + 1, min(m.end(1), start + MAX_NAME) + 1):
            if end == len(text) or not _joins(text[end]):
                names.add(text[start:end].lower())
    return names
