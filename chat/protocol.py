"""Wire protocol v1: framing, limits, request validation, reply and event builders.

Sans-IO in the manner of h11: nothing here touches a socket or a file, so the
server, the client library and the tests share one definition of the contract
(see PROTOCOL.md) and it can be tested by feeding bytes and checking results.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

PROTOCOL_VERSION = 2
SERVER_NAME = "parallel-chat"
DEFAULT_PORT = 5050

#: A frame may not exceed this many bytes, newline included.
MAX_FRAME_BYTES = 65_536
MAX_USERNAME_CHARS = 32
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1_024
MAX_TEXT_CHARS = 4_096
DEFAULT_HISTORY_LIMIT = 100
MAX_HISTORY_LIMIT = 1_000
MAX_NONCE_CHARS = 64
MAX_QUERY_CHARS = 200
MAX_SEARCH_LIMIT = 100
DEFAULT_SEARCH_LIMIT = 50
MAX_TOPIC_CHARS = 390

#: Every name an account may have (the version 1 rule): what logins and lookups accept.
USERNAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,32}\Z")
#: The version 2 rule for new accounts: a name every IRC client accepts as a nick.
NEW_USERNAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,31}\Z")
ROOM_RE = re.compile(r"#[A-Za-z0-9_\-]{1,32}\Z")

# Error codes: what programs test. `message` beside them is for humans.
BAD_JSON = "bad_json"
BAD_REQUEST = "bad_request"
UNKNOWN_OP = "unknown_op"
FRAME_TOO_LARGE = "frame_too_large"
NOT_LOGGED_IN = "not_logged_in"
ALREADY_LOGGED_IN = "already_logged_in"
INVALID_USERNAME = "invalid_username"
INVALID_PASSWORD = "invalid_password"
USERNAME_TAKEN = "username_taken"
AUTH_FAILED = "auth_failed"
RATE_LIMITED = "rate_limited"
UNKNOWN_USER = "unknown_user"
INVALID_TEXT = "invalid_text"
UNKNOWN_MESSAGE = "unknown_message"
SERVER_ERROR = "server_error"
INVALID_ROOM = "invalid_room"
ROOM_TAKEN = "room_taken"
UNKNOWN_ROOM = "unknown_room"
NOT_A_MEMBER = "not_a_member"
NOT_INVITED = "not_invited"
INVALID_TOPIC = "invalid_topic"

ERROR_CODES = frozenset({
    BAD_JSON, BAD_REQUEST, UNKNOWN_OP, FRAME_TOO_LARGE, NOT_LOGGED_IN,
    ALREADY_LOGGED_IN, INVALID_USERNAME, INVALID_PASSWORD, USERNAME_TAKEN,
    AUTH_FAILED, RATE_LIMITED, UNKNOWN_USER, INVALID_TEXT, UNKNOWN_MESSAGE,
    SERVER_ERROR, INVALID_ROOM, ROOM_TAKEN, UNKNOWN_ROOM, NOT_A_MEMBER, NOT_INVITED,
    INVALID_TOPIC,
})


RequestId = Union[str, int, float]
JSONDict = Dict[str, Any]


class ChatError(Exception):
    """A protocol-level failure carrying one of ERROR_CODES.

    The server raises it from op handlers and turns it into an error reply;
    the client library raises it when a reply has ``ok: false``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# ---------------------------------------------------------------- framing

