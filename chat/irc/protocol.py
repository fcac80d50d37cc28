"""The IRC wire protocol, sans-IO: lines in, ``Message`` out, and back.

Like ``chat.protocol`` for the native protocol, nothing here touches a socket or
server state, so the gateway's session and the tests share one definition of the
wire format. It follows RFC 1459/2812 as the modern IRC client protocol document
(modern.ircdocs.horse) reads them, plus IRCv3 message-tags, server-time, CAP 302
and SASL 3.1/3.2. The server is UTF8ONLY: a line that is not UTF-8 is refused
here, not turned into mojibake further on.

Limits (``parse_line`` and ``format_line`` enforce the same ones, so whatever the
gateway formats, a client can parse): the part of a line after its tags is at
most 512 bytes with its CR LF; the tags section (``@``, tags, one space) is at
most 8191 bytes; at most 15 parameters.
"""
from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Set, Tuple

from chat.irc import numerics
from chat.protocol import NEW_USERNAME_RE, ROOM_RE, FrameDecoder

#: A line without its tags, CR LF included (RFC 1459).
MAX_LINE_BYTES = 512
#: The tags section, '@' and the space after it included (IRCv3 message-tags).
MAX_TAGS_BYTES = 8191
#: What ``LineBuffer`` accepts for one line, CR LF included.
MAX_WIRE_LINE_BYTES = MAX_TAGS_BYTES + MAX_LINE_BYTES
MAX_PARAMS = 15
CHANTYPES = "#"

_COMMAND_RE = re.compile(r"[A-Za-z]+\Z|[0-9]{3}\Z")
#: ``[+][vendor/]name``; a vendor is a host name.
_TAG_KEY_RE = re.compile(r"\+?(?:[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*/)?[A-Za-z0-9\-]+\Z")
_FORBIDDEN = ("\0", "\r", "\n")


class IrcError(Exception):
    """A line or value that breaks the IRC protocol; ``reason`` says what, in words.

    ``code`` is the numeric the gateway should answer with when there is one
    (``ERR_SASLTOOLONG`` ...); otherwise it decides (often: a closing ERROR).
    """

    def __init__(self, reason: str, code: Optional[str] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Message(NamedTuple):
    """One IRC message. ``command`` is upper case (numerics are three digits);
    ``params`` includes the trailing parameter as its last item, without the ':'."""

    tags: Dict[str, str]
    source: Optional[str]
    command: str
    params: List[str]

    @classmethod
    def build(cls, command: str, *params: str, source: Optional[str] = None,
              tags: Optional[Dict[str, str]] = None) -> "Message":
        """The short way to write a message: ``Message.build("PING", "x")``."""
        return cls(dict(tags or {}), source, command.upper(), list(params))


# ---------------------------------------------------------------- tags

_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_UNESCAPE_RE = re.compile(r"\\(.?)", re.DOTALL)
_ESCAPE_TABLE = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})


def unescape_tag_value(raw: str) -> str:
    """IRCv3: ``\\:`` ``\\s`` ``\\\\`` ``\\r`` ``\\n``; any other escaped character
    stands for itself and a lone trailing backslash is dropped, as the spec says."""
    if "\\" not in raw:
        return raw
    return _UNESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), raw)


def escape_tag_value(value: str) -> str:
    return value.translate(_ESCAPE_TABLE)


def _parse_tags(section: str) -> Dict[str, str]:
    """``a=1;+b;c=x\\sy`` -> dict. A key given twice keeps its last value (IRCv3);
    ``a`` and ``a=`` both mean the empty value."""
    if not section:
        raise IrcError("the tags section after '@' is empty")
    tags: Dict[str, str] = {}
    for item in section.split(";"):
        key, _, value = item.partition("=")
        if not _TAG_KEY_RE.match(key):
            raise IrcError(f"malformed tag key {key!r}")
        tags[key] = unescape_tag_value(value)
    return tags


def _format_tags(tags: Mapping[str, str]) -> str:
    items = []
    for key, value in tags.items():
        if not _TAG_KEY_RE.match(key):
            raise IrcError(f"malformed tag key {key!r}")
        if "\0" in value:
            raise IrcError(f"tag {key} holds a NUL character")
        items.append(f"{key}={escape_tag_value(value)}" if value else key)
    return ";".join(items)


