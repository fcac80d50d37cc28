"""The server over real sockets: every op, event and error code of protocol v1."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from chat import protocol as p
from tests.support import RawConn, ServerProcess, start_server


def two_users(connect):
    alice, bob = connect(), connect()
    alice.login("alice")
    bob.login("bob")
    alice.event("presence")  # bob came online
    return alice, bob


# ---------------------------------------------------------------- accounts

def test_signup_then_login_uses_the_first_spelling(connect):
    c = connect()
    assert c.ok("signup", username="Alice", password="password1")["username"] == "Alice"
    c.error("signup", p.USERNAME_TAKEN, username="aLICE", password="password1")
    assert c.ok("login", username="ALICE", password="password1")["username"] == "Alice"


@pytest.mark.parametrize("name", ["", "a" * 33, "bad name", "é", "a/b", "x\n"])
def test_signup_rejects_bad_usernames(connect, name):
    connect().error("signup", p.INVALID_USERNAME, username=name, password="password1")


@pytest.mark.parametrize("password", ["short", "x" * 1025])
def test_signup_rejects_bad_passwords(connect, password):
    connect().error("signup", p.INVALID_PASSWORD, username="carol", password=password)


def test_signup_does_not_log_in(connect):
    c = connect()
    c.ok("signup", username="dave", password="password1")
    c.error("users", p.NOT_LOGGED_IN)


def test_login_failure_is_the_same_for_unknown_user_and_wrong_password(connect):
    c = connect()
    c.ok("signup", username="erin", password="password1")
    wrong = c.error("login", p.AUTH_FAILED, username="erin", password="password2")
    unknown = c.error("login", p.AUTH_FAILED, username="nobody", password="password1")
    assert wrong["error"] == unknown["error"]


def test_login_twice_and_logout(connect):
    c = connect()
    c.login("frank")
    c.error("login", p.ALREADY_LOGGED_IN, username="frank", password="password1")
    c.ok("logout")
    c.error("logout", p.NOT_LOGGED_IN)
    c.ok("login", username="frank", password="password1")


def test_repeated_failed_logins_are_rate_limited(connect):
    c = connect()
    c.ok("signup", username="gina", password="password1")
    codes = [c.request("login", username="gina", password="wrong-pass")["error"]["code"]
             for _ in range(7)]
    assert codes[:5] == [p.AUTH_FAILED] * 5
    assert codes[-1] == p.RATE_LIMITED
    # The right password is refused too while the delay runs: no guessing through it.
    c.error("login", p.RATE_LIMITED, username="gina", password="password1")


# ---------------------------------------------------------------- messages

def test_send_delivers_event_and_history(connect):
    alice, bob = two_users(connect)
    msg = alice.ok("send", to="BOB", text="hi bob\nsecond line")["message"]
    assert msg["from"] == "alice" and msg["to"] == "bob" and msg["reply_to"] is None
    assert msg["text"] == "hi bob\nsecond line" and abs(msg["ts"] - time.time()) < 60
    assert bob.event("message")["message"] == msg
    alice.no_event("message")  # the sending session does not get its own message back
    assert bob.ok("history")["messages"] == [msg]
    assert alice.ok("history", with_="bob")["messages"] == [msg]


def test_sender_cannot_choose_from(connect):
    alice, bob = two_users(connect)
    msg = alice.ok("send", to="bob", text="hello", **{"from": "bob"})["message"]
    assert msg["from"] == "alice"


def test_other_sessions_of_sender_and_recipient_get_the_event(connect):
    alice, bob = two_users(connect)
    alice2 = connect()
    alice2.login("alice", signup=False)
    bob.no_event("presence")  # alice was online already
    msg = alice.ok("send", to="bob", text="copy to my other window")["message"]
    assert alice2.event("message")["message"] == msg
    assert bob.event("message")["message"] == msg


def test_reply_to(connect):
    alice, bob = two_users(connect)
    first = alice.ok("send", to="bob", text="question?")["message"]
    answer = bob.ok("send", to="alice", text="answer", reply_to=first["id"])["message"]
    assert answer["reply_to"] == first["id"]
    carol = connect()
    carol.login("carol")
    carol.error("send", p.UNKNOWN_MESSAGE, to="alice", text="x", reply_to=first["id"])
    carol.error("send", p.UNKNOWN_MESSAGE, to="alice", text="x", reply_to=10_000)


@pytest.mark.parametrize("text", ["", "   \n\t ", "x" * 4097, "\ud800"])
def test_send_rejects_bad_text(connect, text):
    alice, _ = two_users(connect)
    alice.error("send", p.INVALID_TEXT, to="bob", text=text)


def test_send_accepts_the_longest_text_and_unicode(connect):
    alice, bob = two_users(connect)
    for text in ["x" * 4096, "日本語 🎉 ünïcödé", "tab\tand\x1b[31m escape"]:
        assert alice.ok("send", to="bob", text=text)["message"]["text"] == text
        assert bob.event("message")["message"]["text"] == text


def test_send_to_unknown_user_and_when_logged_out(connect):
    alice, _ = two_users(connect)
    alice.error("send", p.UNKNOWN_USER, to="nobody", text="hi")
    anon = connect()
    anon.error("send", p.NOT_LOGGED_IN, to="alice", text="hi")


def test_offline_delivery_and_unread(connect):
    alice = connect()
    alice.login("alice")
    bob = connect()
    bob.ok("signup", username="bob", password="password1")
    sent = [alice.ok("send", to="bob", text=f"m{i}")["message"] for i in range(3)]
    bob.ok("login", username="bob", password="password1")
    assert bob.ok("history", with_="alice")["messages"] == sent
    users = {u["username"]: u for u in bob.ok("users")["users"]}
    assert users["alice"] == {"username": "alice", "online": True, "unread": 3}
    assert users["bob"]["online"] is True and users["bob"]["unread"] == 0
    bob.ok("read", with_="alice", upto=sent[1]["id"])
    assert {u["username"]: u["unread"] for u in bob.ok("users")["users"]}["alice"] == 1
    bob.ok("read", with_="alice", upto=sent[0]["id"])  # never moves back
    assert {u["username"]: u["unread"] for u in bob.ok("users")["users"]}["alice"] == 1
    bob.error("read", p.UNKNOWN_USER, with_="nobody", upto=1)


def test_users_and_online_lists(connect):
    alice, bob = two_users(connect)
    carol = connect()
    carol.ok("signup", username="Carol", password="password1")
    names = [u["username"] for u in alice.ok("users")["users"]]
    assert names == ["alice", "bob", "Carol"]  # case-insensitive order
    assert alice.ok("online")["users"] == ["alice", "bob"]
    bob.ok("logout")
    assert alice.ok("online")["users"] == ["alice"]
    connect().error("online", p.NOT_LOGGED_IN)


def test_history_paging(connect):
    alice, bob = two_users(connect)
    ids = [alice.ok("send", to="bob", text=f"n{i}")["message"]["id"] for i in range(10)]
    carol = connect()
    carol.login("carol")
    carol.ok("send", to="alice", text="not between alice and bob")

    def hist(**kw):
        return [m["id"] for m in alice.ok("history", with_="bob", **kw)["messages"]]

    assert hist() == ids
    assert hist(limit=3) == ids[-3:]
    assert hist(after=ids[2], limit=3) == ids[3:6]
    assert hist(before=ids[5], limit=2) == ids[3:5]
    assert len(alice.ok("history")["messages"]) == 11
    assert bob.ok("history")["messages"][-1]["id"] == ids[-1]  # bob never sees carol's
    alice.error("history", p.BAD_REQUEST, limit=0)
    alice.error("history", p.BAD_REQUEST, limit=1001)
    alice.error("history", p.BAD_REQUEST, after="3")
    alice.error("history", p.UNKNOWN_USER, with_="nobody")


# ---------------------------------------------------------------- events

def test_presence_and_signup_events(connect):
    alice = connect()
    alice.login("alice")
    bob = connect()
    bob.ok("signup", username="bob", password="password1")
    assert alice.event("signup") == {"event": "signup", "username": "bob"}
    bob.ok("login", username="bob", password="password1")
    assert alice.event("presence") == {"event": "presence", "username": "bob", "online": True}
    bob.close()
    assert alice.event("presence") == {"event": "presence", "username": "bob", "online": False}


# ---------------------------------------------------------------- bad input

def test_bad_json_keeps_the_connection(connect):
    c = connect()
    c.send_bytes(b"{not json\n")
    assert c.reply()["error"]["code"] == p.BAD_JSON
    c.send_bytes(b'{"op": "ping", "id": "\xff"}\n')
    assert c.reply()["error"]["code"] == p.BAD_JSON
    c.send_bytes(b'{"op": "ping", "id": NaN}\n')
    assert c.reply()["error"]["code"] == p.BAD_JSON
    c.ok("ping")


@pytest.mark.parametrize("frame, echoed", [
    ([1, 2], None),
    ({"id": 7}, 7),
    ({"id": 8, "op": 5}, 8),
    ({"id": {"x": 1}, "op": "ping"}, None),
    ({"id": 9, "op": "send", "to": "bob"}, 9),
    ({"id": 10, "op": "send", "to": "bob", "text": 5}, 10),
    ({"id": 11, "op": "read", "with": "bob", "upto": True}, 11),
])
def test_bad_requests(connect, frame, echoed):
    c = connect()
    c.send_obj(frame)
    reply = c.reply()
    assert reply["ok"] is False and reply["error"]["code"] == p.BAD_REQUEST
    assert reply.get("id") == echoed
    c.ok("ping")


def test_an_id_with_a_lone_surrogate_is_refused_and_never_echoed(connect):
    c = connect()
    c.send_bytes(b'{"op": "ping", "id": "a\\ud800b"}\n')
    raw = c.sock.recv(4096)
    assert b"ud800" not in raw.lower()
    reply = json.loads(raw)
    assert reply["ok"] is False and reply["error"]["code"] == p.BAD_REQUEST and "id" not in reply
    c.ok("ping")


@pytest.mark.parametrize("name", [".", "..", "-", "-._", "1st", "a.b"])
def test_a_name_that_is_not_a_nick_is_refused(connect, name):
    connect().error("signup", p.INVALID_USERNAME, username=name, password="password1")


def test_unknown_op_and_ping_without_id(connect):
    c = connect()
    c.send_obj({"id": "x1", "op": "shout"})
    assert c.reply() == {"id": "x1", "ok": False,
                         "error": {"code": p.UNKNOWN_OP, "message": "unknown op 'shout'"}}
    c.send_obj({"op": "ping"})
    assert c.reply() == {"ok": True}


def test_frame_too_large_closes_only_that_connection(connect):
    alice, bob = two_users(connect)
    big = connect()
    big.send_bytes(b'{"op":"ping","pad":"' + b"x" * p.MAX_FRAME_BYTES + b'"}\n')
    reply = big.reply()
    assert reply["error"]["code"] == p.FRAME_TOO_LARGE and "id" not in reply
    assert big.recv() is None
    alice.ok("send", to="bob", text="still here")
    assert bob.event("message")["message"]["text"] == "still here"


def test_largest_frame_is_accepted(connect):
    c = connect()
    head = b'{"op":"ping","id":1,"pad":"'
    tail = b'"}\n'
    c.send_bytes(head + b"x" * (p.MAX_FRAME_BYTES - len(head) - len(tail)) + tail)
    assert c.reply() == {"id": 1, "ok": True}


def test_send_rate_limit(make_server):
    server = make_server(msg_rate=1.0, msg_burst=3)
    a, b = RawConn(server.address), RawConn(server.address)
    a.login("alice")
    b.login("bob")
    codes = [a.request("send", to="bob", text="x").get("error", {}).get("code")
             for _ in range(5)]
    assert codes[:3] == [None] * 3 and codes[-1] == p.RATE_LIMITED
    a.close()
    b.close()


def test_server_error_is_answered_and_logged(chat_server, connect, monkeypatch, caplog):
    alice, _ = two_users(connect)

    def broken(*args, **kwargs):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(chat_server.store, "history_page", broken)
    alice.error("history", p.SERVER_ERROR)
    assert "injected fault" in caplog.text
    alice.ok("ping")


def test_connection_limit_per_address(make_server):
    server = make_server(max_per_address=2)
    a, b = RawConn(server.address), RawConn(server.address)
    c = RawConn(server.address, read_hello=False)
    reply = c.recv()
    assert reply["ok"] is False and reply["error"]["code"] == p.RATE_LIMITED
    assert "too many connections" in reply["error"]["message"]
    assert c.recv() is None
    a.ok("ping")
    for conn in (a, b, c):
        conn.close()


def test_login_deadline(make_server):
    server = make_server(login_timeout=0.5)
    c = RawConn(server.address)
    reply = c.recv()
    assert reply["ok"] is False and "log in within" in reply["error"]["message"]
    assert c.recv() is None
    c.close()


# ---------------------------------------------------------------- concurrency

def test_two_clients_exchange_concurrently(connect):
    alice, bob = two_users(connect)
    n = 200
    results = {}

    def chat(me: RawConn, peer: str) -> None:
        for i in range(n):
            me.send_bytes(p.encode_request("send", i, to=peer, text=f"{peer}-{i}"))
        got, replies = [], 0
        while replies < n or len(got) < n:
            frame = me.recv()
            assert frame is not None
            if frame.get("event") == "message":
                got.append(frame["message"]["text"])
            elif "ok" in frame:
                assert frame["ok"] and frame["id"] == replies, frame
                replies += 1
        results[peer] = got

    threads = [threading.Thread(target=chat, args=(alice, "bob")),
               threading.Thread(target=chat, args=(bob, "alice"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # results[peer] is what the other side received from peer, in order
    assert results["bob"] == [f"alice-{i}" for i in range(n)]
    assert results["alice"] == [f"bob-{i}" for i in range(n)]
    ids = [m["id"] for m in alice.ok("history", limit=1000)["messages"]]
    assert ids == sorted(set(ids)) and len(ids) == 2 * n


def test_pipelined_requests_are_answered_in_order(connect):
    alice, _ = two_users(connect)
    frames = b"".join([p.encode_request("send", i, to="bob", text=str(i)) if i % 2 else
                       p.encode_request("ping", i) for i in range(100)])
    frames += p.encode_request("history", "h", limit=1000)
    alice.send_bytes(frames)
    assert [alice.reply()["id"] for _ in range(100)] == list(range(100))
    history = alice.reply()
    assert history["id"] == "h" and len(history["messages"]) == 50  # sends before it are in


# ---------------------------------------------------------------- restarts

def test_restart_keeps_everything(tmp_path):
    db = tmp_path / "db"
    server = start_server(db)
    a, b = RawConn(server.address), RawConn(server.address)
    a.login("Alice")
    b.login("bob")
    sent = [a.ok("send", to="bob", text=f"before {i}")["message"] for i in range(3)]
    b.ok("read", with_="alice", upto=sent[0]["id"])
    a.close()
    b.close()
    server.stop()

    server = start_server(db)
    try:
        b = RawConn(server.address)
        b.ok("login", username="BOB", password="password1")
        assert b.ok("history")["messages"] == sent
        assert {u["username"]: u["unread"] for u in b.ok("users")["users"]}["Alice"] == 2
        later = b.ok("send", to="alice", text="after restart")["message"]
        assert later["id"] > sent[-1]["id"] and later["to"] == "Alice"
        b.close()
    finally:
        server.stop()


def test_sigterm_stops_cleanly(tmp_path):
    proc = ServerProcess(tmp_path / "db")
    c = RawConn(proc.address)
    c.login("alice")
    assert proc.terminate() == 0
    assert c.recv() is None
    assert any("stopped" in line for line in proc.log)


def test_kill_9_under_load_loses_no_acknowledged_message(tmp_path):
    db = tmp_path / "db"
    proc = ServerProcess(db)
    setup = RawConn(proc.address)
    for name in ("s0", "s1", "s2", "s3", "sink"):
        setup.ok("signup", username=name, password="password1")
    acked = {}
    stop = threading.Event()

    def sender(name: str) -> None:
        conn = RawConn(proc.address)
        conn.ok("login", username=name, password="password1")
        i = 0
        try:
            while not stop.is_set():
                conn.send_bytes(p.encode_request("send", i, to="sink", text=f"{name}:{i}"))
                reply = conn.reply()
                acked[reply["message"]["id"]] = reply["message"]["text"]
                i += 1
        except (AssertionError, OSError, json.JSONDecodeError):
            pass  # the server died mid-request

    threads = [threading.Thread(target=sender, args=(f"s{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    proc.kill()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) > 20

    proc = ServerProcess(db)
    try:
        sink = RawConn(proc.address)
        sink.ok("login", username="sink", password="password1")
        stored = {m["id"]: m["text"] for m in sink.all_history()}
        for msg_id, text in acked.items():
            assert stored.get(msg_id) == text
        assert len(set(stored.values())) == len(stored)  # nothing twice
    finally:
        proc.terminate()


def test_server_keeps_serving_after_a_client_vanishes_mid_frame(connect):
    alice, bob = two_users(connect)
    half = connect()
    half.send_bytes(b'{"op": "pi')
    half.sock.shutdown(socket.SHUT_RDWR)
    half.close()
    alice.ok("send", to="bob", text="still fine")
    assert bob.event("message")["message"]["text"] == "still fine"