class FrameDecoder:
    """Splits a byte stream into frames (lines), enforcing the frame limit.

    ``feed`` returns every complete line (without its newline). Once a line
    grows past the limit, ``too_large`` becomes true and further input is
    ignored: the contract says the peer is told and the connection closed.
    """

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.max_line = max_frame - 1  # the newline counts towards the limit
        self.too_large = False
        self._partial = b""

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held back, waiting for its newline."""
        return len(self._partial)

    def feed(self, data: bytes) -> List[bytes]:
        if self.too_large or not data:
            return []
        if self._partial:
            data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        max_line = self.max_line
        for i, line in enumerate(lines):
            if len(line) > max_line:
                self.too_large = True
                self._partial = b""
                return lines[:i]
        if len(self._partial) > max_line:
            self.too_large = True
            self._partial = b""
        return lines


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


#: One decoder for every frame: ``json.loads`` with an option builds a new decoder
#: per call, which cost a tenth of a send's CPU.
_STRICT_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


_scan_value = _STRICT_DECODER.scan_once
_JSON_SPACE = " \t\n\r"


def decode_json_line(line: bytes) -> Any:
    """Parse one frame as strict UTF-8 JSON; ChatError(bad_json) on anything else.

    The common frame (a value with at most JSON whitespace after it) is read by
    the C scanner directly, which halves the cost of ``JSONDecoder.decode``'s
    Python wrapper; anything else (leading space, trailing data, an error) is
    left to ``decode``, which has the same rules and says what is wrong.
    """
    try:
        text = line.decode("utf-8")
        try:
            value, end = _scan_value(text, 0)
        except StopIteration:
            value, end = None, -1
        if end == len(text) or (end > 0 and not text[end:].strip(_JSON_SPACE)):
            return value
        return _STRICT_DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else "not valid JSON"
        raise ChatError(BAD_JSON, f"the frame is {reason}") from None


def encode_frame(obj: JSONDict) -> bytes:
    """One compact JSON object and its newline, ASCII-escaped so any text survives."""
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode("ascii")


# ---------------------------------------------------------------- requests

class Request(NamedTuple):
    """A validated request: its op, its id (None when absent) and its fields.

    A NamedTuple made with ``tuple.__new__`` (``_new_request``), at C speed: one
    is built for every frame."""

    op: str
    id: Optional[RequestId]
    fields: JSONDict


_new_request = tuple.__new__


def _is_id(value: Any) -> bool:
    """An id the server can echo: a string that is valid Unicode (a lone surrogate
    would be echoed as an escape strict JSON parsers reject), an int, or a finite float."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return not _has_surrogate(value)
    return isinstance(value, int)


def request_id_of(obj: Any) -> Optional[RequestId]:
    """The id to echo in a reply, or None when there is none that can be read."""
    if isinstance(obj, dict):
        value = obj.get("id")
        if value is not None and _is_id(value):
            return value
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Field:
    """One request field: its JSON type, whether it must be there, and bounds
    (of an integer's value, or of a string's length) outside which it is
    ``bad_request``. Rules with their own error codes (usernames, passwords,
    text, room names, topics) are checked by the op, not here."""

    kind: str                       # "string", "integer" or "boolean"
    required: bool = False
    bounds: Optional[Tuple[int, int]] = None


@dataclass(frozen=True)
class OpSpec:
    """What an op takes, and whether it needs a logged-in connection: the one
    table the server's dispatch is derived from."""

    fields: Dict[str, Field]
    login_required: bool = True


_STR, _INT, _BOOL = "string", "integer", "boolean"
_LIMIT = Field(_INT, bounds=(1, MAX_HISTORY_LIMIT))
_PAGE = {"after": Field(_STR), "limit": _LIMIT}   # users, rooms, members: forwards by name
_CREDENTIALS = {"username": Field(_STR, True), "password": Field(_STR, True)}

#: Every op of the protocol, version 1 and 2.
OP_SPECS: Dict[str, OpSpec] = {
    "signup": OpSpec(_CREDENTIALS, login_required=False),
    "login": OpSpec(_CREDENTIALS, login_required=False),
    "ping": OpSpec({}, login_required=False),
    "logout": OpSpec({}),
    "users": OpSpec(_PAGE),
    "online": OpSpec({}),
    "send": OpSpec({"to": Field(_STR, True), "text": Field(_STR, True),
                    "reply_to": Field(_INT), "nonce": Field(_STR, bounds=(1, MAX_NONCE_CHARS))}),
    "history": OpSpec({"with": Field(_STR), "after": Field(_INT), "before": Field(_INT),
                       "limit": _LIMIT}),
    "read": OpSpec({"with": Field(_STR, True), "upto": Field(_INT, True)}),
    "password": OpSpec({"old": Field(_STR, True), "new": Field(_STR, True)}),
    "search": OpSpec({"query": Field(_STR, True, (1, MAX_QUERY_CHARS)), "with": Field(_STR),
                      "before": Field(_INT), "limit": Field(_INT, bounds=(1, MAX_SEARCH_LIMIT))}),
    "room_create": OpSpec({"room": Field(_STR, True), "topic": Field(_STR),
                           "private": Field(_BOOL)}),
    "join": OpSpec({"room": Field(_STR, True)}),
    "leave": OpSpec({"room": Field(_STR, True)}),
    "invite": OpSpec({"room": Field(_STR, True), "username": Field(_STR, True)}),
    "rooms": OpSpec(_PAGE),
    "members": OpSpec({"room": Field(_STR, True), **_PAGE}),
    "topic": OpSpec({"room": Field(_STR, True), "topic": Field(_STR, True)}),
}
OPS = tuple(OP_SPECS)

