"""The sans-IO IRC layer: parsing, formatting, line buffering, CAP and SASL, no sockets."""
from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.irc import numerics as n
from chat.irc import protocol as irc
from chat.irc.protocol import IrcError, Message


def parse(line: str) -> Message:
    return irc.parse_line(line.encode("utf-8"))


# ---------------------------------------------------------------- parsing real lines

@pytest.mark.parametrize("line, expected", [
    ("CAP LS 302", Message({}, None, "CAP", ["LS", "302"])),
    ("NICK alice", Message({}, None, "NICK", ["alice"])),
    ("USER alice 0 * :Alice", Message({}, None, "USER", ["alice", "0", "*", "Alice"])),
    ("USER alice 0 * :Alice Liddell",
     Message({}, None, "USER", ["alice", "0", "*", "Alice Liddell"])),
    ("PASS secret", Message({}, None, "PASS", ["secret"])),
    ("AUTHENTICATE PLAIN", Message({}, None, "AUTHENTICATE", ["PLAIN"])),
    ("AUTHENTICATE AGFsaWNlAHNlY3JldA==",
     Message({}, None, "AUTHENTICATE", ["AGFsaWNlAHNlY3JldA=="])),
    ("CAP REQ :sasl server-time", Message({}, None, "CAP", ["REQ", "sasl server-time"])),
    ("CAP END", Message({}, None, "CAP", ["END"])),
    ("PRIVMSG #team :hello there", Message({}, None, "PRIVMSG", ["#team", "hello there"])),
    ("@time=2026-11-25T10:00:00.000Z :bob!bob@host PRIVMSG alice :hi",
     Message({"time": "2026-11-25T10:00:00.000Z"}, "bob!bob@host", "PRIVMSG", ["alice", "hi"])),
    ("privmsg #team ::-)", Message({}, None, "PRIVMSG", ["#team", ":-)"])),
    ("PING :irc.example.net", Message({}, None, "PING", ["irc.example.net"])),
    ("MODE #team", Message({}, None, "MODE", ["#team"])),
    ("QUIT", Message({}, None, "QUIT", [])),
    ("QUIT :", Message({}, None, "QUIT", [""])),
    (":irc.example.net 001 alice :Welcome",
     Message({}, "irc.example.net", "001", ["alice", "Welcome"])),
    ("JOIN   #a    #b  ", Message({}, None, "JOIN", ["#a", "#b"])),
    ("PRIVMSG bob :a  spaced :colon", Message({}, None, "PRIVMSG", ["bob", "a  spaced :colon"])),
    ("@+draft/reply=42;msgid=abc;+example.com/flag PRIVMSG #a :x",
     Message({"+draft/reply": "42", "msgid": "abc", "+example.com/flag": ""}, None,
             "PRIVMSG", ["#a", "x"])),
    ("PRIVMSG #a :h\u00e9llo \U0001f600 \u4f60\u597d",
     Message({}, None, "PRIVMSG", ["#a", "h\u00e9llo \U0001f600 \u4f60\u597d"])),
])
def test_parses_registration_and_chat_lines_of_irssi_and_weechat(line, expected):
    assert parse(line) == expected


def test_a_tab_is_part_of_a_parameter_not_a_separator():
    assert parse("PRIVMSG a\tb :x").params == ["a\tb", "x"]


@pytest.mark.parametrize("raw, value", [
    (r"a\:b", "a;b"), (r"a\sb", "a b"), (r"a\\b", "a\\b"), (r"a\rb", "a\rb"),
    (r"a\nb", "a\nb"), (r"a\bc", "abc"), ("abc\\", "abc"), ("", ""),
])
def test_tag_values_are_unescaped(raw, value):
    assert parse(f"@k={raw} PING x").tags == {"k": value}


