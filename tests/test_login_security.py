"""Login security over the wire: equal failures, hash upgrades, no password anywhere."""
from __future__ import annotations

import statistics
import time

from chat import protocol as p
from chat.auth import LoginThrottle, ThrottlePolicy
from chat.store import Store
from tests.support import RawConn, start_server


def no_throttle(server) -> None:
    server.throttle = LoginThrottle(ThrottlePolicy(free_failures_per_account=10**9,
                                                   free_failures_per_address=10**9))


def test_unknown_user_and_wrong_password_cost_the_same(tmp_path):
    # A cost where one hash takes milliseconds: skipping the dummy hash would
    # make unknown users answer ~100x faster than wrong passwords.
    server = start_server(tmp_path / "db", hash_cost=11)
    no_throttle(server)
    try:
        c = RawConn(server.address)
        c.ok("signup", username="victim", password="password1")
        frames = {}
        timings = {"wrong": [], "unknown": []}
        for _ in range(9):
            for kind, name in (("wrong", "victim"), ("unknown", "nosuchuser")):
                t0 = time.perf_counter()
                c.send_bytes(p.encode_request("login", 1, username=name, password="guess-1234"))
                raw = c.sock.recv(4096)
                timings[kind].append(time.perf_counter() - t0)
                frames[kind] = raw
        assert frames["wrong"] == frames["unknown"]  # the same bytes
        ratio = statistics.median(timings["unknown"]) / statistics.median(timings["wrong"])
        assert 0.5 < ratio < 2.0, timings
        c.close()
    finally:
        server.stop()


def stored_hash(db, name: str) -> str:
    with Store(db) as store:
        user = store.get_user(name)
    assert user is not None
    return user.password_hash


def test_hash_is_upgraded_at_login_and_no_password_is_stored_or_logged(tmp_path, caplog):
    db = tmp_path / "db"
    secret = "Sup3r-secret-pw"
    server = start_server(db, hash_cost=4)
    c = RawConn(server.address)
    c.ok("signup", username="ann", password=secret)
    c.close()
    server.stop()
    assert stored_hash(db, "ann").startswith("scrypt$16$")

    server = start_server(db, hash_cost=5)
    try:
        c = RawConn(server.address)
        c.ok("login", username="ann", password=secret)
        c.close()
    finally:
        server.stop()
    assert stored_hash(db, "ann").startswith("scrypt$32$")
    server = start_server(db, hash_cost=5)
    try:
        c = RawConn(server.address)
        c.ok("login", username="ann", password=secret)  # the upgraded hash verifies
        c.close()
    finally:
        server.stop()
    files = [path.read_bytes().decode("utf-8", "replace") for path in db.iterdir()]
    for place in files + [caplog.text]:
        assert secret not in place


def test_throttle_over_the_wire_recovers(tmp_path):
    server = start_server(tmp_path / "db")
    now = [1000.0]
    server.throttle = LoginThrottle(ThrottlePolicy(free_failures_per_account=2, base_delay=5,
                                                   max_delay=20), clock=lambda: now[0])
    try:
        c = RawConn(server.address)
        c.ok("signup", username="zed", password="password1")
        for _ in range(2):
            c.error("login", p.AUTH_FAILED, username="zed", password="nope-nope")
        reply = c.error("login", p.RATE_LIMITED, username="zed", password="password1")
        assert "try again in 5 s" in reply["error"]["message"]
        now[0] += 6  # the delay runs out: never a permanent lockout
        c.ok("login", username="zed", password="password1")
        c.close()
    finally:
        server.stop()


def test_total_connection_cap_says_why_and_others_go_on(make_server):
    server = make_server(max_connections=2)
    a, b = RawConn(server.address), RawConn(server.address)
    refused = RawConn(server.address, read_hello=False)
    frame = refused.recv()
    assert frame["error"]["code"] == p.RATE_LIMITED
    assert "too many connections" in frame["error"]["message"]
    assert refused.recv() is None
    a.login("alice")
    b.login("bob")
    a.ok("send", to="bob", text="still served")
    assert b.event("message")["message"]["text"] == "still served"
    for conn in (a, b, refused):
        conn.close()


def test_a_vanished_peer_goes_offline(make_server):
    server = make_server()
    watcher, ghost = RawConn(server.address), RawConn(server.address)
    watcher.login("watcher")
    ghost.login("ghost")
    assert watcher.event("presence")["online"] is True
    ghost.sock.close()  # no logout: the connection just disappears
    assert watcher.event("presence") == {"event": "presence", "username": "ghost",
                                         "online": False}
    assert watcher.ok("online")["users"] == ["watcher"]
    watcher.close()
