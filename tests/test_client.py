"""The client library against a real server: ops, errors, events, pipelining, reconnect."""
from __future__ import annotations

import queue
import socket
import threading
import time

import pytest

from chat import protocol as p
from chat.client import ChatClient, UserInfo
from tests.support import ServerProcess


def next_event(client: ChatClient, name: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            ev = client.events.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {name} event within {timeout} s") from None
        if ev["event"] == name:
            return ev


@pytest.fixture
def clients(chat_server):
    made = []

    def make(name=None, signup=True, **kwargs):
        host, port = chat_server.address
        if name is None:
            client = ChatClient(host, port, **kwargs)
            client.connect()
        else:
            client = ChatClient.connect_as(host, port, name, "password1", signup=signup,
                                           **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_every_op(clients):
    alice = clients("alice")
    bob = clients("bob")
    assert alice.online() == ["alice", "bob"]
    msg = alice.send("bob", "hello")
    assert (msg.sender, msg.to, msg.text, msg.reply_to) == ("alice", "bob", "hello", None)
    assert next_event(bob, "message")["message"]["text"] == "hello"
    reply = bob.send("alice", "hi!", reply_to=msg.id)
    assert reply.reply_to == msg.id
    assert [m.id for m in alice.history(with_user="bob")] == [msg.id, reply.id]
    assert alice.history(after=msg.id) == [reply]
    assert alice.users() == [UserInfo("alice", True, 0), UserInfo("bob", True, 1)]
    alice.read("bob", reply.id)
    assert alice.users()[1].unread == 0
    alice.ping()
    alice.logout()
    with pytest.raises(p.ChatError) as err:
        alice.users()
    assert err.value.code == p.NOT_LOGGED_IN


def test_errors_carry_codes(clients):
    c = clients()
    with pytest.raises(p.ChatError) as err:
        c.signup("bad name", "password1")
    assert err.value.code == p.INVALID_USERNAME and "username" in err.value.message
    with pytest.raises(p.ChatError) as err:
        c.login("ghost", "password1")
    assert err.value.code == p.AUTH_FAILED


def test_events_arrive(clients):
    alice = clients("alice")
    clients("bob")
    assert next_event(alice, "signup")["username"] == "bob"
    assert next_event(alice, "presence") == {"event": "presence", "username": "bob",
                                             "online": True}


def test_pipelined_requests_from_many_threads(clients):
    alice = clients("alice")
    clients("bob")
    results = {}

    def work(t: int) -> None:
        results[t] = [alice.send("bob", f"{t}-{i}").text for i in range(30)]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {t: [f"{t}-{i}" for i in range(30)] for t in range(6)}


def test_unreachable_server_is_said_in_words():
    client = ChatClient("127.0.0.1", 1, timeout=2)
    with pytest.raises(ConnectionError, match="cannot reach 127.0.0.1:1"):
        client.connect()


def test_reconnect_fetches_what_was_missed_exactly_once(tmp_path):
    db = tmp_path / "db"
    server = ServerProcess(db)
    host, port = server.address
    alice = ChatClient.connect_as(host, port, "alice", "password1", signup=True)
    bob = ChatClient.connect_as(host, port, "bob", "password1", signup=True)
    try:
        bob.send("alice", "before the restart")
        assert next_event(alice, "message")["message"]["text"] == "before the restart"
        server.kill()
        assert next_event(alice, "connection")["state"] == "reconnecting"
        server = ServerProcess(db, port)
        next_event(bob, "connection")  # bob resumes too
        deadline = time.monotonic() + 15
        while True:  # bob's reconnect may still be logging in
            try:
                bob.send("alice", "while alice was away")
                break
            except (ConnectionError, p.ChatError):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        texts = []
        deadline = time.monotonic() + 15
        while "while alice was away" not in texts and time.monotonic() < deadline:
            try:
                ev = alice.events.get(timeout=0.5)
            except queue.Empty:
                continue
            if ev["event"] == "message":
                texts.append(ev["message"]["text"])
        assert texts == ["while alice was away"]  # once, and nothing old again
        assert alice.connected and alice.username == "alice"
        assert alice.history(with_user="bob")[-1].text == "while alice was away"
    finally:
        alice.close()
        bob.close()
        server.terminate()


def test_reply_timeout(clients, chat_server):
    alice = clients("alice", timeout=0.5)
    original = chat_server.store.history_page

    def slow(*args, **kwargs):
        time.sleep(1.5)
        return original(*args, **kwargs)

    chat_server.store.history_page = slow
    try:
        with pytest.raises(TimeoutError, match="no reply to history"):
            alice.history()
    finally:
        chat_server.store.history_page = original
    time.sleep(1.2)  # the late reply arrives meanwhile and is dropped
    alice.ping()  # later requests still match their own replies



def test_a_refused_connection_says_why(make_server):

    server = make_server(max_per_address=1)
    first = ChatClient(*server.address)
    first.connect()
    second = ChatClient(*server.address)
    with pytest.raises(ConnectionError, match="too many connections from your address"):
        second.connect()
    first.close()



def test_the_v2_methods(clients):
    alice, bob = clients("alice"), clients("bob")
    room = alice.room_create("#lib", topic="library", private=True)
    assert (room.room, room.topic, room.private, room.members, room.joined) == (
        "#lib", "library", True, 1, True)
    alice.invite("#lib", "bob")
    assert next_event(bob, "invited") == {"event": "invited", "room": "#lib", "by": "alice"}
    assert bob.join("#LIB").members == 2
    sent = alice.send("#lib", "to the room")
    assert next_event(bob, "message")["message"]["id"] == sent.id
    assert alice.members("#lib") == ([("alice", True), ("bob", True)], False)
    assert [r.room for r in bob.rooms()[0]] == ["#lib"]
    assert alice.topic("#lib", "quiet please").topic == "quiet please"
    assert bob.search("ROOM") == ([sent], False)
    page, more = bob.history_page(with_user="#lib", limit=1)
    assert page == [sent] and more is False
    bob.leave("#lib")
    with pytest.raises(p.ChatError) as err:
        bob.history(with_user="#lib")
    assert err.value.code == p.NOT_A_MEMBER
    alice.password("password1", "another-password")
    assert [u.username for u in alice.users(after="alice")] == ["bob"]

class DroppingProxy:
    """A TCP proxy between a client and a server that can lose the reply to a send:
    it swallows that reply, calls ``on_drop`` (which may restart the server and
    point ``target`` at the new one), then cuts the client's connection."""

    def __init__(self, target) -> None:
        self.target = target
        self.drop_next_send_reply = False
        self.on_drop = lambda: None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        buffered = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not from_server:
                    dst.sendall(data)
                    continue
                buffered += data
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    if self.drop_next_send_reply and b'"ok":true,"message"' in line:
                        self.drop_next_send_reply = False
                        self.on_drop()
                        raise OSError("dropped")
                    dst.sendall(line + b"\n")
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_a_send_whose_reply_was_lost_to_a_restart_is_stored_exactly_once(tmp_path):
    db = tmp_path / "db"
    server = ServerProcess(db)
    proxy = DroppingProxy(server.address)
    alice = ChatClient.connect_as(*proxy.address, "alice", "password1", signup=True)
    alice.signup("bob", "password1")
    servers = [server]

    def restart() -> None:   # the server stored the message, then dies before replying
        servers[0].kill()
        servers.append(ServerProcess(db))
        proxy.target = servers[-1].address

    proxy.on_drop = restart
    proxy.drop_next_send_reply = True
    try:
        msg = alice.send("bob", "exactly once, whatever happens")
        assert msg.text == "exactly once, whatever happens"
        bob = ChatClient.connect_as(*servers[-1].address, "bob", "password1")
        texts = [m.text for m in bob.history(with_user="alice")]
        assert texts == ["exactly once, whatever happens"]
        assert len(servers) == 2
        bob.close()
    finally:
        alice.close()
        proxy.close()
        servers[-1].terminate()