#: The Python type each kind must have exactly (so True is not an integer).
_KIND_TYPES: Dict[str, type] = {_STR: str, _INT: int, _BOOL: bool}
#: op -> its fields as (name, exact type, required, bounds): what parse_request walks,
#: once per request (a hot path: no call per field when all is well).
_FIELD_TABLE: Dict[str, Tuple[Tuple[str, type, bool, Optional[Tuple[int, int]]], ...]] = {
    op: tuple((name, _KIND_TYPES[f.kind], f.required, f.bounds)
              for name, f in spec.fields.items())
    for op, spec in OP_SPECS.items()}


def _field_error(op: str, name: str, value: Any) -> ChatError:
    """Why a field's value is refused, in words (the slow path)."""
    field = OP_SPECS[op].fields[name]
    if type(value) is not _KIND_TYPES[field.kind]:
        return ChatError(BAD_REQUEST, f'"{name}" must be a {field.kind}')
    low, high = field.bounds or (0, 0)
    what = " characters long" if field.kind is _STR else ""
    return ChatError(BAD_REQUEST, f'"{name}" must be from {low} to {high}{what}')


def parse_request(obj: Any) -> Request:
    """Check a decoded frame against the op's spec (types, presence, bounds).

    Value rules that have their own error codes (username, password, text,
    room, topic) are left to the op handlers, which call the ``validate_*``
    functions. Unknown fields are ignored so that later clients can add
    optional ones.
    """
    if not isinstance(obj, dict):
        raise ChatError(BAD_REQUEST, "a request must be a JSON object")
    if "id" in obj and not _is_id(obj["id"]):
        raise ChatError(BAD_REQUEST, "id must be a number or a string of valid Unicode")
    op = obj.get("op")
    if not isinstance(op, str):
        raise ChatError(BAD_REQUEST, 'a request needs "op", a string')
    table = _FIELD_TABLE.get(op)
    if table is None:
        raise ChatError(UNKNOWN_OP, f"unknown op {op[:40]!r}")
    fields: JSONDict = {}
    for name, kind, required, bounds in table:
        value = obj.get(name)
        if value is None:
            if required:
                raise ChatError(BAD_REQUEST,
                                f'{op} needs "{name}", a {OP_SPECS[op].fields[name].kind}')
            continue
        if type(value) is not kind:
            raise _field_error(op, name, value)
        if bounds is not None:
            size = len(value) if kind is str else value
            if not bounds[0] <= size <= bounds[1]:
                raise _field_error(op, name, value)
        fields[name] = value
    return _new_request(Request, (op, obj.get("id"), fields))


def validate_username(name: str) -> None:
    """The rule for new names (version 2); stored version 1 names still load and log in."""
    if not NEW_USERNAME_RE.match(name):
        raise ChatError(
            INVALID_USERNAME,
            f"a username is 1 to {MAX_USERNAME_CHARS} characters: a letter or _ first, "
            "then letters, digits, _ or -",
        )


def validate_room_name(name: str) -> None:
    if not ROOM_RE.match(name):
        raise ChatError(INVALID_ROOM, "a room name is # and then 1 to 32 characters "
                                      "from A-Z a-z 0-9 _ -")


_TOPIC_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def validate_topic(topic: str) -> None:
    """0 to 390 characters on one line: no C0/C1 control, DEL, or line/paragraph separator."""
    if len(topic) > MAX_TOPIC_CHARS:
        raise ChatError(INVALID_TOPIC, f"a topic is at most {MAX_TOPIC_CHARS} characters")
    if _TOPIC_FORBIDDEN.search(topic) or _has_surrogate(topic):
        raise ChatError(INVALID_TOPIC, "a topic is one line with no control characters")


def is_room(name: str) -> bool:
    """Whether the other side of a conversation is a room (``#general``) or a user."""
    return name.startswith("#")


def conversation_key(user: str, other: str) -> str:
    """The one key a conversation is filed under, whoever looks at it:
    ``room:#general`` for a room, ``dm:alice|bob`` (case-folded, sorted) for two users."""
    if is_room(other):
        return "room:" + other.lower()
    a, b = sorted((user.lower(), other.lower()))
    return f"dm:{a}|{b}"


