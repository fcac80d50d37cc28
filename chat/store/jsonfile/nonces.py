"""The nonces each user sent messages with, so that a resend stores nothing new.

A client that lost the reply to a send resends with the same nonce; the store
answers with the message already stored for it. Each user's nonces are kept
as 64-bit digests (``hash`` of the nonce's JSON, stable within a process; the
journal keeps the nonces themselves and they are hashed again on replay)
beside the ids of their messages, in two arrays: 16 bytes a nonce, found by a
scan in C. At least the newest ``KEEP`` durable nonces of each user are
remembered; older ones are dropped in bulk once twice as many pile up.
Guarded by the store's lock.
"""
from __future__ import annotations

from array import array
from bisect import bisect_right
from typing import Dict, Optional, Tuple

#: How many of each user's newest nonces are certainly remembered.
KEEP = 1_000


class NonceBook:
    """user key -> (digests, message ids), both in the order the messages were sent."""

    def __init__(self) -> None:
        self._by_user: Dict[str, Tuple[array, array]] = {}

    def find(self, ukey: str, digest: int) -> Optional[int]:
        """The id of the message ``ukey`` sent with this nonce, or None."""
        entry = self._by_user.get(ukey)
        if entry is None:
            return None
        digests, ids = entry
        found = None
        start = 0
        while True:         # the newest if a nonce was used again after being forgotten
            try:
                start = digests.index(digest, start)
            except ValueError:
                return found
            found, start = ids[start], start + 1

    def add(self, ukey: str, digest: int, msg_id: int, durable_id: int) -> None:
        """Remember a nonce; forget old durable ones in bulk beyond twice ``KEEP``.

        Only durable ones are forgotten, and never the newest ``KEEP`` of them,
        so a lost message taken back (``forget_last``) leaves ``KEEP`` behind.
        """
        entry = self._by_user.get(ukey)
        if entry is None:
            entry = self._by_user[ukey] = (array("q"), array("q"))
        digests, ids = entry
        if len(ids) >= 2 * KEEP:
            drop = bisect_right(ids, durable_id) - KEEP
            if drop > 0:
                del digests[:drop]
                del ids[:drop]
        digests.append(digest)
        ids.append(msg_id)

    def forget_last(self, ukey: str, msg_id: int) -> None:
        """Take back the nonce of a lost message (the newest of its sender's)."""
        entry = self._by_user.get(ukey)
        if entry is not None and entry[1] and entry[1][-1] == msg_id:
            entry[0].pop()
            entry[1].pop()
