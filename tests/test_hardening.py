"""Hardening promises over real sockets: slow readers, floods, hostile bytes, kill -9, TLS."""
from __future__ import annotations

import random
import socket
import ssl
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat import protocol as p
from tests.support import RawConn, ServerProcess

# ---------------------------------------------------------------- promise 8: hostile bytes

frames = st.lists(st.binary(max_size=200).filter(lambda b: b"\n" not in b), max_size=8)


@given(frames, st.lists(st.integers(min_value=0, max_value=2000), max_size=6))
@settings(max_examples=300, deadline=None)
def test_any_split_parses_as_when_sent_whole(lines, cuts):
    stream = b"".join(line + b"\n" for line in lines)
    whole = p.FrameDecoder().feed(stream)
    dec = p.FrameDecoder()
    pieces, last = [], 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts):
        pieces.append(stream[last:cut])
        last = cut
    pieces.append(stream[last:])
    split = [line for piece in pieces for line in dec.feed(piece)]
    assert split == whole == lines


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_any_bytes_give_a_frame_or_a_protocol_error(data):
    for line in p.FrameDecoder().feed(data + b"\n"):
        try:
            p.parse_request(p.decode_json_line(line))
        except p.ChatError as exc:
            assert exc.code in p.ERROR_CODES


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                         children, max_size=4),
    max_leaves=12)


@given(st.dictionaries(st.sampled_from(["op", "id", "to", "text", "username", "password",
                                        "with", "after", "before", "limit", "upto",
                                        "reply_to"]), json_values, max_size=6),
       st.sampled_from(p.OPS))
@settings(max_examples=500, deadline=None)
def test_any_request_object_validates_or_fails_with_a_code(obj, op):
    obj.setdefault("op", op)
    try:
        req = p.parse_request(obj)
    except p.ChatError as exc:
        assert exc.code in (p.BAD_REQUEST, p.UNKNOWN_OP)
    else:
        assert req.op in p.OPS


def test_garbage_connections_leave_everyone_else_served(connect):
    alice, bob = connect(), connect()
    alice.login("alice")
    bob.login("bob")
    rng = random.Random(1234)
    hostile = [b"\xff\xfe\x00garbage\n", b"{" * 70_000, b'{"op":"login","username":[]}\n',
               b"\n\n\n", b'{"op":"send","to":"bob","text":"x"}\n', b"\x1b[2J\x00\x07\n"]
    hostile += [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000)))
                for _ in range(20)]
    for blob in hostile:
        evil = connect()
        evil.send_bytes(blob)
        evil.close()
    alice.ok("send", to="bob", text="unaffected")
    assert bob.event("message")["message"]["text"] == "unaffected"


def test_hundreds_of_endless_half_lines(make_server):
    server = make_server(login_timeout=3.0)
    hogs = []
    for _ in range(300):
        s = socket.create_connection(server.address)
        s.sendall(b'{"op":"ping","pad":"' + b"x" * 1000)  # never ends the line
        hogs.append(s)
    alice, bob = RawConn(server.address), RawConn(server.address)
    alice.login("alice")
    bob.login("bob")
    start = time.monotonic()
    alice.ok("send", to="bob", text="through the crowd")
    assert bob.event("message")["message"]["text"] == "through the crowd"
    assert time.monotonic() - start < 5
    # The login deadline clears them out.
    for s in hogs[:5]:
        s.settimeout(10)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        assert b"log in within" in data
    for s in hogs:
        s.close()
    alice.close()
    bob.close()


# ---------------------------------------------------------------- promise 5: slow readers

def test_a_client_that_never_reads_cannot_stall_anyone(make_server, caplog):
    limit = 256 * 1024
    server = make_server(outbox_limit=limit)
    stuck = RawConn(server.address)
    stuck.login("stuck")
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sender, carol, dave = (RawConn(server.address) for _ in range(3))
    sender.login("sender")
    carol.login("carol")
    dave.login("dave")
    text = "y" * 4000
    slowest = 0.0
    sent = 0
    for i in range(1500):  # ~6 MB at the stuck reader: past its limit and the kernel's buffers
        t0 = time.monotonic()
        sender.ok("send", to="stuck", text=text)
        slowest = max(slowest, time.monotonic() - t0)
        sent += 1
        if i % 100 == 0:
            carol.ok("send", to="dave", text=f"other conversation {i}")
            assert dave.event("message")["message"]["text"] == f"other conversation {i}"
    assert slowest < 2.0, f"a send waited {slowest:.2f} s on a reader that never reads"
    deadline = time.monotonic() + 5
    while "not reading" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "not reading" in caplog.text
    # The stuck user gets everything later through history.
    later = RawConn(server.address)
    later.ok("login", username="stuck", password="password1")
    assert len(later.all_history(with_="sender")) == sent
    for conn in (stuck, sender, carol, dave, later):
        conn.close()