#: Look-alikes folded by ``name_skeleton``: digits and letters a reader confuses.
_SKELETON_CHARS = str.maketrans({"1": "l", "i": "l", "|": "l", "0": "o"})


def name_skeleton(name: str) -> str:
    """What a name looks like, for refusing look-alikes of existing accounts.

    Case-folded, with ``l``/``I``/``1``, ``O``/``0`` and ``rn``/``m`` folded
    together: ``VlCTlM``, ``vict1m`` and ``VICTIM`` share one skeleton.
    """
    return name.lower().replace("rn", "m").translate(_SKELETON_CHARS)


def validate_password(password: str) -> None:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ChatError(
            INVALID_PASSWORD,
            f"a password is {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters",
        )


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def validate_text(text: str) -> None:
    if not text or text.isspace():
        raise ChatError(INVALID_TEXT, "a message cannot be empty or only white space")
    if len(text) > MAX_TEXT_CHARS:
        raise ChatError(INVALID_TEXT, f"a message is at most {MAX_TEXT_CHARS} characters")
    if _has_surrogate(text):
        raise ChatError(INVALID_TEXT, "a message must be valid Unicode (no lone surrogates)")


def user_key(name: str) -> str:
    """Accounts are unique regardless of case: this is the key they are filed under."""
    return name.lower()


# ---------------------------------------------------------------- messages

@dataclass(frozen=True)
class Message:
    """A stored direct message, as the contract defines it."""

    id: int
    sender: str
    to: str
    text: str
    ts: float
    reply_to: Optional[int] = None

    def to_json(self) -> str:
        return message_json(self.id, self.sender, self.to, self.text, self.ts, self.reply_to)

    def to_dict(self) -> JSONDict:
        return {"id": self.id, "from": self.sender, "to": self.to, "text": self.text,
                "ts": self.ts, "reply_to": self.reply_to}

    @classmethod
    def from_dict(cls, obj: Any) -> "Message":
        """Build from a wire object; ChatError(bad_request) if it is not one."""
        try:
            reply_to = obj.get("reply_to")
            msg = cls(int(obj["id"]), str(obj["from"]), str(obj["to"]), str(obj["text"]),
                      float(obj["ts"]), None if reply_to is None else int(reply_to))
        except (AttributeError, KeyError, TypeError, ValueError):
            raise ChatError(BAD_REQUEST, "not a message object") from None
        return msg


def message_json(msg_id: int, sender: str, to: str, text: str, ts: float,
                 reply_to: Optional[int]) -> str:
    """The wire JSON of a message, built directly: this runs once per message sent.

    Usernames are validated to a safe alphabet, so only the text needs escaping.
    Key order is fixed (id, from, to first), which the store relies on to index
    its journal without parsing whole records.
    """
    reply = "null" if reply_to is None else str(int(reply_to))
    return (f'{{"id":{msg_id},"from":"{sender}","to":"{to}","text":{_json_string(text)},'
            f'"ts":{ts!r},"reply_to":{reply}}}')


# ---------------------------------------------------------------- replies and events

def _id_prefix(req_id: Optional[RequestId]) -> str:
    """The start of a reply: its id, formatted without json.dumps for the common
    integer id (this runs once per reply; json.dumps costs a microsecond)."""
    if req_id is None:
        return "{"
    if type(req_id) is int:
        return '{"id":%d,' % req_id
    return '{"id":' + json.dumps(req_id) + ","


def ok_reply(req_id: Optional[RequestId], **fields: Any) -> bytes:
    obj: JSONDict = {} if req_id is None else {"id": req_id}
    obj["ok"] = True
    obj.update(fields)
    return encode_frame(obj)


def ok_reply_raw(req_id: Optional[RequestId], name: str, raw_json: str) -> bytes:
    """A success reply with one field whose JSON is already built (messages, lists)."""
    return f'{_id_prefix(req_id)}"ok":true,"{name}":{raw_json}}}\n'.encode("ascii")


