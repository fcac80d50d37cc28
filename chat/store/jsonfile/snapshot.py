"""users.json: the snapshot the accounts journal is compacted into.

``{"version": 2, "seq": S, "users": {key: {"name", "hash", "created"}},
"read": {key: {peer: id}}, "rooms": {key: {"name", "topic", "private",
"created", "by", "members": [key], "invited": [key]}}}`` holds every change up
to number ``S``; users and rooms are keyed by their lower-cased names. A
marker's ``peer`` is the other side of the conversation: a user's key (one's
own for notes to oneself) or a room's. ``rooms`` is left out while there are
none, so a folder without rooms keeps the exact format older versions wrote.

Version 1, written before there was an accounts journal, has no ``seq``: it
holds every change, so it counts as change 0.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List

from ... import protocol as p
from ..contract import Room
from .state import Account, AccountState, RoomRecord, Snapshot

DOC_VERSION = 2


def encode_doc(snap: Snapshot) -> bytes:
    """The users.json snapshot: every account, marker and room as of change ``snap.seq``."""
    users = {key: {"name": a.name, "hash": a.hash, "created": a.created}
             for key, a in snap.accounts.items()}
    read = {user: {peer_of(user, conv): upto for conv, upto in markers.items()}
            for user, markers in snap.read.items()}
    doc: Dict[str, Any] = {"version": DOC_VERSION, "seq": snap.seq, "users": users,
                           "read": read}
    if snap.rooms:
        doc["rooms"] = {key: _encode_room(room) for key, room in snap.rooms.items()}
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode("ascii")


def _encode_room(room: Room) -> Dict[str, Any]:
    return {"name": room.name, "topic": room.topic, "private": room.private,
            "created": room.created, "by": room.creator, "members": sorted(room.members),
            "invited": sorted(room.invited)}


def peer_of(ukey: str, conv: str) -> str:
    """The other side of conversation ``conv`` for ``ukey``, as the files name it."""
    kind, _, rest = conv.partition(":")
    if kind == "room":
        return rest
    first, _, second = rest.partition("|")
    return second if first == ukey else first


def load_doc(state: AccountState, text: str) -> int:
    """Fill an empty ``state`` from a users.json document; its ``seq``.

    ValueError (json.JSONDecodeError among them) says what is wrong with it.
    """
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("version") not in (1, DOC_VERSION):
        raise ValueError(f"not a version 1 or {DOC_VERSION} users document")
    seq = doc.get("seq") if doc["version"] == DOC_VERSION else 0
    if type(seq) is not int or seq < 0:
        raise ValueError(f'a version {DOC_VERSION} users document needs a "seq" count')
    users, read, rooms = doc.get("users"), doc.get("read", {}), doc.get("rooms", {})
    if not all(isinstance(part, dict) for part in (users, read, rooms)):
        raise ValueError('"users", "read" and "rooms" must be objects')
    for key, rec in users.items():   # look-alikes stored before the rule: the first wins
        name = rec.get("name") if isinstance(rec, dict) else None
        if (not isinstance(name, str) or not p.USERNAME_RE.match(name)
                or p.user_key(name) != key or not isinstance(rec.get("hash"), str)):
            raise ValueError(f"bad account record {key[:40]!r}")
        state.add_account(Account(name, rec["hash"], rec.get("created", 0)))
    for key, rec in rooms.items():
        state.add_room(_parse_room(key, rec, state))
    for key, peers in read.items():
        if not isinstance(peers, dict) or not all(type(v) is int for v in peers.values()):
            raise ValueError(f"bad read markers for {key[:40]!r}")
        state.read[key] = {p.conversation_key(key, peer): upto for peer, upto in peers.items()}
    return seq


def _parse_room(key: str, rec: Any, state: AccountState) -> RoomRecord:
    name = rec.get("name") if isinstance(rec, dict) else None
    if not isinstance(name, str) or not p.ROOM_RE.match(name) or name.lower() != key:
        raise ValueError(f"bad room record {key[:40]!r}")
    topic, private, created = rec.get("topic"), rec.get("private"), rec.get("created")
    members, invited = _keys(rec.get("members"), state), _keys(rec.get("invited"), state)
    if (not isinstance(topic, str) or not isinstance(private, bool)
            or not isinstance(created, (int, float)) or not isinstance(rec.get("by"), str)
            or members is None or invited is None):
        raise ValueError(f"bad room record {key[:40]!r}")
    return RoomRecord(name, topic, private, created, rec["by"], set(members), set(invited))


def _keys(value: Any, state: AccountState) -> Any:
    """``value`` if it is a list of account keys, else None."""
    if not isinstance(value, list) or not all(key in state.accounts for key in value):
        return None
    keys: List[str] = value
    return keys