# ---------------------------------------------------------------- promise 1: kill -9

def test_kill_9_many_times_loses_nothing_acknowledged(tmp_path):
    db = tmp_path / "db"
    proc = ServerProcess(db)
    setup = RawConn(proc.address)
    names = [f"w{i}" for i in range(3)]
    for name in names + ["sink"]:
        setup.ok("signup", username=name, password="password1")
    setup.close()
    acked = {}
    rng = random.Random(99)
    last_id = 0
    for round_no in range(8):
        stop = threading.Event()

        def sender(name: str, address, stop=stop, round_no=round_no) -> None:
            try:
                conn = RawConn(address)
                conn.ok("login", username=name, password="password1")
                i = 0
                while not stop.is_set():
                    text = f"{name}:{round_no}:{i}"
                    conn.send_bytes(p.encode_request("send", i, to="sink", text=text))
                    reply = conn.reply()
                    acked[reply["message"]["id"]] = text
                    i += 1
            except (AssertionError, OSError, ValueError):
                pass  # killed mid-request: that message is unacknowledged

        threads = [threading.Thread(target=sender, args=(n, proc.address)) for n in names]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.2, 0.6))
        proc.kill()
        stop.set()
        for t in threads:
            t.join(10)
        proc = ServerProcess(db)
        sink = RawConn(proc.address)
        sink.ok("login", username="sink", password="password1")
        stored = {m["id"]: m["text"] for m in sink.all_history()}
        sink.close()
        missing = {i: t for i, t in acked.items() if stored.get(i) != t}
        assert not missing, f"round {round_no}: acknowledged but lost: {list(missing)[:5]}"
        assert len(set(stored.values())) == len(stored), "a message is stored twice"
        assert max(stored) >= last_id
        last_id = max(stored)
    proc.terminate()
    assert len(acked) > 100


# ---------------------------------------------------------------- promise 10: TLS

def tls_connect(address, cert):
    context = ssl.create_default_context(cafile=str(cert))
    raw = socket.create_connection(address, timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_tls_round_trip(make_server, certificate):
    cert, key = certificate
    server = make_server(tls_cert=cert, tls_key=key)
    conns = []
    for name in ("alice", "bob"):
        conn = RawConn.__new__(RawConn)
        conn.sock = tls_connect(server.address, cert)
        conn.decoder = p.FrameDecoder()
        conn.frames, conn.events, conn._next_id = [], [], 0
        assert conn.recv()["event"] == "hello"
        conn.login(name)
        conns.append(conn)
    alice, bob = conns
    for i in range(50):
        alice.ok("send", to="bob", text=f"secret {i}" + "z" * 3000)
    for i in range(50):
        assert bob.event("message")["message"]["text"].startswith(f"secret {i}")
    page = alice.ok("history", with_="bob", limit=1000)["messages"]
    assert page[-1]["text"].startswith("secret 49") and 10 < len(page) < 50  # one frame
    plain = socket.create_connection(server.address, timeout=5)
    plain.sendall(b'{"op":"ping"}\n')
    assert b'"ok"' not in plain.recv(4096)  # plaintext gets no service
    plain.close()
    for conn in conns:
        conn.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_refuses_old_protocol_versions(make_server, certificate):
    cert, key = certificate
    server = make_server(tls_cert=cert, tls_key=key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(cert))
    try:
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    raw = socket.create_connection(server.address, timeout=5)
    with pytest.raises((ssl.SSLError, OSError)):
        context.wrap_socket(raw, server_hostname="127.0.0.1").recv(10)
    raw.close()


def test_warns_without_tls_on_a_public_address(tmp_path):
    proc = ServerProcess(tmp_path / "db", 0, "--host", "0.0.0.0")
    try:
        assert any("without TLS" in line for line in proc.log)
    finally:
        proc.terminate()


def test_client_library_over_tls(make_server, certificate):
    from chat.client import ChatClient

    cert, key = certificate
    server = make_server(tls_cert=cert, tls_key=key)
    host, port = server.address
    with ChatClient.connect_as(host, port, "alice", "password1", signup=True,
                               tls=True, tls_ca=str(cert)) as alice:
        assert alice.send("alice", "note to self over TLS").text == "note to self over TLS"
    untrusting = ChatClient(host, port, tls=True, timeout=5)  # system CAs only
    with pytest.raises(ConnectionError):
        untrusting.connect()
