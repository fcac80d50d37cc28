"""The folder's file names and the byte format of one journal line of each journal.

Kept apart from the code that writes and replays them so that the format a
folder on disk is in can be read in one place. Every line is
``{<payload>,"c":<zlib.crc32 of the checked bytes>}`` and a newline.
"""
from __future__ import annotations

import json
import re
import zlib
from typing import Any, Dict

USERS_FILE = "users.json"
ACCOUNTS_FILE = "accounts.jsonl"
JOURNAL_FILE = "messages.jsonl"

_NAME = rb"[A-Za-z0-9_.\-]{1,32}"

#: One message-journal line, ``{"m":<message JSON>,"c":<crc>}``. Group 1 is the message
#: JSON (what the crc covers), 2 its id, 3 the from/to pair (a cache key), 4 and 5 the
#: names, 6 the crc. The message JSON's key order is fixed by protocol.message_json,
#: which is what makes a regular expression enough to index a record without parsing it.
MESSAGE_RECORD = re.compile(
    rb'\{"m":(\{"id":([0-9]{1,18}),("from":"(' + _NAME + rb')","to":"(' + _NAME
    + rb')"),.*\}),"c":([0-9]{1,10})\}\Z', re.DOTALL)
MESSAGE_CRC_GROUP = 6
#: Bytes before the message JSON in a message-journal line: ``{"m":``.
BODY_START = 5

#: One accounts-journal line, ``{"a":<change JSON>,"c":<crc>}``: group 1 the change JSON
#: (what the crc covers), 2 its sequence number, 3 the crc.
ACCOUNT_RECORD = re.compile(rb'\{"a":(\{"seq":([0-9]{1,18}),.*\}),"c":([0-9]{1,10})\}\Z',
                            re.DOTALL)
ACCOUNT_CRC_GROUP = 3


def message_line(body: bytes) -> bytes:
    """The journal line of a message whose JSON is ``body`` (ASCII)."""
    return b'{"m":%s,"c":%d}\n' % (body, zlib.crc32(body))


def change_line(seq: int, change: Dict[str, Any]) -> bytes:
    """The accounts-journal line of change number ``seq``."""
    body = json.dumps(dict(seq=seq, **change), separators=(",", ":")).encode("ascii")
    return b'{"a":%s,"c":%d}\n' % (body, zlib.crc32(body))
