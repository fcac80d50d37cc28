"""Reading a journal back: every good record in order, a torn tail told from damage.

Both journals (messages and accounts) are lines of ``{<record>,"c":<crc>}``;
what differs is the pattern of a line. The rule is the same for both: a bad
line with nothing good after it is what a crash during a write leaves (the
caller cuts it away); a bad line with a good record after it is damage, which
recovery must not paper over.
"""
from __future__ import annotations

import logging
import re
import zlib
from typing import Callable, Iterator, Pattern, Tuple

from ..contract import StoreCorrupt
from ..fileio import FileLayer, FileReader

log = logging.getLogger(__name__)

#: The scanner's callback: a good record's match, its checked bytes (group 1), its line
#: number and byte offset.
Take = Callable[["re.Match[bytes]", bytes, int, int], None]


def scan(files: FileLayer, reader: FileReader, path: str, record: Pattern[bytes],
         crc_group: int, take: Take) -> int:
    """Feed every good record of a journal to ``take``; the length of the good prefix.

    The journal is read a chunk at a time (never whole: it may be larger than
    the memory the server should use). Group 1 of ``record`` is what the crc
    in ``crc_group`` covers. A line that is cut short, is not a record or
    fails its crc is what a crash during a write leaves when nothing good
    follows it: the scan stops there with a warning, and the caller cuts the
    rest away. Anything good after it is damage instead: StoreCorrupt.
    This is the start-up hot loop (a million records): names are bound locally.
    """
    chunks = files.read_chunks(reader)
    crc32 = zlib.crc32
    match = record.match
    line = good = 0
    for buf, base in chunks:
        pos, size = 0, len(buf)
        find = buf.find
        while pos < size:
            end = find(b"\n", pos)
            line += 1
            m = match(buf, pos, end) if end >= 0 else None
            if m is not None:
                body = m.group(1)
            if m is None or crc32(body) != int(m.group(crc_group)):
                if end < 0:
                    end, reason = size, "no newline at its end"
                else:
                    reason = "not a journal record" if m is None else "checksum mismatch"
                _refuse_if_good_follows(buf, end + 1, chunks, record, crc_group,
                                        StoreCorrupt(path, line, base + pos,
                                                     f"{reason}, and good records follow it"))
                log.warning("%s: dropping a damaged tail at byte offset %d (line %d, %d bytes, "
                            "%s): a write cut short by a crash", path, base + pos, line,
                            reader.size() - base - pos, reason)
                return base + pos
            take(m, body, line, base + pos)
            pos = end + 1
        good = base + size
    return good


def _refuse_if_good_follows(buf: bytes, pos: int, chunks: Iterator[Tuple[bytes, int]],
                            record: Pattern[bytes], crc_group: int,
                            damage: StoreCorrupt) -> None:
    """Raise ``damage`` if an intact record follows ``pos`` in ``buf`` or later chunks."""
    while True:
        size = len(buf)
        while pos < size:
            end = buf.find(b"\n", pos)
            if end < 0:
                end = size
            m = record.match(buf, pos, end)
            if m is not None and zlib.crc32(m.group(1)) == int(m.group(crc_group)):
                raise damage
            pos = end + 1
        nxt = next(chunks, None)
        if nxt is None:
            return
        buf, pos = nxt[0], 0
