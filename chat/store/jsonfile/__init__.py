"""The JSON backend: one folder of append-only journals and a snapshot.

A data folder holds:

``LOCK``
    Held (``chat.dblock``) by the one store that has the folder open, from
    before it reads any file until it closes: a second opener is refused
    before it could mistake the first one's write in progress for a torn
    tail and cut it away. No repair happens without it.

``users.json``
    The snapshot of accounts, read markers and rooms (``snapshot``), replaced
    atomically now and then, never edited. A new folder has none until the
    first compaction; a version 1 file is read as it is and left alone until
    then.

``accounts.jsonl``
    The accounts journal (``accounts``): every change after the snapshot to
    accounts, markers and rooms (``state`` lists them), one a line, fsynced
    before the call returns.

``messages.jsonl``
    The message journal (``journal``), written by group commit; a message
    sent with a nonce carries it in its line (``records``).

Opening replays the journals, streamed in bounded chunks (``scan``). A
damaged tail is what a crash during a write leaves, and is cut away with a
warning; damage with intact records after it is not, and raises
``StoreCorrupt`` naming the file, line and byte offset, with every file left
exactly as it was.

The parts: ``records`` (file names, line formats), ``scan`` (replay),
``state`` (what each accounts-journal change means), ``snapshot``
(users.json), ``accounts`` (the accounts journal and its compaction),
``names`` (new account names on their way), ``rooms`` (room changes and
queries), ``journal`` (the message journal: group commit, lost ids),
``bodies`` (bodies read back through a cache), ``indexes`` (sorted id
arrays), ``nonces`` (resends), ``messages`` (sending and reading: who may
see what), ``store`` (the facade). Lock order: a room change's turn
(``rooms``), then the accounts journal's locks (``accounts``), then the
store's one lock; the message committer takes only the store's lock, and
no file I/O happens under it.
"""
from .store import COMPACT_MIN_BYTES, Store

__all__ = ["COMPACT_MIN_BYTES", "Store"]
