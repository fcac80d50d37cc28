"""Which messages belong where: sorted id arrays per user and per conversation.

Each message is filed, by id, in a few sorted arrays (``array('q')``, 8 bytes
an entry): its route. Ids only grow, so filing is an append, and taking back
a lost message is a pop from the end. Paging and counting are bisections.
Guarded by the store's lock.
"""
from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
from typing import Any, Callable, Dict, List, Optional, Tuple

from ... import protocol as p

#: The sorted id arrays a message from one user to another is filed in.
Route = Tuple[array, ...]


def _ids(index: Dict[Any, array], key: Any) -> array:
    ids = index.get(key)
    if ids is None:
        ids = index[key] = array("q")
    return ids


def contains(ids: Optional[array], msg_id: int) -> bool:
    if ids is None:
        return False
    i = bisect_left(ids, msg_id)
    return i < len(ids) and ids[i] == msg_id


def page(ids: array, durable_id: int, after: Optional[int], before: Optional[int],
         limit: int) -> array:
    """The protocol's page of a sorted id array (durable ids only): with ``after``, the
    oldest ``limit`` above it; otherwise the newest ``limit``, below ``before`` if given."""
    hi = bisect_right(ids, durable_id)
    if after is not None:
        lo = bisect_right(ids, after, 0, hi)
        hi = min(hi, lo + limit)
    else:
        if before is not None:
            hi = bisect_left(ids, before, 0, hi)
        lo = max(0, hi - limit)
    return ids[lo:hi]


class Indexes:
    """The id arrays, the names only the journal knows, and bytes sent per user.

    Every message is in its conversation's array (``by_conv``, keyed by
    ``protocol.conversation_key``) and in its sender's array within that
    conversation (``from_in``); a direct message also in both users' arrays
    (``by_user``), and ``dm_peers`` says who has written to whom, so that
    unread counts visit only conversations someone wrote to a user in.
    """

    def __init__(self) -> None:
        self.by_conv: Dict[str, array] = {}
        self.from_in: Dict[Tuple[str, str], array] = {}   # (conversation, sender) -> ids
        self.by_user: Dict[str, array] = {}                # a user's direct messages
        self.dm_peers: Dict[str, Dict[str, str]] = {}      # recipient -> conversation -> sender
        self._routes: Dict[Tuple[str, str], Route] = {}
        self.sent: Dict[str, int] = {}    # sender key -> bytes of message JSON authored
        self.names: Dict[str, str] = {}   # key -> canonical, for names only the journal knows

    def route(self, skey: str, tkey: str) -> Route:
        """The id arrays a message from ``skey`` to ``tkey`` is filed in, one per index."""
        route = self._routes.get((skey, tkey))
        if route is not None:
            return route
        conv = p.conversation_key(skey, tkey)
        arrays = [_ids(self.by_conv, conv), _ids(self.from_in, (conv, skey)),
                  _ids(self.by_user, skey)]
        if tkey != skey:
            arrays.append(_ids(self.by_user, tkey))
        self.dm_peers.setdefault(tkey, {})[conv] = skey
        route = self._routes[(skey, tkey)] = tuple(arrays)
        return route

    def file(self, msg_id: int, route: Route, skey: str, size: int) -> None:
        for ids in route:
            ids.append(msg_id)
        self.sent[skey] = self.sent.get(skey, 0) + size

    def unfile(self, msg_id: int, route: Route, skey: str, size: int) -> None:
        """Take back the newest message filed (a lost one)."""
        for ids in route:
            if ids and ids[-1] == msg_id:
                ids.pop()
        self.sent[skey] -= size

    def replayer(self) -> Callable[["re.Match[bytes]", int, int, int], None]:
        """Replay's callback: file one journal record without parsing it (a hot loop)."""
        sent, names = self.sent, self.names
        routes: Dict[bytes, Tuple[Tuple[Callable[[int], None], ...], str]] = {}

        def index(m: "re.Match[bytes]", msg_id: int, line: int, offset: int) -> None:
            pair = m.group(3)
            found = routes.get(pair)
            if found is None:
                keys = []
                for raw in (m.group(4), m.group(5)):
                    name = raw.decode("ascii")
                    key = p.user_key(name)
                    names.setdefault(key, name)  # a name only the journal knows
                    keys.append(key)
                route = self.route(keys[0], keys[1])
                found = routes[pair] = (tuple(ids.append for ids in route), keys[0])
            adds, skey = found
            for add in adds:
                add(msg_id)
            sent[skey] = sent.get(skey, 0) + len(m.group(1))

        return index

    def conversation(self, conv: str) -> Optional[array]:
        return self.by_conv.get(conv)

    def newest_from(self, conv: str, skey: str, durable_id: int) -> int:
        """The newest durable id ``skey`` wrote in ``conv`` (0: none)."""
        return newest(self.from_in.get((conv, skey)), durable_id)

    def dm_unread(self, ukey: str, markers: Dict[str, int], durable_id: int
                  ) -> List[Tuple[str, int]]:
        """(peer key, durable direct messages from it to ``ukey`` above the user's marker
        in their conversation), only > 0. A note to oneself counts as received."""
        counts = []
        from_in = self.from_in
        for conv, skey in self.dm_peers.get(ukey, {}).items():
            n = count_between(from_in[(conv, skey)], markers.get(conv, 0), durable_id)
            if n > 0:
                counts.append((skey, n))
        return counts


def newest(ids: Optional[array], durable_id: int) -> int:
    """The newest durable id of a sorted array (0: none)."""
    if not ids:
        return 0
    i = bisect_right(ids, durable_id)
    return ids[i - 1] if i else 0


def count_between(ids: Optional[array], low: int, high: int) -> int:
    """How many ids of a sorted array are above ``low`` and at most ``high``."""
    if not ids:
        return 0
    return max(0, bisect_right(ids, high) - bisect_right(ids, low))
