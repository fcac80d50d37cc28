"""A stateful property test: random sign-ups, logins, sends (to users and rooms, with
nonces), reads, room creation, joins, leaves, invitations, disconnects and restarts
against a real server, checked step by step against a simple model: the oracle for
the semantics of rooms."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from chat import protocol as p
from chat.auth import LoginThrottle, ThrottlePolicy
from tests.support import RawConn, start_server


def model_server(db: Path):
    """A server whose login throttle never bites: the model has no clock."""
    server = start_server(db)
    server.throttle = LoginThrottle(ThrottlePolicy(free_failures_per_account=10**9,
                                                   free_failures_per_address=10**9))
    return server

NAMES = ["amy", "Amy", "ben", "cat"]
ROOMS = ["#r1", "#R1", "#r2"]
PASSWORD = "password1"
TEXTS = st.sampled_from(["hi", "hi", "hello there", "multi\nline", "  padded  ", "日本語 🎉",
                         "\x1b[2Jesc", "", "   ", "x" * 4097])


class ChatModel(RuleBasedStateMachine):
    """The model: accounts (case-insensitive), who each connection is, messages, markers."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="chat-model-"))
        self.server = model_server(self.folder / "db")
        self.accounts: Dict[str, str] = {}           # key -> canonical name
        self.conns: List[RawConn] = [RawConn(self.server.address) for _ in range(3)]
        self.logged_in: List[Optional[str]] = [None] * 3
        self.messages: List[dict] = []
        self.markers: Dict[tuple, int] = {}           # (reader, peer) -> id
        self.rooms: Dict[str, dict] = {}    # key -> {"name", "private", "members", "invited"}
        self.nonces: Dict[tuple, dict] = {}           # (user key, nonce) -> the message

    def teardown(self) -> None:
        for conn in self.conns:
            conn.close()
        self.server.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------ rules

    @initialize()
    def two_people_online(self) -> None:
        """Most interesting traces need two logged-in people: start from there."""
        for c, name in enumerate(("amy", "ben")):
            self.signup(c, name)
            self.login(c, name, True)
        self.room_create(0, "#r1", False)   # and a room they are both in
        self.join(1, "#r1")

    @rule(c=st.integers(0, 2), name=st.sampled_from(NAMES))
    def signup(self, c: int, name: str) -> None:
        reply = self.conns[c].request("signup", username=name, password=PASSWORD)
        key = p.user_key(name)
        if key in self.accounts:
            assert reply["error"]["code"] == p.USERNAME_TAKEN
        else:
            assert reply == {"id": reply["id"], "ok": True, "username": name}
            self.accounts[key] = name

    @rule(c=st.integers(0, 2), name=st.sampled_from(NAMES), good=st.booleans())
    def login(self, c: int, name: str, good: bool) -> None:
        reply = self.conns[c].request("login", username=name,
                                      password=PASSWORD if good else "wrong-password")
        key = p.user_key(name)
        if self.logged_in[c] is not None:
            assert reply["error"]["code"] == p.ALREADY_LOGGED_IN
        elif key in self.accounts and good:
            assert reply["ok"] and reply["username"] == self.accounts[key]
            self.logged_in[c] = self.accounts[key]
        else:
            assert reply["error"]["code"] == p.AUTH_FAILED

    @rule(c=st.integers(0, 2))
    def logout(self, c: int) -> None:
        reply = self.conns[c].request("logout")
        if self.logged_in[c] is None:
            assert reply["error"]["code"] == p.NOT_LOGGED_IN
        else:
            assert reply["ok"]
            self.logged_in[c] = None

    @rule(c=st.integers(0, 1), data=st.data())
    def chat(self, c: int, data) -> None:
        """A plain, valid message: most traces need some mail to be interesting."""
        to = data.draw(st.sampled_from(sorted(self.accounts.values())))
        self.send_checked(c, to, f"message {len(self.messages) + 1}", None)

    @rule(c=st.integers(0, 2), data=st.data(), text=TEXTS)
    def send(self, c: int, data, text: str) -> None:
        to = data.draw(st.sampled_from(sorted(self.accounts.values()) + ["ghost", "BEN"]))
        ids = [m["id"] for m in self.messages]
        reply_to = data.draw(st.one_of(st.none(), st.sampled_from(ids + [0, 99])))
        self.send_checked(c, to, text, reply_to)

    def send_checked(self, c: int, to: str, text: str, reply_to: Optional[int],
                     nonce: Optional[str] = None) -> None:
        reply = self.conns[c].request("send", to=to, text=text, reply_to=reply_to, nonce=nonce)
        me = self.logged_in[c]
        if me is None:
            assert reply["error"]["code"] == p.NOT_LOGGED_IN
            return
        if not text.strip() or len(text) > p.MAX_TEXT_CHARS:
            assert reply["error"]["code"] == p.INVALID_TEXT
            return
        exists = (to.lower() in self.rooms) if p.is_room(to) else (p.user_key(to) in self.accounts)
        if exists and nonce is not None and (p.user_key(me), nonce) in self.nonces:
            # A resend with a used nonce: the stored message, whatever else changed
            # (the contract: even if `to` or `text` differ; here, membership too).
            assert reply["message"] == self.nonces[(p.user_key(me), nonce)], reply
            return
        target = self.conversation_error(me, to)
        if target is None:
            return self.expect_conversation_error(reply, me, to)
        mine = {m["id"] for m in self.mine(me)}
        if reply_to is not None and reply_to not in mine:
            assert reply["error"]["code"] == p.UNKNOWN_MESSAGE
            return
        msg = reply["message"]
        assert msg["id"] > (self.messages[-1]["id"] if self.messages else 0)
        assert (msg["from"], msg["to"], msg["text"], msg["reply_to"]) == (
            me, target, text, reply_to)
        self.messages.append(msg)
        if nonce is not None:
            self.nonces[(p.user_key(me), nonce)] = msg

    def conversation_error(self, me: str, other: str) -> Optional[str]:
        """The canonical other side if ``me`` may use the conversation, else None."""
        if p.is_room(other):
            room = self.rooms.get(other.lower())
            if room is None or p.user_key(me) not in room["members"]:
                return None
            return room["name"]
        return self.accounts.get(p.user_key(other))

    def expect_conversation_error(self, reply: dict, me: str, other: str) -> None:
        if not p.is_room(other):
            expected = p.UNKNOWN_USER
        elif other.lower() not in self.rooms:
            expected = p.UNKNOWN_ROOM
        else:
            expected = p.NOT_A_MEMBER
        assert reply["error"]["code"] == expected, (reply, me, other)

    # ------------------------------------------------------------ rooms

    @rule(c=st.integers(0, 2), name=st.sampled_from(ROOMS), private=st.booleans())
    def room_create(self, c: int, name: str, private: bool) -> None:
        reply = self.conns[c].request("room_create", room=name, private=private)
        me = self.logged_in[c]
        if me is None:
            assert reply["error"]["code"] == p.NOT_LOGGED_IN
        elif name.lower() in self.rooms:
            assert reply["error"]["code"] == p.ROOM_TAKEN
        else:
            assert reply["ok"] and reply["room"]["room"] == name
            self.rooms[name.lower()] = {"name": name, "private": private,
                                        "members": {p.user_key(me)}, "invited": set()}
            self.markers[(p.user_key(me), name.lower())] = self.newest()

    @rule(c=st.integers(0, 2), name=st.sampled_from(ROOMS + ["#none"]))
    def join(self, c: int, name: str) -> None:
        reply = self.conns[c].request("join", room=name)
        me = self.logged_in[c]
        room = self.rooms.get(name.lower())
        if me is None:
            assert reply["error"]["code"] == p.NOT_LOGGED_IN
        elif room is None:
            assert reply["error"]["code"] == p.UNKNOWN_ROOM
        elif p.user_key(me) in room["members"]:
            assert reply["ok"] and reply["room"]["joined"]
        elif room["private"] and p.user_key(me) not in room["invited"]:
            assert reply["error"]["code"] == p.NOT_INVITED
        else:
            assert reply["ok"] and reply["room"]["joined"]
            room["members"].add(p.user_key(me))
            room["invited"].discard(p.user_key(me))
            self.markers[(p.user_key(me), name.lower())] = self.newest()

    @rule(c=st.integers(0, 2), name=st.sampled_from(ROOMS))
    def leave(self, c: int, name: str) -> None:
        reply = self.conns[c].request("leave", room=name)
        me = self.logged_in[c]
        room = self.rooms.get(name.lower())
        if me is None:
            assert reply["error"]["code"] == p.NOT_LOGGED_IN
        elif room is None:
            assert reply["error"]["code"] == p.UNKNOWN_ROOM
        elif p.user_key(me) not in room["members"]:
            assert reply["error"]["code"] == p.NOT_A_MEMBER
        else:
            assert reply["ok"]
            room["members"].discard(p.user_key(me))

    @rule(c=st.integers(0, 2), name=st.sampled_from(ROOMS), who=st.sampled_from(NAMES))
    def invite(self, c: int, name: str, who: str) -> None:
        reply = self.conns[c].request("invite", room=name, username=who)
        me = self.logged_in[c]
        room = self.rooms.get(name.lower())
        if me is None:
            assert reply["error"]["code"] == p.NOT_LOGGED_IN
        elif p.user_key(who) not in self.accounts:
            assert reply["error"]["code"] == p.UNKNOWN_USER
        elif room is None:
            assert reply["error"]["code"] == p.UNKNOWN_ROOM
        elif p.user_key(me) not in room["members"]:
            assert reply["error"]["code"] == p.NOT_A_MEMBER
        else:
            assert reply["ok"]
            if room["private"] and p.user_key(who) not in room["members"]:
                room["invited"].add(p.user_key(who))

    @precondition(lambda self: bool(self.rooms))
    @rule(c=st.integers(0, 1), data=st.data(), nonce=st.sampled_from([None, "n1", "n2"]))
    def chat_in_a_room(self, c: int, data, nonce: Optional[str]) -> None:
        room = data.draw(st.sampled_from(sorted(r["name"] for r in self.rooms.values())))
        self.send_checked(c, room, f"@ben in {room} {len(self.messages) + 1}", None, nonce)

    def newest(self) -> int:
        return self.messages[-1]["id"] if self.messages else 0

    @rule(c=st.integers(0, 1), data=st.data())
    def read_as_a_logged_in_one(self, c: int, data) -> None:
        """Reads are what move unread counts: give them more of the steps."""
        self.read(c, data)

    @precondition(lambda self: any(self.markers.values()))
    @rule(data=st.data())
    def read_backwards(self, data) -> None:
        """Try to move a marker back: the server must keep it where it is."""
        for c, me in enumerate(self.logged_in):
            if me is None:
                continue
            marked = [peer for (reader, peer), upto in self.markers.items()
                      if reader == p.user_key(me) and upto > 0]
            if marked:
                peer = data.draw(st.sampled_from(sorted(marked)))
                lower = data.draw(st.integers(0, self.markers[(p.user_key(me), peer)] - 1))
                reply = self.conns[c].request("read", upto=lower, **{"with": peer})
                assert reply["ok"]
                return

    @rule(c=st.integers(0, 2), data=st.data())
    def read(self, c: int, data) -> None:
        rooms = sorted(r["name"] for r in self.rooms.values())
        peer = data.draw(st.sampled_from(sorted(self.accounts.values()) + ["ghost"] + rooms))
        upto = data.draw(st.sampled_from([0, 99] + [m["id"] for m in self.messages]))
        reply = self.conns[c].request("read", upto=upto, **{"with": peer})
        me = self.logged_in[c]
        if me is None:
            assert reply["error"]["code"] == p.NOT_LOGGED_IN
        elif self.conversation_error(me, peer) is None:
            self.expect_conversation_error(reply, me, peer)
        else:
            assert reply["ok"]
            key = (p.user_key(me), peer.lower())
            self.markers[key] = max(self.markers.get(key, 0), min(upto, self.newest()))

    @rule(c=st.integers(0, 2))
    def disconnect(self, c: int) -> None:
        self.conns[c].close()
        self.conns[c] = RawConn(self.server.address)
        self.logged_in[c] = None
        self.wait_for_presence()

    def wait_for_presence(self) -> None:
        """A closed connection is noticed by its handler thread in its own time: wait
        until the server's sessions are the model's before anyone asks who is online
        (a slow machine once answered with the old session still there)."""
        expected = {p.user_key(name) for name in self.logged_in if name}
        deadline = time.monotonic() + 10
        while self.server.online_keys() != expected and time.monotonic() < deadline:
            time.sleep(0.01)

    @precondition(lambda self: bool(self.accounts))
    @rule()
    def restart(self) -> None:
        for conn in self.conns:
            conn.close()
        self.server.stop()
        self.server = model_server(self.folder / "db")
        self.conns = [RawConn(self.server.address) for _ in range(3)]
        self.logged_in = [None] * 3

    # ------------------------------------------------------------ checks

    def mine(self, name: str) -> List[dict]:
        """What ``history`` shows ``name``: its direct messages and its rooms' messages."""
        key = p.user_key(name)
        rooms = {k for k, r in self.rooms.items() if key in r["members"]}
        return [m for m in self.messages
                if (m["to"].lower() in rooms if p.is_room(m["to"])
                    else key in (p.user_key(m["from"]), p.user_key(m["to"])))]

    @invariant()
    def server_agrees(self) -> None:
        for conn, me in zip(self.conns, self.logged_in):
            if me is None:
                continue
            got = conn.ok("history", limit=1000)["messages"]
            assert got == self.mine(me)
            users = conn.ok("users")["users"]
            assert [u["username"] for u in users] == sorted(self.accounts.values(),
                                                            key=str.lower)
            for row in users:
                marker = self.markers.get((p.user_key(me), p.user_key(row["username"])), 0)
                unread = sum(1 for m in self.messages
                             if p.user_key(m["from"]) == p.user_key(row["username"])
                             and p.user_key(m["to"]) == p.user_key(me) and m["id"] > marker)
                assert row["unread"] == unread, (me, row)
            online = {name for name in self.logged_in if name}
            assert conn.ok("online")["users"] == sorted(online, key=str.lower)
            self.rooms_agree(conn, me)

    def rooms_agree(self, conn: RawConn, me: str) -> None:
        key = p.user_key(me)
        visible = [r for r in self.rooms.values()
                   if not r["private"] or key in r["members"] or key in r["invited"]]
        got = conn.ok("rooms")["rooms"]
        assert [r["room"] for r in got] == sorted((r["name"] for r in visible), key=str.lower)
        for row in got:
            room = self.rooms[row["room"].lower()]
            assert row["joined"] == (key in room["members"])
            assert row["members"] == len(room["members"])
            if row["joined"]:
                marker = self.markers.get((key, row["room"].lower()), 0)
                unread = [m for m in self.messages if m["to"] == row["room"]
                          and p.user_key(m["from"]) != key and m["id"] > marker]
                assert row["unread"] == len(unread), (me, row)


ChatModel.TestCase.settings = settings(max_examples=20, stateful_step_count=25, deadline=None)
test_server_agrees_with_the_model = ChatModel.TestCase
