"""Protocol version 2 over real sockets: rooms, their events, paging with ``more``,
read markers across sessions, nonces, search and password changes."""
from __future__ import annotations

import pytest

from chat import protocol as p
from tests.support import RawConn, ServerProcess


def users(connect, *names):
    """Logged-in connections, one per name (signed up on the way)."""
    conns = []
    for i, name in enumerate(names):
        conn = connect()
        conn.login(name, signup=name not in names[:i])
        conns.append(conn)
    return conns


def test_the_server_speaks_version_2(connect):
    assert connect(read_hello=False).recv() == {
        "event": "hello", "server": "parallel-chat", "protocol": 2}


def test_create_join_leave_and_the_room_object(connect):
    alice, bob = users(connect, "alice", "bob")
    room = alice.ok("room_create", room="#General", topic="all things")["room"]
    assert room == {"room": "#General", "topic": "all things", "private": False, "members": 1,
                    "joined": True, "unread": 0, "mentions": 0}
    assert bob.event("room")["room"] == dict(room, joined=False)
    alice.error("room_create", p.ROOM_TAKEN, room="#general")
    alice.error("room_create", p.INVALID_ROOM, room="general")
    alice.error("room_create", p.INVALID_TOPIC, room="#x", topic="two\nlines")
    joined = bob.ok("join", room="#GENERAL")["room"]
    assert joined["room"] == "#General" and joined["members"] == 2 and joined["joined"]
    assert alice.event("join") == {"event": "join", "room": "#General", "username": "bob"}
    bob.ok("join", room="#general")                   # again: changes nothing, no event
    alice.no_event("join")
    bob.ok("leave", room="#general")
    assert alice.event("leave") == {"event": "leave", "room": "#General", "username": "bob"}
    bob.error("leave", p.NOT_A_MEMBER, room="#general")
    bob.error("join", p.UNKNOWN_ROOM, room="#nowhere")


def test_a_room_message_reaches_every_session_of_every_member_but_the_sender(connect):
    alice, alice2, bob, carol, dave = users(connect, "alice", "alice", "bob", "carol", "dave")
    alice.ok("room_create", room="#team")
    for conn in (bob, carol):
        conn.ok("join", room="#team")
    carol.ok("leave", room="#team")
    sent = alice.ok("send", to="#team", text="hello team")["message"]
    assert sent["to"] == "#team" and sent["from"] == "alice"
    assert bob.event("message")["message"] == sent
    assert alice2.event("message")["message"] == sent
    alice.no_event("message")                          # the sending session has the reply
    carol.no_event("message")                          # a former member
    dave.no_event("message")                           # never a member
    dave.error("send", p.NOT_A_MEMBER, to="#team", text="let me in")
    dave.error("send", p.UNKNOWN_ROOM, to="#nope", text="hi")
    dave.error("history", p.NOT_A_MEMBER, with_="#team")
    assert [m["text"] for m in bob.ok("history", with_="#team")["messages"]] == ["hello team"]


def test_private_rooms_need_an_invitation(connect):
    alice, bob, carol = users(connect, "alice", "bob", "carol")
    alice.ok("room_create", room="#secret", private=True)
    carol.no_event("room", wait=0.2)                   # private rooms are not announced
    assert [r["room"] for r in bob.ok("rooms")["rooms"]] == []
    bob.error("join", p.NOT_INVITED, room="#secret")
    bob.error("members", p.NOT_A_MEMBER, room="#secret")
    carol.error("invite", p.NOT_A_MEMBER, room="#secret", username="bob")
    alice.error("invite", p.UNKNOWN_USER, room="#secret", username="zed")
    alice.ok("invite", room="#secret", username="bob")
    assert bob.event("invited") == {"event": "invited", "room": "#secret", "by": "alice"}
    assert [r["room"] for r in bob.ok("rooms")["rooms"]] == ["#secret"]
    bob.ok("join", room="#secret")
    members = alice.ok("members", room="#secret")
    assert members["members"] == [{"username": "alice", "online": True},
                                  {"username": "bob", "online": True}]
    assert members["more"] is False
    bob.ok("leave", room="#secret")
    bob.error("join", p.NOT_INVITED, room="#secret")   # the invitation was used up