def test_a_repeated_tag_keeps_its_last_value():
    assert parse("@a=1;a=2 PING x").tags == {"a": "2"}


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize("line, words", [
    (b"PRIVMSG #a :\xff\xfe", "UTF-8"),
    (b"PRIVMSG #a :caf\xc3", "UTF-8"),
    (b"@k=\xff PING x", "UTF-8"),
    (b"PRIVMSG #a :a\0b", "NUL"),
    (b"PRIVMSG #a :a\rb", "CR"),
    (b"", "no command"),
    (b"   ", "no command"),
    (b":src", "no command"),
    (b":src :text", "no command"),
    (b": PING", "source"),
    (b"@a=1", "no command"),
    (b"PRIV-MSG x", "not a command"),
    (b"12 x", "not a command"),
    (b"1234 x", "not a command"),
    (b"CMD " + b" ".join([b"p"] * 16), "15 parameters"),
    (b"CMD " + b" ".join([b"p"] * 15) + b" :trailing", "15 parameters"),
    (b"PRIVMSG #a :" + b"x" * 499, "512"),
    (b"@" + b"k=" + b"v" * 8190 + b" PING x", "8191"),
    (b"@ PING x", "tags section"),
    (b"@a=1;;b=2 PING x", "tag key"),
    (b"@=1 PING x", "tag key"),
    (b"@a_b=1 PING x", "tag key"),
    (b"@vendor./k=1 PING x", "tag key"),
])
def test_refuses_malformed_lines_in_words(line, words):
    with pytest.raises(IrcError) as err:
        irc.parse_line(line)
    assert words in err.value.reason


def test_line_limits_are_exact():
    longest = b"PRIVMSG #a :x " + b"x" * 496        # 510 bytes: 512 with CR LF
    assert len(longest) == 510
    assert irc.parse_line(longest).params[1] == "x " + "x" * 496
    assert len(irc.format_line(irc.parse_line(longest))) == 512
    tags = b"@k=" + b"v" * (8191 - 4)                 # with the space: 8191 bytes
    assert len(irc.parse_line(tags + b" " + longest).tags["k"]) == 8187
    assert irc.parse_line(b"CMD " + b" ".join([b"p"] * 14) + b" :last").params[-1] == "last"


# ---------------------------------------------------------------- formatting

@pytest.mark.parametrize("msg, wire", [
    (Message.build("PING", "x"), b"PING x\r\n"),
    (Message.build("PRIVMSG", "#a", "hello there"), b"PRIVMSG #a :hello there\r\n"),
    (Message.build("PRIVMSG", "#a", ""), b"PRIVMSG #a :\r\n"),
    (Message.build("PRIVMSG", "#a", ":-)"), b"PRIVMSG #a ::-)\r\n"),
    (Message.build("QUIT"), b"QUIT\r\n"),
    (Message.build("001", "alice", "Welcome", source="srv"), b":srv 001 alice Welcome\r\n"),
    (Message.build("PRIVMSG", "b", "x", tags={"time": "t", "+f": "", "k": "a b;c\\\r\n"}),
     b"@time=t;+f;k=a\\sb\\:c\\\\\\r\\n PRIVMSG b x\r\n"),
])
def test_formats_messages(msg, wire):
    assert irc.format_line(msg) == wire
    assert irc.parse_line(wire[:-2]) == msg


@pytest.mark.parametrize("msg, words", [
    (Message.build("PRIVMSG", "#a", "a\r\nQUIT"), "CR"),
    (Message.build("PRIVMSG", "#a", "a\nb"), "LF"),
    (Message.build("PRIVMSG", "#a", "a\0b"), "NUL"),
    (Message.build("PRIVMSG", "#a b", "x"), "middle parameter"),
    (Message.build("PRIVMSG", ":a", "x"), "middle parameter"),
    (Message.build("PRIVMSG", "", "x"), "middle parameter"),
    (Message.build("PING", "x", source="a b"), "source"),
    (Message.build("PING", "x", source="a\rb"), "source"),
    (Message.build("PING", "x", tags={"a b": "1"}), "tag key"),
    (Message.build("PING", "x", tags={"k": "a\0"}), "NUL"),
    (Message({}, None, "", []), "not a command"),
    (Message.build("PRIVMSG", "#a", "x" * 500), "512"),
    (Message.build("CMD", *["p"] * 16), "15 parameters"),
    (Message.build("PRIVMSG", "#a", "\ud800"), "UTF-8"),
])
def test_format_refuses_what_would_not_parse_back(msg, words):
    with pytest.raises(IrcError) as err:
        irc.format_line(msg)
    assert words in err.value.reason


