"""The sans-IO protocol module: framing, decoding, validation and builders, no sockets."""
from __future__ import annotations

import json

import pytest

from chat import protocol as p


def test_decoder_joins_split_frames():
    dec = p.FrameDecoder()
    assert dec.feed(b'{"op":"pi') == []
    assert dec.pending == 9
    assert dec.feed(b'ng"}\n{"op":"users"}\n{') == [b'{"op":"ping"}', b'{"op":"users"}']
    assert dec.feed(b"}\n") == [b"{}"]
    assert dec.pending == 0


def test_decoder_limit_counts_the_newline():
    dec = p.FrameDecoder(max_frame=10)
    assert dec.feed(b"123456789\n") == [b"123456789"]
    assert not dec.too_large
    assert dec.feed(b"1234567890\nafter\n") == []
    assert dec.too_large
    assert dec.feed(b"more\n") == []


def test_decoder_flags_an_endless_line_without_holding_it():
    dec = p.FrameDecoder(max_frame=100)
    assert dec.feed(b"ok\n" + b"x" * 200) == [b"ok"]
    assert dec.too_large and dec.pending == 0


@pytest.mark.parametrize("line", [b"{", b"\xff\xfe", b"NaN", b'{"a": Infinity}',
                                  b"[" * 100_000, b'"\xc3"', b"1" * 5000])
def test_decode_rejects_non_json(line):
    with pytest.raises(p.ChatError) as err:
        p.decode_json_line(line)
    assert err.value.code == p.BAD_JSON


def test_decode_is_utf8_only():
    assert p.decode_json_line('{"t": "é"}'.encode()) == {"t": "é"}
    with pytest.raises(p.ChatError):
        p.decode_json_line('{"t": 1}'.encode("utf-16"))


@pytest.mark.parametrize("obj, code", [
    ("x", p.BAD_REQUEST), ([], p.BAD_REQUEST), ({}, p.BAD_REQUEST),
    ({"op": 1}, p.BAD_REQUEST), ({"op": "fly"}, p.UNKNOWN_OP),
    ({"op": "ping", "id": True}, p.BAD_REQUEST), ({"op": "ping", "id": [1]}, p.BAD_REQUEST),
    ({"op": "login", "username": "a"}, p.BAD_REQUEST),
    ({"op": "send", "to": "a", "text": "t", "reply_to": "1"}, p.BAD_REQUEST),
    ({"op": "send", "to": "a", "text": "t", "reply_to": 1.5}, p.BAD_REQUEST),
    ({"op": "history", "limit": 0}, p.BAD_REQUEST),
    ({"op": "history", "after": False}, p.BAD_REQUEST),
    ({"op": "read", "with": "a"}, p.BAD_REQUEST),
])
def test_parse_request_errors(obj, code):
    with pytest.raises(p.ChatError) as err:
        p.parse_request(obj)
    assert err.value.code == code


def test_parse_request_keeps_known_fields_only():
    req = p.parse_request({"op": "send", "id": "a1", "to": "bob", "text": "hi",
                           "reply_to": None, "from": "mallory"})
    assert req == p.Request("send", "a1", {"to": "bob", "text": "hi"})
    assert p.request_id_of({"id": 3.5}) == 3.5
    assert p.request_id_of({"id": None}) is None
    assert p.request_id_of([1]) is None


@pytest.mark.parametrize("name, ok", [("a", True), ("Ab-c_9", True), ("x" * 32, True),
                                      ("_", True), ("_x-1", True),
                                      ("A.b", False), ("9lives", False), ("-a", False),
                                      ("", False), ("x" * 33, False), ("a b", False),
                                      ("ä", False), ("a\n", False)])
def test_validate_username(name, ok):
    if ok:
        p.validate_username(name)
    else:
        with pytest.raises(p.ChatError, match=p.INVALID_USERNAME):
            p.validate_username(name)


@pytest.mark.parametrize("text, ok", [("hi", True), ("x" * 4096, True), ("a\nb", True),
                                      ("", False), (" \n\t", False), ("x" * 4097, False),
                                      ("bad \udc80", False)])
def test_validate_text(text, ok):
    if ok:
        p.validate_text(text)
    else:
        with pytest.raises(p.ChatError, match=p.INVALID_TEXT):
            p.validate_text(text)


