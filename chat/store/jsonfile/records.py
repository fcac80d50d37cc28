"""The folder's file names and the byte format of one journal line of each journal.

Kept apart from the code that writes and replays them so that the format a
folder on disk is in can be read in one place. Every line is
``{<payload>,"c":<zlib.crc32 of the checked bytes>}`` and a newline.
"""
from __future__ import annotations

import json
import re
import zlib
from typing import Any, Dict, Optional

USERS_FILE = "users.json"
ACCOUNTS_FILE = "accounts.jsonl"
JOURNAL_FILE = "messages.jsonl"

_NAME = rb"[A-Za-z0-9_.\-]{1,32}"

#: One message-journal line: ``{"m":<message JSON>,"c":<crc>}``, or with the sender's
#: nonce ``{"m":<message JSON>,"n":<nonce as a JSON string>,"c":<crc>}``. The crc covers
#: everything between ``{"m":`` and ``,"c":`` (group 1: for a line without a nonce, the
#: message JSON alone, as lines were before nonces). Group 2 is the message JSON, 3 its id,
#: 4 the from/to pair (a cache key), 5 and 6 the names (the recipient a user or a room),
#: 7 the nonce JSON or None, 8 the crc. The message JSON's key order is fixed by
#: protocol.message_json and it ends with ``"reply_to"``, which is what makes a regular
#: expression enough to index a record without parsing it.
MESSAGE_RECORD = re.compile(
    rb'\{"m":((\{"id":([0-9]{1,18}),("from":"(' + _NAME + rb')","to":"(#?' + _NAME
    + rb')"),.*,"reply_to":(?:null|[0-9]{1,18})\})(?:,"n":("(?:[^"\\]|\\.){1,800}"))?),'
    rb'"c":([0-9]{1,10})\}\Z', re.DOTALL)
MESSAGE_CRC_GROUP = 8
#: Bytes before the message JSON in a message-journal line: ``{"m":``.
BODY_START = 5

#: One accounts-journal line, ``{"a":<change JSON>,"c":<crc>}``: group 1 the change JSON
#: (what the crc covers), 2 its sequence number, 3 the crc.
ACCOUNT_RECORD = re.compile(rb'\{"a":(\{"seq":([0-9]{1,18}),.*\}),"c":([0-9]{1,10})\}\Z',
                            re.DOTALL)
ACCOUNT_CRC_GROUP = 3


def message_line(body: bytes, nonce: Optional[bytes] = None) -> bytes:
    """The journal line of a message whose JSON is ``body`` (ASCII), with the nonce
    (``nonce_json``) it was sent with, if any."""
    if nonce is None:
        return b'{"m":%s,"c":%d}\n' % (body, zlib.crc32(body))
    checked = b'%s,"n":%s' % (body, nonce)
    return b'{"m":%s,"c":%d}\n' % (checked, zlib.crc32(checked))


def nonce_json(nonce: str) -> bytes:
    """A nonce as the journal holds it: a JSON string, ASCII."""
    return json.dumps(nonce).encode("ascii")


def change_line(seq: int, change: Dict[str, Any]) -> bytes:
    """The accounts-journal line of change number ``seq``."""
    body = json.dumps(dict(seq=seq, **change), separators=(",", ":")).encode("ascii")
    return b'{"a":%s,"c":%d}\n' % (body, zlib.crc32(body))