_no_controls = st.characters(blacklist_characters="\0\r\n", blacklist_categories=("Cs",))
_middle = st.text(_no_controls, min_size=1, max_size=20).filter(
    lambda s: " " not in s and not s.startswith(":"))
_tag_key = st.from_regex(r"\A\+?([a-z0-9]+(\.[a-z0-9]+)*/)?[A-Za-z0-9\-]{1,10}\Z")
_tag_value = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
                     max_size=20)
_command = st.one_of(st.from_regex(r"\A[A-Z]{1,10}\Z"), st.from_regex(r"\A[0-9]{3}\Z"))


@st.composite
def messages(draw):
    params = draw(st.lists(_middle, max_size=10))
    if draw(st.booleans()):
        params.append(draw(st.text(_no_controls, max_size=40)))
    return Message(draw(st.dictionaries(_tag_key, _tag_value, max_size=4)),
                   draw(st.none() | _middle), draw(_command), params)


@settings(max_examples=300, deadline=None)
@given(messages())
def test_parse_inverts_format(msg):
    assert irc.parse_line(irc.format_line(msg)[:-2]) == msg


# ---------------------------------------------------------------- line buffer

def test_line_buffer_splits_on_lf_and_strips_one_cr():
    buf = irc.LineBuffer()
    assert buf.feed(b"NICK al") == []
    assert buf.pending == 7
    assert buf.feed(b"ice\r\nUSER a 0 * :A\n\r\n\nPI") == [b"NICK alice", b"USER a 0 * :A"]
    assert buf.feed(b"NG x\r\n") == [b"PING x"]
    assert buf.pending == 0


def test_line_buffer_limit_counts_cr_lf():
    buf = irc.LineBuffer(max_line=10)
    assert buf.feed(b"12345678\r\n") == [b"12345678"]
    assert buf.feed(b"123456789\n") == [b"123456789"]
    assert not buf.too_long
    assert buf.feed(b"ok\r\n123456789\r\nlater\r\n") == [b"ok"]
    assert buf.too_long
    assert buf.feed(b"more\r\n") == []


def test_line_buffer_does_not_hold_an_endless_line():
    buf = irc.LineBuffer()
    assert buf.feed(b"PING a\r\n" + b"x" * 5000) == [b"PING a"]
    assert not buf.too_long
    assert buf.feed(b"x" * 5000) == []
    assert buf.too_long and buf.pending == 0


def test_line_buffer_default_fits_a_tagged_line():
    line = b"@k=" + b"v" * 8187 + b" PRIVMSG #a :" + b"x" * 498
    assert irc.LineBuffer().feed(line + b"\r\n") == [line]


# ---------------------------------------------------------------- names and numerics

def test_casefold_is_ascii_only():
    assert irc.casefold("Alice_[X]") == "alice_[x]"
    assert irc.casefold("\u00c9MILE") == "\u00c9mile"


@pytest.mark.parametrize("name, ok", [
    ("alice", True), ("_bot", True), ("Bob-2", True), ("a" * 32, True), ("a" * 33, False),
    ("2pac", False), ("-x", False), ("", False), ("al ice", False), ("al.ice", False),
    ("\u00e9mile", False), ("#team", False),
])
def test_valid_nick_follows_the_v2_username_rule(name, ok):
    assert irc.valid_nick(name) is ok


def test_channels():
    assert irc.is_channel("#team") and not irc.is_channel("alice") and not irc.is_channel("#")
    assert irc.valid_channel("#team") and not irc.valid_channel("#a b")
    assert not irc.valid_channel("#" + "a" * 33)


def test_numeric_names_and_default_texts():
    assert n.RPL_WELCOME == "001" and n.NAMES["433"] == "ERR_NICKNAMEINUSE"
    assert n.name_of("908") == "RPL_SASLMECHS" and n.name_of("999") is None
    msg = irc.numeric("srv", None, n.ERR_NICKNAMEINUSE, "bob")
    assert irc.format_line(msg) == b":srv 433 * bob :Nickname is already in use\r\n"
    msg = irc.numeric("srv", "al", n.RPL_NAMREPLY, "=", "#a", "al bob")
    assert msg.params == ["al", "=", "#a", "al bob"]
    assert irc.numeric("srv", "al", n.ERR_SASLFAIL, text="no").params == ["al", "no"]