# ---------------------------------------------------------------- parsing

def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IrcError(f"the line is not valid UTF-8 (byte {exc.start}); "
                       "this server only accepts UTF-8") from None


def parse_line(line: bytes) -> Message:
    """One line, without its CR LF, as a ``Message``; IrcError says what is wrong.

    Runs of spaces between parameters count as one, as servers do in practice.
    """
    if b"\0" in line or b"\r" in line or b"\n" in line:
        raise IrcError("the line holds a NUL, CR or LF character")
    tags: Dict[str, str] = {}
    if line.startswith(b"@"):
        section, space, line = line.partition(b" ")
        if len(section) + len(space) > MAX_TAGS_BYTES:
            raise IrcError(f"the tags are longer than {MAX_TAGS_BYTES} bytes")
        tags = _parse_tags(_decode(section[1:]))
        line = line.lstrip(b" ")
    if len(line) > MAX_LINE_BYTES - 2:
        raise IrcError(f"the line is longer than {MAX_LINE_BYTES} bytes")
    text = _decode(line)
    source = None
    if text.startswith(":"):
        source, _, text = text[1:].partition(" ")
        if not source:
            raise IrcError("the source after ':' is empty")
    text = text.lstrip(" ")
    middle, colon, trailing = text.partition(" :")
    if text.startswith(":"):   # no command at all: ":src :text"
        raise IrcError("the line has no command")
    params = [param for param in middle.split(" ") if param]
    if colon:
        params.append(trailing)
    if not params:
        raise IrcError("the line has no command")
    command = params.pop(0)
    if not _COMMAND_RE.match(command):
        raise IrcError(f"{command!r} is not a command (letters, or three digits)")
    if len(params) > MAX_PARAMS:
        raise IrcError(f"the line has more than {MAX_PARAMS} parameters")
    return Message(tags, source, command.upper(), params)


# ---------------------------------------------------------------- formatting

def _check_text(what: str, value: str) -> None:
    if any(c in value for c in _FORBIDDEN):
        raise IrcError(f"{what} holds a NUL, CR or LF character")


def _format_params(params: List[str]) -> str:
    if len(params) > MAX_PARAMS:
        raise IrcError(f"more than {MAX_PARAMS} parameters")
    out = []
    for i, param in enumerate(params):
        _check_text("a parameter", param)
        if i == len(params) - 1:
            out.append(":" + param if not param or " " in param or param[0] == ":" else param)
        elif not param or " " in param or param[0] == ":":
            raise IrcError(f"middle parameter {param!r} is empty, holds a space "
                           "or starts with ':'")
        else:
            out.append(param)
    return " ".join(out)


def format_line(msg: Message) -> bytes:
    """The wire form of ``msg`` with its CR LF: the inverse of ``parse_line``.

    Refuses (IrcError) what could not be parsed back as the same message: NUL, CR
    or LF outside tag values (which escape CR and LF), a middle parameter that is
    empty, holds a space or starts with ':', and lines over the limits.
    """
    if not _COMMAND_RE.match(msg.command):
        raise IrcError(f"{msg.command!r} is not a command")
    head = ""
    if msg.tags:
        head = "@" + _format_tags(msg.tags) + " "
    body = msg.command.upper()
    if msg.source is not None:
        _check_text("the source", msg.source)
        if not msg.source or " " in msg.source:
            raise IrcError("the source is empty or holds a space")
        body = f":{msg.source} {body}"
    if msg.params:
        body = f"{body} {_format_params(msg.params)}"
    try:
        head_bytes, body_bytes = head.encode("utf-8"), body.encode("utf-8")
    except UnicodeEncodeError:
        raise IrcError("the message holds text that is not encodable as UTF-8") from None
    if len(head_bytes) > MAX_TAGS_BYTES:
        raise IrcError(f"the tags are longer than {MAX_TAGS_BYTES} bytes")
    if len(body_bytes) > MAX_LINE_BYTES - 2:
        raise IrcError(f"the line is longer than {MAX_LINE_BYTES} bytes")
    return head_bytes + body_bytes + b"\r\n"


# ---------------------------------------------------------------- line buffer