def test_message_json_matches_json_dumps():
    text = 'quote " backslash \\ newline \n emoji 🎉 nul \x00 é'
    built = p.message_json(7, "alice", "bob", text, 1764000000.25, 3)
    assert json.loads(built) == {"id": 7, "from": "alice", "to": "bob", "text": text,
                                 "ts": 1764000000.25, "reply_to": 3}
    assert built.isascii()
    msg = p.Message.from_dict(json.loads(built))
    assert msg.to_json() == built


def test_replies_and_events_are_single_ascii_lines():
    frames = [p.ok_reply(1, username="é"), p.error_reply("x", p.AUTH_FAILED, "no"),
              p.ok_reply_raw(None, "messages", "[]"), p.hello_event(),
              p.message_event(p.message_json(1, "a", "b", "x\ny", 0.5, None)),
              p.encode_request("send", 2, to="b", text="x", reply_to=None)]
    for frame in frames:
        assert frame.endswith(b"\n") and frame.count(b"\n") == 1 and frame.isascii()
        json.loads(frame)
    assert json.loads(frames[2]) == {"ok": True, "messages": []}
    assert json.loads(frames[3]) == {"event": "hello", "server": "parallel-chat", "protocol": 2}
    assert "reply_to" not in json.loads(frames[5])


@pytest.mark.parametrize("keep_oldest", [True, False])
def test_history_reply_fits_one_frame(keep_oldest):
    msgs = [p.message_json(i, "a", "b", "\U0001f389" * 4096, 1.0, None) for i in range(1, 6)]
    frame = p.history_reply(123, msgs, keep_oldest)
    assert len(frame) <= p.MAX_FRAME_BYTES
    got = [m["id"] for m in json.loads(frame)["messages"]]
    assert got == ([1] if keep_oldest else [5])
    small = [p.message_json(i, "a", "b", "hi", 1.0, None) for i in range(1, 6)]
    assert len(json.loads(p.history_reply(1, small, keep_oldest))["messages"]) == 5


@pytest.mark.parametrize("room, ok", [("#general", True), ("#A-b_9", True), ("#" + "x" * 32, True),
                                      ("#", False), ("general", False), ("#" + "x" * 33, False),
                                      ("#a.b", False), ("#a b", False), ("##a", False)])
def test_validate_room_name(room, ok):
    if ok:
        p.validate_room_name(room)
    else:
        with pytest.raises(p.ChatError) as err:
            p.validate_room_name(room)
        assert err.value.code == p.INVALID_ROOM


@pytest.mark.parametrize("topic, ok", [("", True), ("x" * 390, True), ("Café ☕ 👨‍👩‍👧", True),
                                       ("x" * 391, False), ("a\nb", False), ("a\x1bb", False),
                                       ("a\x85b", False), ("a\u2028b", False), ("a\x7f", False)])
def test_validate_topic(topic, ok):
    if ok:
        p.validate_topic(topic)
    else:
        with pytest.raises(p.ChatError) as err:
            p.validate_topic(topic)
        assert err.value.code == p.INVALID_TOPIC


def test_a_conversation_has_one_key_whoever_looks_at_it():
    assert p.conversation_key("Alice", "bob") == "dm:alice|bob"
    assert p.conversation_key("BOB", "alice") == "dm:alice|bob"
    assert p.conversation_key("alice", "alice") == "dm:alice|alice"
    assert p.conversation_key("alice", "#General") == "room:#general"


def test_the_clients_half_reads_events_errors_and_the_hello():
    assert p.is_event({"event": "message", "message": {}})
    assert not p.is_event({"id": 1, "ok": True})
    assert not p.is_event({"event": "x", "ok": False})
    err = p.error_of({"ok": False, "error": {"code": p.AUTH_FAILED, "message": "no"}})
    assert (err.code, err.message) == (p.AUTH_FAILED, "no")
    assert p.error_of({"ok": False, "error": "garbled"}).code == p.SERVER_ERROR
    hello = {"event": "hello", "server": "parallel-chat", "protocol": 2}
    assert p.check_hello(hello, (1, 2)) == hello
    with pytest.raises(ValueError):
        p.check_hello(hello, (1,))
    with pytest.raises(p.ChatError) as refused:
        p.check_hello({"ok": False, "error": {"code": p.RATE_LIMITED, "message": "full"}}, (2,))
    assert refused.value.code == p.RATE_LIMITED