def test_every_numeric_the_gateway_needs_has_its_name():
    codes = ("001 002 003 004 005 221 301 303 311 312 315 318 319 321 322 323 324 329 331 "
             "332 333 341 352 353 366 372 375 376 401 403 404 405 411 412 421 422 431 432 "
             "433 436 441 442 443 451 461 462 464 471 473 474 475 482 502 730 731 732 733 "
             "734 900 901 902 903 904 905 906 907 908").split()
    assert not [code for code in codes if code not in n.NAMES]
    assert all(getattr(n, n.NAMES[code]) == code for code in codes)


def test_isupport_tokens_and_005_splitting():
    tokens = irc.isupport_tokens()
    for token in ("CASEMAPPING=ascii", "CHANTYPES=#", "NICKLEN=32", "CHANNELLEN=33",
                  "TOPICLEN=390", "MONITOR=100", "UTF8ONLY", "PREFIX=(o)@",
                  "CHANMODES=,,,i", "NETWORK=parallel-chat"):
        assert token in tokens
    assert "NETWORK=test" in irc.isupport_tokens(irc.IsupportConfig(network="test"))
    many = [f"T{i}" for i in range(27)]
    lines = irc.isupport_messages("srv", "al", many)
    assert [len(m.params) for m in lines] == [15, 15, 3]     # nick + 13 tokens + text
    assert lines[0].params[-1] == "are supported by this server"
    assert [t for m in lines for t in m.params[1:-1]] == many
    for msg in lines:
        irc.format_line(msg)


def test_server_time():
    assert irc.server_time(0) == "1970-01-01T00:00:00.000Z"
    ts = 1795625941.123
    assert irc.server_time(ts) == "2026-11-25T16:59:01.123Z"
    assert irc.server_time(ts + 0.0004) == "2026-11-25T16:59:01.123Z"
    assert abs(irc.parse_server_time(irc.server_time(ts)) - ts) < 0.001
    with pytest.raises(IrcError):
        irc.parse_server_time("yesterday")


# ---------------------------------------------------------------- split_privmsg

def _fits(pieces, overhead):
    return all(len(p.encode("utf-8")) + overhead + 2 <= 512 for p in pieces)


@pytest.mark.parametrize("unit", ["a", "\u00e9", "\u4f60", "\U0001f600",
                                  "\U0001f468\u200d\U0001f469\u200d\U0001f467",
                                  "\U0001f1eb\U0001f1f7", "e\u0301", "\U0001f44d\U0001f3fd"])
@pytest.mark.parametrize("overhead", [0, 37, 100, 401])
def test_split_privmsg_fits_and_keeps_characters_whole(unit, overhead):
    text = unit * 700
    pieces = irc.split_privmsg(text, overhead)
    assert "".join(pieces) == text
    assert _fits(pieces, overhead)
    assert all(p and p.replace(unit, "") == "" for p in pieces)   # whole clusters only
    line = f":{'x' * (overhead - 14)} PRIVMSG #a :" if overhead > 14 else ""
    for piece in pieces:
        if line:
            assert len(irc.format_line(irc.parse_line(line.encode() + piece.encode()))) <= 512


def test_split_privmsg_prefers_spaces_and_splits_newlines():
    words = " ".join(["word"] * 300)
    pieces = irc.split_privmsg(words, 50)
    assert "".join(pieces) == words and _fits(pieces, 50)
    assert all(p.endswith(" ") for p in pieces[:-1])
    assert irc.split_privmsg("one\r\ntwo\n\nthree\rfour", 50) == ["one", "two", "three", "four"]
    assert irc.split_privmsg("", 50) == [] and irc.split_privmsg("\n\n", 50) == []
    assert irc.split_privmsg("a\0b", 50) == ["a\ufffdb"]


def test_split_privmsg_cuts_an_absurd_cluster_between_code_points():
    text = "e" + "\u0301" * 1000
    pieces = irc.split_privmsg(text, 10)
    assert "".join(pieces) == text and _fits(pieces, 10)


def test_split_privmsg_refuses_an_overhead_without_room():
    with pytest.raises(IrcError):
        irc.split_privmsg("x", 508)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=1500),
       st.integers(0, 400))