class LineBuffer(FrameDecoder):
    """Splits a byte stream into lines (LF, with an optional CR before it).

    The native ``FrameDecoder`` with IRC's line ending: ``feed`` returns every
    complete, non-empty line without its CR LF (servers ignore empty lines).
    Once a line grows past ``max_line`` bytes (CR LF included), ``too_long``
    becomes true, the lines before it are still returned, nothing more is
    buffered and further input is ignored: the caller sends a closing ERROR.
    """

    def __init__(self, max_line: int = MAX_WIRE_LINE_BYTES) -> None:
        super().__init__(max_frame=max_line)

    @property
    def too_long(self) -> bool:
        return self.too_large

    def feed(self, data: bytes) -> List[bytes]:
        lines = super().feed(data)
        return [line[:-1] if line[-1:] == b"\r" else line
                for line in lines if line and line != b"\r"]


# ---------------------------------------------------------------- names

_ASCII_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def casefold(name: str) -> str:
    """CASEMAPPING=ascii: only A-Z fold, so two names are the same exactly when
    every client that reads our ISUPPORT thinks so."""
    return name.translate(_ASCII_FOLD)


def is_channel(name: str) -> bool:
    """Whether a target names a channel (CHANTYPES=#) rather than a nick."""
    return name[:1] in CHANTYPES and len(name) > 1


def valid_channel(name: str) -> bool:
    """A channel the gateway can map to a room (the native room-name rule)."""
    return bool(ROOM_RE.match(name))


def valid_nick(name: str) -> bool:
    """A nick the gateway accepts: the v2 username rule, which starts with a letter
    or '_' (never a digit or '-', which IRC clients would misread)."""
    return bool(NEW_USERNAME_RE.match(name)) and not name[0].isdigit() and name[0] != "-"


# ---------------------------------------------------------------- replies

def numeric(server_name: str, nick: Optional[str], code: str, *params: str,
            text: Optional[str] = None) -> Message:
    """A numeric reply from the server to ``nick`` ('*' before it has one).

    The closing sentence is ``text`` when given, else the standard one from
    ``numerics.DEFAULT_TEXT`` when the numeric has one, else nothing.
    """
    closing = text if text is not None else numerics.DEFAULT_TEXT.get(code)
    tail = [closing] if closing is not None else []
    return Message({}, server_name, code, [nick or "*", *params, *tail])


@dataclass(frozen=True)
class IsupportConfig:
    """What RPL_ISUPPORT advertises; the defaults are the gateway's promises."""

    network: str = "parallel-chat"
    nicklen: int = 32
    channellen: int = 33
    topiclen: int = 390
    monitor: int = 100


#: How many tokens one 005 line carries (the modern document's advice).
MAX_ISUPPORT_TOKENS = 13


def isupport_tokens(config: Optional[IsupportConfig] = None) -> List[str]:
    """The ISUPPORT tokens of the gateway, e.g. ``NICKLEN=32``; ``isupport_messages``
    splits them into 005 lines."""
    config = config or IsupportConfig()
    return [
        "CASEMAPPING=ascii", f"CHANTYPES={CHANTYPES}", f"NICKLEN={config.nicklen}",
        f"CHANNELLEN={config.channellen}", f"TOPICLEN={config.topiclen}",
        f"MONITOR={config.monitor}", "UTF8ONLY", "PREFIX=(o)@", "CHANMODES=,,,i",
        f"NETWORK={config.network}",
    ]


def isupport_messages(server_name: str, nick: str, tokens: List[str]) -> List[Message]:
    """The 005 lines for ``tokens``, at most ``MAX_ISUPPORT_TOKENS`` a line."""
    step = MAX_ISUPPORT_TOKENS
    return [numeric(server_name, nick, numerics.RPL_ISUPPORT, *tokens[i:i + step])
            for i in range(0, len(tokens), step)]


