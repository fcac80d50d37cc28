"""Message bodies, read back from the journal by position through a bounded LRU cache.

Memory holds where each body is (``journal.where`` and ``journal.lengths``),
not the body: a store of a million messages keeps a few bytes each. Reading
is in two halves: ``from_cache`` (the store's lock held) answers from the
cache and lists what is missing; ``read`` fetches that without the lock,
merging nearby bodies into one read, since a cold read must not hold up
senders and what it reads (fsynced bytes of an append-only file) cannot
change under it.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Iterable, List, Optional, Tuple

from ... import protocol as p
from ..fileio import FileReader
from .journal import MessageJournal

log = logging.getLogger(__name__)

#: How many bytes of message bodies the read cache keeps (the rest stay on disk).
CACHE_BYTES = 4 << 20
#: What one cached body costs beyond its characters (the str and the cache entry).
_CACHE_OVERHEAD = 120
#: Bodies closer than this in the journal are fetched with one read of at most _READ_SPAN.
_READ_GAP, _READ_SPAN = 4096, 256 << 10

#: A body to read from the journal: its slot in the answer, id, offset and length.
Missing = Tuple[int, int, int, int]
#: What ``from_cache`` gives: the reader to use, the bodies ("" where missing), the missing.
Lookup = Tuple[Optional[FileReader], List[str], List[Missing]]


class BodyCache:
    """Bodies of durable messages by id; the cache is guarded by the store's lock."""

    def __init__(self, journal: MessageJournal, lock: threading.Lock, limit: int) -> None:
        self._journal = journal
        self._lock = lock
        self._cache: "OrderedDict[int, str]" = OrderedDict()
        self.size = 0
        self._limit = limit

    def from_cache(self, wanted: Iterable[int]) -> Lookup:
        """The cached bodies of the durable messages ``wanted``, and where to read the
        others; the lock is held."""
        cache, where, lengths = self._cache, self._journal.where, self._journal.lengths
        bodies: List[str] = []
        missing: List[Missing] = []
        for msg_id in wanted:
            body = cache.get(msg_id)
            if body is None:
                missing.append((len(bodies), msg_id, where[msg_id - 1], lengths[msg_id - 1]))
                body = ""
            else:
                cache.move_to_end(msg_id)
            bodies.append(body)
        return self._journal.reader, bodies, missing

    def fetch(self, lookup: Lookup, remember: bool = True) -> List[str]:
        """The bodies of a ``from_cache`` answer, the missing ones read; without the lock.

        ``remember=False`` reads without filling the cache (a search scanning
        a whole history must not push out what readers of recent pages use).
        """
        reader, bodies, missing = lookup
        if missing:
            self._read(reader, missing, bodies)
            if remember:
                with self._lock:
                    for slot, msg_id, _, _ in missing:
                        self._remember(msg_id, bodies[slot])
        return bodies

    def _read(self, reader: Optional[FileReader], missing: List[Missing],
              bodies: List[str]) -> None:
        """Fill ``bodies`` from the journal, one read per run of nearby records."""
        if reader is None:
            raise p.ChatError(p.SERVER_ERROR, "the store is closed")
        path = self._journal.path
        first = 0
        while first < len(missing):
            start = missing[first][2]
            last = first
            while last + 1 < len(missing):
                _, _, offset, length = missing[last + 1]
                if (offset - sum(missing[last][2:]) > _READ_GAP
                        or offset + length - start > _READ_SPAN
                        or offset < start):
                    break
                last += 1
            try:
                data = reader.read_at(start, sum(missing[last][2:]) - start)
            except OSError as exc:
                log.error("reading %s at byte offset %d: %s", path, start, exc)
                raise p.ChatError(p.SERVER_ERROR, "the server could not read a message") from None
            for slot, msg_id, offset, length in missing[first:last + 1]:
                raw = data[offset - start:offset - start + length]
                if len(raw) != length or not raw.startswith(b'{"id":%d,' % msg_id):
                    log.error("%s: message %d is not at byte offset %d", path, msg_id, offset)
                    raise p.ChatError(p.SERVER_ERROR, "the server could not read a message")
                bodies[slot] = raw.decode("ascii")
            first = last + 1

    def _remember(self, msg_id: int, body: str) -> None:
        """Keep a body in the cache, forgetting the least recently used beyond its size."""
        cache = self._cache
        if msg_id in cache:          # two readers fetched it at once
            cache.move_to_end(msg_id)
            return
        cache[msg_id] = body
        self.size += len(body) + _CACHE_OVERHEAD
        while self.size > self._limit and cache:
            _, old = cache.popitem(last=False)
            self.size -= len(old) + _CACHE_OVERHEAD