def test_split_privmsg_never_loses_text_or_overflows(text, overhead):
    pieces = irc.split_privmsg(text, overhead)
    assert _fits(pieces, overhead)
    expected = text.replace("\0", "\ufffd").replace("\r", "").replace("\n", "")
    assert "".join(pieces) == expected


_UNITS = ["a", " ", "\u00e9", "e\u0301", "\u4f60", "\U0001f600", "\u2764\ufe0f",
          "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f1eb\U0001f1f7",
          "\U0001f1e9", "\U0001f44d\U0001f3fd", "\u1100\u1161\u11a8", "\u1100\uac00",
          "\u0915\u094d", "\U0001f3f4\U000e0067\U000e0062\U000e007f", "1\ufe0f\u20e3"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_UNITS), max_size=600), st.integers(0, 450))
def test_split_privmsg_cuts_only_where_the_tui_sees_a_cluster_boundary(units, overhead):
    """The stdlib approximation in ``split_privmsg`` against ``chat.tui.graphemes``
    (UAX #29), which the irc package may not import but its tests may."""
    from chat.tui.graphemes import spans
    text = "".join(units)
    boundaries = {end for _, end in spans(text)}
    cuts, offset = [], 0
    for piece in irc.split_privmsg(text, overhead)[:-1]:
        offset += len(piece)
        cuts.append(offset)
    assert set(cuts) <= boundaries


# ---------------------------------------------------------------- SASL

def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def test_sasl_plain_decodes_what_irssi_and_weechat_send():
    assert irc.decode_sasl_plain("AGFsaWNlAHNlY3JldA==") == ("", "alice", "secret")
    raw = b"alice\0alice\0p w\xc3\xa9"
    assert irc.decode_sasl_plain(_b64(raw)) == ("alice", "alice", "p w\u00e9")


@pytest.mark.parametrize("payload, words", [
    ("not base64!", "base64"),
    ("AGFsaWNl", "two NULs"),                               # "\0alice"
    (_b64(b"a\0b\0c\0d"), "two NULs"),
    (_b64(b"\0\0secret"), "empty user name"),
    (_b64(b"\0alice\0"), "empty password"),
    (_b64(b"\0alice\0\xff"), "UTF-8"),
    ("+", "two NULs"),
])
def test_sasl_plain_errors_in_words(payload, words):
    with pytest.raises(IrcError) as err:
        irc.decode_sasl_plain(payload)
    assert words in err.value.reason and err.value.code == n.ERR_SASLFAIL


def test_sasl_chunks_of_exactly_400_bytes_need_a_closing_plus():
    payload = _b64(b"\0alice\0" + b"p" * 293)
    assert len(payload) == 400
    acc = irc.SaslAccumulator()
    assert acc.feed(payload) is None
    assert acc.feed("+") == payload
    assert irc.sasl_chunks(payload) == [payload, "+"]
    assert irc.decode_sasl_plain(payload)[1] == "alice"


def test_sasl_chunks_join_until_a_short_one():
    payload = _b64(b"\0alice\0" + b"p" * 600)
    chunks = irc.sasl_chunks(payload)
    assert [len(c) for c in chunks] == [400, 400, len(payload) - 800]
    acc = irc.SaslAccumulator()
    assert acc.feed(chunks[0]) is None and acc.feed(chunks[1]) is None
    assert acc.feed(chunks[2]) == payload
    assert acc.feed("AGFsaWNlAHNlY3JldA==") == "AGFsaWNlAHNlY3JldA=="   # starts afresh
    assert acc.feed("+") == "+" and irc.sasl_chunks("") == ["+"]


def test_sasl_accumulator_limits_and_abort():
    acc = irc.SaslAccumulator(max_bytes=800)
    with pytest.raises(IrcError) as err:
        acc.feed("A" * 401)
    assert err.value.code == n.ERR_SASLTOOLONG
    acc.feed("A" * 400)
    acc.feed("A" * 400)
    with pytest.raises(IrcError) as err:
        acc.feed("A" * 400)
    assert err.value.code == n.ERR_SASLTOOLONG
    acc.feed("A" * 400)
    with pytest.raises(IrcError) as err:
        acc.feed("*")
    assert err.value.code == n.ERR_SASLABORTED
    assert acc.feed("QUJD") == "QUJD"