def server_time(ts: float) -> str:
    """IRCv3 server-time: UTC with milliseconds, ``2026-11-25T16:59:01.123Z``."""
    millis = round(ts * 1000)
    seconds, ms = divmod(millis, 1000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{ms:03d}Z"


def parse_server_time(value: str) -> float:
    """The inverse of ``server_time`` (what clients send in chathistory and markers)."""
    try:
        stamp = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        raise IrcError(f"{value!r} is not a timestamp like 2026-11-25T16:59:01.123Z") from None
    return stamp.replace(tzinfo=timezone.utc).timestamp()


# ---------------------------------------------------------------- splitting text

def _attaches(prev: str, ch: str, ri_run: int) -> bool:
    """Whether ``ch`` belongs to the cluster ``prev`` ends. A stdlib approximation of
    UAX #29 (``chat.tui.graphemes`` may not be imported from here): marks, joiners,
    variation selectors, skin tones, emoji tags, Hangul jamo sequences, a code
    point after a ZWJ and the second regional indicator of a flag."""
    cp, before = ord(ch), ord(prev)
    if cp < 0x300:   # Latin text: nothing below the combining marks attaches
        return before == 0x200D
    leading_jamo = 0x1100 <= before <= 0x115F or 0xA960 <= before <= 0xA97F
    return (
        prev == "\u200d" or cp == 0x200D
        or (leading_jamo and (0x1100 <= cp <= 0x115F or 0xA960 <= cp <= 0xA97F
                              or 0xAC00 <= cp <= 0xD7A3))
        or unicodedata.category(ch) in ("Mn", "Me", "Mc")
        or 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF
        or 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F
        or 0x1160 <= cp <= 0x11FF or 0xD7B0 <= cp <= 0xD7FF
        or (0x1F1E6 <= cp <= 0x1F1FF and ri_run % 2 == 1)
    )


def _clusters(text: str) -> Iterator[str]:
    start, ri_run = 0, 0
    for i in range(1, len(text)):
        prev = text[i - 1]
        ri_run = ri_run + 1 if 0x1F1E6 <= ord(prev) <= 0x1F1FF else 0
        if not _attaches(prev, text[i], ri_run):
            yield text[start:i]
            start = i
    if text:
        yield text[start:]


def _pack(line: str, budget: int) -> List[str]:
    """Clusters of ``line`` packed into pieces of at most ``budget`` UTF-8 bytes,
    broken after a space when one is in the second half of a piece. A cluster
    larger than a whole piece (hundreds of marks) is cut between code points."""
    pieces: List[str] = []
    current: List[str] = []
    size = 0
    for cluster in _clusters(line):
        n = len(cluster.encode("utf-8"))
        if n > budget:
            cluster_pieces = _pack_code_points(cluster, budget)
            pieces.extend(_flush(current))
            pieces.extend(cluster_pieces[:-1])
            current, size = [cluster_pieces[-1]], len(cluster_pieces[-1].encode("utf-8"))
            continue
        while current and size + n > budget:
            current, size = _break(current, pieces, budget)
        current.append(cluster)
        size += n
    pieces.extend(_flush(current))
    return pieces


def _break(current: List[str], pieces: List[str], budget: int) -> Tuple[List[str], int]:
    """Close the piece in ``current`` (at its last space if that is past half the
    budget) and return the carried-over clusters and their size."""
    cut = len(current)
    for i in range(len(current) - 1, 0, -1):
        if current[i] == " ":
            if len("".join(current[:i + 1]).encode("utf-8")) * 2 >= budget:
                cut = i + 1
            break
    pieces.append("".join(current[:cut]))
    rest = current[cut:]
    return rest, len("".join(rest).encode("utf-8"))


def _flush(current: List[str]) -> List[str]:
    return ["".join(current)] if current else []


def _pack_code_points(text: str, budget: int) -> List[str]:
    pieces, current, size = [], "", 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > budget:
            pieces.append(current)
            current, size = "", 0
        current += ch
        size += n
    return pieces + [current]


_NEWLINE_RE = re.compile(r"\r\n|\r|\n")


def split_privmsg(text: str, overhead: int) -> List[str]:
    """``text`` as the trailing parameters of as many lines as it takes.

    ``overhead`` is the bytes of the line other than the text and its CR LF
    (``len(b":nick!u@host PRIVMSG #room :")``): each piece fits in
    ``MAX_LINE_BYTES - 2 - overhead`` bytes. Newlines end a piece (IRC lines
    cannot hold them) and empty lines are dropped (an empty PRIVMSG is an
    error); NUL, which IRC cannot carry, becomes U+FFFD. Pieces never cut a
    UTF-8 character and, as far as ``_attaches`` knows, never a grapheme cluster.
    """
    budget = MAX_LINE_BYTES - 2 - overhead
    if budget < 4:   # one code point takes up to four bytes
        raise IrcError(f"an overhead of {overhead} bytes leaves no room for text")
    pieces: List[str] = []
    for line in _NEWLINE_RE.split(text.replace("\0", "\ufffd")):
        if not line:
            continue
        if len(line) * 4 <= budget or len(line.encode("utf-8")) <= budget:
            pieces.append(line)   # the common case: one short line, no clusters to find
        else:
            pieces.extend(_pack(line, budget))
    return pieces


# ---------------------------------------------------------------- SASL

#: IRCv3 SASL: a client sends its response in AUTHENTICATE chunks of this size.
SASL_CHUNK_BYTES = 400
#: The largest whole response accepted (PLAIN needs well under 1,100 bytes).
MAX_SASL_BYTES = 4096


def decode_sasl_plain(b64: str) -> Tuple[str, str, str]:
    """A SASL PLAIN response (RFC 4616) as ``(authzid, authcid, password)``.

    ``authzid`` may be empty (most clients send it so); ``authcid`` and the
    password may not. IrcError with ``ERR_SASLFAIL`` says what is wrong.
    """
    fail = numerics.ERR_SASLFAIL
    try:
        raw = base64.b64decode("" if b64 == "+" else b64, validate=True)
    except (binascii.Error, ValueError):
        raise IrcError("the SASL response is not valid base64", fail) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise IrcError("the SASL response is not valid UTF-8", fail) from None
    parts = text.split("\0")
    if len(parts) != 3:
        raise IrcError("a SASL PLAIN response is authzid NUL authcid NUL password "
                       f"(two NULs, not {len(parts) - 1})", fail)
    authzid, authcid, password = parts
    if not authcid:
        raise IrcError("the SASL PLAIN response has an empty user name", fail)
    if not password:
        raise IrcError("the SASL PLAIN response has an empty password", fail)
    return authzid, authcid, password


class SaslAccumulator:
    """Joins the chunks of one SASL response (IRCv3 ``AUTHENTICATE``).

    ``feed(param)`` returns None while more is to come and the whole base64 text
    once a chunk is shorter than 400 bytes or is ``+`` (which, after a 400-byte
    chunk, just ends the response; alone, it is an empty response). Raises
    IrcError with ``ERR_SASLTOOLONG`` for a chunk over 400 bytes or a response
    over ``MAX_SASL_BYTES`` and with ``ERR_SASLABORTED`` for ``*``; after an
    error or a complete response it starts afresh.
    """

    def __init__(self, max_bytes: int = MAX_SASL_BYTES) -> None:
        self.max_bytes = max_bytes
        self._chunks: List[str] = []
        self._size = 0

    def feed(self, param: str) -> Optional[str]:
        if param == "*":
            self._reset()
            raise IrcError("SASL authentication aborted by the client", numerics.ERR_SASLABORTED)
        size = len(param.encode("utf-8"))
        if size > SASL_CHUNK_BYTES:
            self._reset()
            raise IrcError(f"an AUTHENTICATE chunk is at most {SASL_CHUNK_BYTES} bytes",
                           numerics.ERR_SASLTOOLONG)
        if param != "+":
            self._size += size
            self._chunks.append(param)
        if self._size > self.max_bytes:
            self._reset()
            raise IrcError(f"a SASL response is at most {self.max_bytes} bytes",
                           numerics.ERR_SASLTOOLONG)
        if size == SASL_CHUNK_BYTES:
            return None
        whole = "".join(self._chunks) or "+"
        self._reset()
        return whole

    def _reset(self) -> None:
        self._chunks, self._size = [], 0


def sasl_chunks(payload: str) -> List[str]:
    """The server's side of the chunking rule: ``payload`` (base64) as AUTHENTICATE
    parameters, with a closing ``+`` when the last chunk is exactly 400 bytes."""
    if not payload:
        return ["+"]
    chunks = [payload[i:i + SASL_CHUNK_BYTES] for i in range(0, len(payload), SASL_CHUNK_BYTES)]
    if len(chunks[-1]) == SASL_CHUNK_BYTES:
        chunks.append("+")
    return chunks


# ---------------------------------------------------------------- CAP

#: The capabilities the gateway honours, with their CAP 302 values.
SUPPORTED_CAPS: Dict[str, str] = {
    "sasl": "PLAIN",
    "server-time": "",
    "message-tags": "",
    "echo-message": "",
    "multi-prefix": "",
}


class CapNegotiation:
    """IRCv3 capability negotiation for one connection, sans-IO.

    ``handle(msg, nick)`` takes a ``CAP`` message and returns the replies. ``enabled``
    is the set of caps in force; ``on_hold`` is true from a ``CAP LS`` or ``CAP REQ``
    before registration until ``CAP END``: the session must not send 001 meanwhile.
    ``version`` is 302 once a client asked ``CAP LS 302`` (values and multiline).
    """

    def __init__(self, server_name: str, caps: Mapping[str, str] = SUPPORTED_CAPS) -> None:
        self.server_name = server_name
        self.caps = dict(caps)
        self.enabled: Set[str] = set()
        self.version = 0
        self.on_hold = False
        self.registered = False
        self._subcommands: Dict[str, Callable[[str, List[str]], List[Message]]] = {
            "LS": self._ls, "LIST": self._list, "REQ": self._req, "END": self._end,
        }

    def handle(self, msg: Message, nick: Optional[str]) -> List[Message]:
        nick = nick or "*"
        if not msg.params:
            return [numeric(self.server_name, nick, numerics.ERR_NEEDMOREPARAMS, "CAP")]
        sub = msg.params[0].upper()
        handler = self._subcommands.get(sub)
        if handler is None:
            return [numeric(self.server_name, nick, numerics.ERR_INVALIDCAPCMD, msg.params[0])]
        return handler(nick, msg.params[1:])

    def _hold(self) -> None:
        if not self.registered:
            self.on_hold = True

    def _ls(self, nick: str, args: List[str]) -> List[Message]:
        self._hold()
        version = int(args[0]) if args and args[0].isdigit() else 301
        self.version = max(self.version, version)
        if self.version >= 302:
            tokens = [f"{k}={v}" if v else k for k, v in self.caps.items()]
        else:
            tokens = list(self.caps)
        return self._lines(nick, "LS", tokens)

    def _list(self, nick: str, args: List[str]) -> List[Message]:
        return self._lines(nick, "LIST", sorted(self.enabled))

    def _req(self, nick: str, args: List[str]) -> List[Message]:
        if not args:
            return [numeric(self.server_name, nick, numerics.ERR_NEEDMOREPARAMS, "CAP")]
        self._hold()
        request = " ".join(name for name in args[0].split(" ") if name)
        room = MAX_LINE_BYTES - 2 - len(f":{self.server_name} CAP {nick} NAK :".encode("utf-8"))
        if len(request.encode("utf-8")) > room:   # only a client repeating itself gets here
            cut = request.encode("utf-8")[:room].decode("utf-8", "ignore")
            return [self._cap(nick, "NAK", cut)]
        wanted = request.split(" ") if request else []
        names = [name[1:] if name.startswith("-") else name for name in wanted]
        reply = "ACK" if wanted and all(name in self.caps for name in names) else "NAK"
        if reply == "ACK":
            for name in wanted:
                if name.startswith("-"):
                    self.enabled.discard(name[1:])
                else:
                    self.enabled.add(name)
        return [self._cap(nick, reply, request)]

    def _end(self, nick: str, args: List[str]) -> List[Message]:
        self.on_hold = False
        return []

    def _cap(self, nick: str, *params: str) -> Message:
        return Message({}, self.server_name, "CAP", [nick, *params])

    def _lines(self, nick: str, sub: str, tokens: List[str]) -> List[Message]:
        """One reply, or for CAP 302 clients several with '*' before all but the last."""
        overhead = len(f":{self.server_name} CAP {nick} {sub} * :".encode("utf-8"))
        budget = MAX_LINE_BYTES - 2 - overhead
        groups: List[List[str]] = [[]]
        for token in tokens:
            if groups[-1] and len(" ".join(groups[-1] + [token]).encode("utf-8")) > budget:
                groups.append([])
            groups[-1].append(token)
        if self.version < 302:
            groups = [[token for group in groups for token in group]]
        last = len(groups) - 1
        return [self._cap(nick, sub, *(["*"] if i < last else []), " ".join(group))
                for i, group in enumerate(groups)]