def test_topic_and_its_event(connect):
    alice, bob = users(connect, "alice", "bob")
    alice.ok("room_create", room="#t")
    bob.ok("join", room="#t")
    room = alice.ok("topic", room="#t", topic="new ☕ topic")["room"]
    assert room["topic"] == "new ☕ topic"
    assert bob.event("topic") == {"event": "topic", "room": "#t", "topic": "new ☕ topic",
                                  "by": "alice"}
    alice.error("topic", p.INVALID_TOPIC, room="#t", topic="x" * 391)
    users(connect, "carol")[0].error("topic", p.NOT_A_MEMBER, room="#t", topic="mine")


def test_history_without_with_brings_the_rooms_one_is_in(connect):
    alice, bob = users(connect, "alice", "bob")
    alice.ok("room_create", room="#a")
    alice.ok("room_create", room="#b")
    bob.ok("join", room="#a")
    bob.ok("join", room="#b")
    alice.ok("send", to="#a", text="in a")
    alice.ok("send", to="bob", text="direct")
    alice.ok("send", to="#b", text="in b")
    bob.ok("leave", room="#b")
    texts = [m["text"] for m in bob.all_history()]
    assert texts == ["in a", "direct"]


def test_more_is_true_until_the_last_page_and_pages_fit_a_frame(connect):
    alice, bob = users(connect, "alice", "bob")
    alice.ok("room_create", room="#long")
    bob.ok("join", room="#long")
    ids = [alice.ok("send", to="#long", text=f"{i:04d}" + "é" * 3996)["message"]["id"]
           for i in range(30)]
    seen, before = [], None
    while True:
        fields = {"with_": "#long", "limit": 1000}
        if before is not None:
            fields["before"] = before
        page = bob.ok("history", **fields)
        assert page["messages"], "an empty page while more was true"
        seen = [m["id"] for m in page["messages"]] + seen
        if not page["more"]:
            break
        before = page["messages"][0]["id"]
    assert seen == ids
    forwards = bob.ok("history", with_="#long", after=0, limit=1000)
    assert forwards["more"] is True and len(forwards["messages"]) < 30
    last = bob.ok("history", with_="#long", after=ids[-2], limit=1000)
    assert [m["id"] for m in last["messages"]] == [ids[-1]] and last["more"] is False


def test_read_markers_follow_the_user_across_sessions(connect):
    alice, bob, bob2 = users(connect, "alice", "bob", "bob")
    alice.ok("room_create", room="#r")
    bob.ok("join", room="#r")
    dm = alice.ok("send", to="bob", text="dm")["message"]["id"]
    rm = alice.ok("send", to="#r", text="hi @bob and @bobby")["message"]["id"]
    room = [r for r in bob.ok("rooms")["rooms"] if r["room"] == "#r"][0]
    assert (room["unread"], room["mentions"]) == (1, 1)
    bob.ok("read", with_="alice", upto=dm)
    assert bob2.event("read") == {"event": "read", "with": "alice", "upto": dm}
    bob.ok("read", with_="#r", upto=rm)
    assert bob2.event("read") == {"event": "read", "with": "#r", "upto": rm}
    bob.no_event("read")                               # not to the session that read
    bob.ok("read", with_="#r", upto=rm)                # did not move: no event
    bob2.no_event("read")
    room = [r for r in bob2.ok("rooms")["rooms"] if r["room"] == "#r"][0]
    assert (room["unread"], room["mentions"]) == (0, 0)


def test_a_resend_with_the_same_nonce_stores_nothing_new(connect):
    alice, bob = users(connect, "alice", "bob")
    first = alice.ok("send", to="bob", text="once", nonce="n-1")["message"]
    assert bob.event("message")["message"] == first
    again = alice.ok("send", to="bob", text="once", nonce="n-1")["message"]
    assert again == first
    bob.no_event("message")
    assert len(bob.all_history()) == 1
    alice.error("send", p.BAD_REQUEST, to="bob", text="x", nonce="")
    alice.error("send", p.BAD_REQUEST, to="bob", text="x", nonce="n" * 65)
    alice.error("send", p.BAD_REQUEST, to="bob", text="x", nonce=5)