def _trim_to_frame(req_id: Optional[RequestId], name: str, items: List[str],
                   keep_oldest: bool) -> Tuple[List[str], bool]:
    """The items (JSON texts) that fit in one reply frame beside the other fields,
    from the end that keeps paging correct; and whether any were cut."""
    budget = MAX_FRAME_BYTES - len(ok_reply_raw(req_id, name, '[],"more":false'))
    total = sum(len(m) + 1 for m in items)
    if total <= budget + 1:
        return items, False
    ordered = items if keep_oldest else items[::-1]
    kept: List[str] = []
    total = 0
    for item in ordered:
        total += len(item) + 1
        if total > budget + 1:
            break
        kept.append(item)
    return (kept if keep_oldest else kept[::-1]), True


def history_reply(req_id: Optional[RequestId], messages: List[str], keep_oldest: bool,
                  more: Optional[bool] = None) -> bytes:
    """A history (or search) reply trimmed to fit one frame.

    A page of long messages can outgrow MAX_FRAME_BYTES; it is cut to the
    messages that fit, from the end that keeps paging correct: the oldest
    ones when paging forwards (``after``), else the newest ones. A single
    message always fits (4,096 characters escaped to at most 12 bytes each).
    With ``more`` given (version 2), the reply says whether messages exist
    beyond the page in the paging direction, counting the ones cut here.
    """
    kept, cut = _trim_to_frame(req_id, "messages", messages, keep_oldest)
    listed = "[" + ",".join(kept) + "]"
    if more is not None:
        listed += ',"more":' + ("true" if more or cut else "false")
    return ok_reply_raw(req_id, "messages", listed)


def list_reply(req_id: Optional[RequestId], name: str, entries: List[Any],
               limit: Optional[int]) -> bytes:
    """A reply listing ``entries`` (sorted, already started after ``after``): at most
    ``limit`` of them, and never more than fit in one frame; ``more`` says whether
    any were left out (``users``, ``rooms``, ``members``)."""
    shown = entries if limit is None else entries[:limit]
    texts = [json.dumps(e, separators=(",", ":")) for e in shown]
    kept, _ = _trim_to_frame(req_id, name, texts, keep_oldest=True)
    more = len(kept) < len(entries)
    return ok_reply_raw(req_id, name, "[" + ",".join(kept) + '],"more":'
                        + ("true" if more else "false"))


def start_after(names: List[str], after: Optional[str]) -> List[str]:
    """The names (sorted by their lower-cased spelling) that come after ``after``."""
    if after is None:
        return names
    key = after.lower()
    return [n for n in names if n.lower() > key]


def error_reply(req_id: Optional[RequestId], code: str, message: str) -> bytes:
    obj: JSONDict = {} if req_id is None else {"id": req_id}
    obj["ok"] = False
    obj["error"] = {"code": code, "message": message}
    return encode_frame(obj)


def event(name: str, **fields: Any) -> bytes:
    obj: JSONDict = {"event": name}
    obj.update(fields)
    return encode_frame(obj)


def message_event(msg_json: str) -> bytes:
    return ('{"event":"message","message":' + msg_json + "}\n").encode("ascii")


def hello_event() -> bytes:
    return event("hello", server=SERVER_NAME, protocol=PROTOCOL_VERSION)


# ---------------------------------------------------------------- the client's half

def is_event(frame: Any) -> bool:
    """An event is pushed by the server and never has ``ok``; a reply always does."""
    return isinstance(frame, dict) and "event" in frame and "ok" not in frame


def error_of(frame: JSONDict) -> ChatError:
    """The ChatError an ``ok: false`` frame carries, whatever shape its error has."""
    error = frame.get("error")
    if not isinstance(error, dict):
        error = {}
    return ChatError(str(error.get("code", SERVER_ERROR)),
                     str(error.get("message", "the server refused")))


def check_hello(frame: Any, versions: Tuple[int, ...]) -> JSONDict:
    """The server's first frame: its hello (speaking one of ``versions``), or the
    ChatError it sent instead when it refused the connection; ValueError otherwise."""
    if isinstance(frame, dict) and frame.get("ok") is False:
        raise error_of(frame)
    if (not isinstance(frame, dict) or frame.get("event") != "hello"
            or frame.get("protocol") not in versions):
        raise ValueError(f"unexpected greeting {str(frame)[:80]!r}")
    return frame


def encode_request(op: str, req_id: Optional[RequestId] = None, **fields: Any) -> bytes:
    """A request frame, as the client library and tests send it (None fields left out)."""
    obj: JSONDict = {"op": op}
    if req_id is not None:
        obj["id"] = req_id
    obj.update({k: v for k, v in fields.items() if v is not None})
    return encode_frame(obj)
