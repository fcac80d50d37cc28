"""Which messages belong where: sorted id arrays per conversation, sender and reader.

Each message is filed, by id, in a few sorted arrays (``array('q')``, 8 bytes
an entry): its route. Ids only grow, so filing is an append, and taking back
a lost message is a pop from the end. Paging and counting are bisections; a
page over several arrays (a user's direct messages and rooms) merges at most
``limit + 1`` ids from each. Guarded by the store's lock.

Every conversation, direct or a room, is one kind of key
(``protocol.conversation_key``): ``by_conv`` holds all its ids, ``from_in``
its ids by sender. A direct message is also in both users' ``by_user``
arrays, and ``dm_peers`` says who wrote to whom, so that unread counts visit
only the conversations someone wrote to a user in. A room message that
mentions an account is in ``mentions`` under (room, that account).
"""
from __future__ import annotations

import json
import re
from array import array
from bisect import bisect_left, bisect_right
from typing import Any, Callable, Collection, Dict, List, Optional, Sequence, Tuple

from ... import protocol as p
from ..contract import StoreCorrupt
from ..mentions import mentioned
from .state import AccountState

#: The sorted id arrays a message is filed in.
Route = Tuple[array, ...]
#: Replay's callback for one record: its match, id, message JSON length, line number and
#: byte offset.
Replay = Callable[["re.Match[bytes]", int, int, int, int], None]


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


def page(arrays: Sequence[array], durable_id: int, after: Optional[int],
         before: Optional[int], limit: int) -> Tuple[List[int], bool]:
    """The protocol's page of the union of disjoint sorted arrays (durable ids only), and
    whether there is more beyond it in the paging direction.

    With ``after``: the oldest ``limit`` above it, more = newer ones exist.
    Otherwise the newest ``limit`` (below ``before`` if given), more = older ones.
    """
    taken: List[int] = []
    for ids in arrays:
        hi = bisect_right(ids, durable_id)
        if after is not None:
            lo = bisect_right(ids, after, 0, hi)
            taken.extend(ids[lo:min(hi, lo + limit + 1)])
        else:
            if before is not None:
                hi = bisect_left(ids, before, 0, hi)
            taken.extend(ids[max(0, hi - limit - 1):hi])
    if len(arrays) > 1:
        taken.sort()
    more = len(taken) > limit
    return (taken[:limit] if after is not None else taken[-limit:]), more


def take_newest(arrays: Sequence[array], tops: List[int], count: int) -> List[int]:
    """The newest ``count`` ids of the union of disjoint sorted arrays below their
    positions ``tops``, newest first; ``tops`` moves past them (a search's next chunk)."""
    taken: List[int] = []
    for ids, top in zip(arrays, tops):
        taken.extend(ids[max(0, top - count):top])
    taken.sort(reverse=True)
    del taken[count:]
    if taken:
        low = taken[-1]
        for i, ids in enumerate(arrays):
            tops[i] = bisect_left(ids, low, 0, tops[i])
    return taken


class Indexes:
    """The id arrays, the names only the journal knows, and bytes sent per user."""

    def __init__(self) -> None:
        self.by_conv: Dict[str, array] = {}
        self.from_in: Dict[Tuple[str, str], array] = {}    # (conversation, sender) -> ids
        self.by_user: Dict[str, array] = {}                 # a user's direct messages
        self.dm_peers: Dict[str, Dict[str, str]] = {}       # recipient -> conversation -> sender
        self.mentions: Dict[Tuple[str, str], array] = {}    # (room conversation, user) -> ids
        self._routes: Dict[Tuple[str, str], Route] = {}
        self.sent: Dict[str, int] = {}    # sender key -> bytes of message JSON authored
        self.names: Dict[str, str] = {}   # key -> canonical, for names only the journal knows

    # ------------------------------------------------------------ filing

    def route(self, skey: str, tkey: str) -> Route:
        """The id arrays a message from ``skey`` to ``tkey`` (a user's key or a room's)
        is filed in, one per index, mentions aside."""
        route = self._routes.get((skey, tkey))
        if route is not None:
            return route
        conv = p.conversation_key(skey, tkey)
        arrays = [_ids(self.by_conv, conv), _ids(self.from_in, (conv, skey))]
        if not p.is_room(tkey):
            arrays.append(_ids(self.by_user, skey))
            if tkey != skey:
                arrays.append(_ids(self.by_user, tkey))
            self.dm_peers.setdefault(tkey, {})[conv] = skey
        route = self._routes[(skey, tkey)] = tuple(arrays)
        return route

    def mention_route(self, conv: str, ukeys: Collection[str]) -> Route:
        """The arrays of the users a room message mentions."""
        return tuple(_ids(self.mentions, (conv, ukey)) for ukey in ukeys)

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

    def replayer(self, state: AccountState, path: str,
                 on_nonce: Callable[[str, bytes, int], None]) -> Replay:
        """Replay's callback: file one journal record without parsing it (a hot loop).

        Only a room message with an ``@`` in it is parsed, for its mentions.
        A message to a room the accounts do not know is damage: rooms are
        durable before anyone can send to them.
        """
        sent = self.sent
        routes: Dict[bytes, Tuple[Tuple[Callable[[int], None], ...], str, Optional[str]]] = {}

        def index(m: "re.Match[bytes]", msg_id: int, size: int, line: int, offset: int
                  ) -> None:
            pair = m.group(4)
            found = routes.get(pair)
            if found is None:
                found = routes[pair] = self._replay_route(m.group(5), m.group(6), state,
                                                          StoreCorrupt(path, line, offset,
                                                                       "a message to no room"))
            adds, skey, room_conv = found
            for add in adds:
                add(msg_id)
            sent[skey] = sent.get(skey, 0) + size
            if room_conv is not None and b"@" in m.group(2):
                keys = self.mentioned(json.loads(m.group(2))["text"], skey, state)
                for ids in self.mention_route(room_conv, keys):
                    ids.append(msg_id)
            nonce = m.group(7)
            if nonce is not None:
                on_nonce(skey, nonce, msg_id)

        return index

    def _replay_route(self, sender: bytes, to: bytes, state: AccountState,
                      no_room: StoreCorrupt
                      ) -> Tuple[Tuple[Callable[[int], None], ...], str, Optional[str]]:
        """(appends of the route, sender key, room conversation or None) of a record."""
        keys = []
        for raw in (sender, to):
            name = raw.decode("ascii")
            key = p.user_key(name)
            if not p.is_room(name):
                self.names.setdefault(key, name)   # a name only the journal knows
            elif key not in state.rooms:
                raise no_room
            keys.append(key)
        room_conv = p.conversation_key(keys[0], keys[1]) if p.is_room(keys[1]) else None
        return tuple(ids.append for ids in self.route(keys[0], keys[1])), keys[0], room_conv

    @staticmethod
    def mentioned(text: str, skey: str, state: AccountState) -> List[str]:
        """The keys of the accounts a room message from ``skey`` mentions (not ``skey``:
        one's own messages never count)."""
        accounts = state.accounts
        return [key for key in mentioned(text) if key in accounts and key != skey]

    # ------------------------------------------------------------ reading

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

    def room_unread(self, ukey: str, conv: str, marker: int, durable_id: int
                    ) -> Tuple[int, int]:
        """(messages from others above ``marker``, those that mention ``ukey``) in a room."""
        unread = (count_between(self.by_conv.get(conv), marker, durable_id)
                  - count_between(self.from_in.get((conv, ukey)), marker, durable_id))
        return unread, count_between(self.mentions.get((conv, ukey)), marker, durable_id)