def test_a_nonce_is_remembered_across_a_restart(tmp_path):
    db = tmp_path / "db"
    server = ServerProcess(db)
    alice = RawConn(server.address)
    alice.login("alice")
    first = alice.ok("send", to="alice", text="kept", nonce="restart-1")["message"]
    alice.close()
    server.kill()
    server = ServerProcess(db)
    alice = RawConn(server.address)
    alice.login("alice", signup=False)
    assert alice.ok("send", to="alice", text="kept", nonce="restart-1")["message"] == first
    assert len(alice.all_history()) == 1
    alice.close()
    server.terminate()


def test_search_never_returns_what_the_caller_may_not_see(connect):
    alice, bob, carol = users(connect, "alice", "bob", "carol")
    alice.ok("room_create", room="#open")
    bob.ok("join", room="#open")
    alice.ok("send", to="#open", text="Needle in the room")
    alice.ok("send", to="carol", text="needle for carol only")
    bob.ok("send", to="alice", text="a NEEDLE from bob")
    found = bob.ok("search", query="needle")
    assert [m["text"] for m in found["messages"]] == ["Needle in the room", "a NEEDLE from bob"]
    assert found["more"] is False
    assert [m["text"] for m in carol.ok("search", query="needle")["messages"]] == [
        "needle for carol only"]
    bob.ok("leave", room="#open")
    assert [m["text"] for m in bob.ok("search", query="needle")["messages"]] == [
        "a NEEDLE from bob"]
    bob.error("search", p.NOT_A_MEMBER, query="needle", with_="#open")
    page = alice.ok("search", query="needle", limit=1)
    assert page["more"] is True and len(page["messages"]) == 1
    alice.error("search", p.BAD_REQUEST, query="")


def test_password_change(connect):
    (alice,) = users(connect, "alice")
    alice.error("password", p.AUTH_FAILED, old="not-my-password", new="new-password-1")
    alice.error("password", p.INVALID_PASSWORD, old="password1", new="short")
    alice.ok("password", old="password1", new="new-password-1")
    other = connect()
    other.error("login", p.AUTH_FAILED, username="alice", password="password1")
    other.ok("login", username="alice", password="new-password-1")
    alice.ok("ping")                                   # this session stays logged in


def test_users_pages_forwards(connect):
    (a,) = users(connect, "a0")
    for i in range(1, 6):
        a.ok("signup", username=f"a{i}", password="password1")
    page = a.ok("users", limit=2)
    assert [u["username"] for u in page["users"]] == ["a0", "a1"] and page["more"] is True
    page = a.ok("users", after="A1", limit=10)
    assert [u["username"] for u in page["users"]] == ["a2", "a3", "a4", "a5"]
    assert page["more"] is False
    assert a.ok("users")["more"] is False


@pytest.mark.parametrize("op, fields", [
    ("room_create", {}), ("join", {"room": 5}), ("invite", {"room": "#x"}),
    ("members", {"room": "#x", "limit": 0}), ("rooms", {"limit": 1001}),
    ("search", {"query": "x" * 201}), ("topic", {"room": "#x"}),
])
def test_v2_requests_of_the_wrong_shape(connect, op, fields):
    (alice,) = users(connect, "alice")
    alice.error(op, p.BAD_REQUEST, **fields)


def test_a_wrong_old_password_counts_as_a_failed_login(connect, chat_server):
    (alice,) = users(connect, "alice")
    free = chat_server.throttle.policy.free_failures_per_account
    for _ in range(free):
        alice.error("password", p.AUTH_FAILED, old="not-my-password", new="new-password-1")
    alice.error("password", p.RATE_LIMITED, old="password1", new="new-password-1")
    connect().error("login", p.RATE_LIMITED, username="alice", password="password1")