# ---------------------------------------------------------------- CAP

def cap(neg: irc.CapNegotiation, line: str, nick=None):
    return [irc.format_line(m).decode() for m in neg.handle(parse(line), nick)]


def test_cap_ls_302_lists_values_and_holds_registration():
    neg = irc.CapNegotiation("srv")
    assert cap(neg, "CAP LS 302") == [
        ":srv CAP * LS :sasl=PLAIN server-time message-tags echo-message multi-prefix\r\n"]
    assert neg.on_hold and neg.version == 302 and neg.enabled == set()


def test_cap_ls_without_version_has_no_values():
    neg = irc.CapNegotiation("srv")
    assert cap(neg, "CAP LS") == [
        ":srv CAP * LS :sasl server-time message-tags echo-message multi-prefix\r\n"]


def test_cap_ls_302_continues_long_lists_with_a_star():
    caps = {f"vendor.example/capability-{i}": "" for i in range(40)}
    neg = irc.CapNegotiation("srv", caps)
    lines = [m for m in neg.handle(parse("CAP LS 302"), None)]
    assert len(lines) > 1
    assert all(m.params[2] == "*" for m in lines[:-1]) and lines[-1].params[2] != "*"
    assert [t for m in lines for t in m.params[-1].split()] == list(caps)
    for m in lines:
        assert len(irc.format_line(m)) <= 512


def test_cap_req_acks_the_whole_set_and_list_shows_it():
    neg = irc.CapNegotiation("srv")
    cap(neg, "CAP LS 302")
    assert cap(neg, "CAP REQ :sasl server-time", "alice") == [
        ":srv CAP alice ACK :sasl server-time\r\n"]
    assert neg.enabled == {"sasl", "server-time"}
    assert cap(neg, "CAP LIST") == [":srv CAP * LIST :sasl server-time\r\n"]
    assert cap(neg, "CAP REQ -server-time") == [":srv CAP * ACK -server-time\r\n"]
    assert neg.enabled == {"sasl"}


def test_cap_req_naks_the_whole_set_for_one_unknown_cap():
    neg = irc.CapNegotiation("srv")
    assert cap(neg, "CAP REQ :sasl draft/chathistory") == [
        ":srv CAP * NAK :sasl draft/chathistory\r\n"]
    assert neg.enabled == set() and neg.on_hold
    assert cap(neg, "CAP REQ :sasl=PLAIN") == [":srv CAP * NAK sasl=PLAIN\r\n"]
    assert cap(neg, "CAP REQ :") == [":srv CAP * NAK :\r\n"]


def test_cap_req_too_long_to_echo_is_refused_on_one_line():
    neg = irc.CapNegotiation("srv")
    replies = neg.handle(Message.build("CAP", "REQ", " ".join(["sasl"] * 110)), None)
    assert [m.params[1] for m in replies] == ["NAK"] and neg.enabled == set()
    assert len(irc.format_line(replies[0])) <= 512


def test_cap_end_releases_registration():
    neg = irc.CapNegotiation("srv")
    cap(neg, "CAP LS 302")
    cap(neg, "CAP REQ :sasl")
    assert neg.on_hold
    assert cap(neg, "CAP END") == []
    assert not neg.on_hold and neg.enabled == {"sasl"}
    assert cap(neg, "CAP LIST", "alice") == [":srv CAP alice LIST sasl\r\n"]


def test_cap_after_registration_does_not_hold():
    neg = irc.CapNegotiation("srv")
    neg.registered = True
    cap(neg, "CAP LS 302", "alice")
    cap(neg, "CAP REQ echo-message", "alice")
    assert not neg.on_hold and neg.enabled == {"echo-message"}


def test_cap_errors():
    neg = irc.CapNegotiation("srv")
    assert cap(neg, "CAP") == [":srv 461 * CAP :Not enough parameters\r\n"]
    assert cap(neg, "CAP REQ") == [":srv 461 * CAP :Not enough parameters\r\n"]
    assert cap(neg, "CAP FOO") == [":srv 410 * FOO :Invalid CAP command\r\n"]
