"""A stateful property test: random sign-ups, logins, sends, reads, disconnects and
restarts against a real server, checked step by step against a simple model."""
from __future__ import annotations

import shutil
import tempfile
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

    def send_checked(self, c: int, to: str, text: str, reply_to: Optional[int]) -> None:
        reply = self.conns[c].request("send", to=to, text=text, reply_to=reply_to)
        me = self.logged_in[c]
        if me is None:
            assert reply["error"]["code"] == p.NOT_LOGGED_IN
            return
        if not text.strip() or len(text) > p.MAX_TEXT_CHARS:
            assert reply["error"]["code"] == p.INVALID_TEXT
            return
        if p.user_key(to) not in self.accounts:
            assert reply["error"]["code"] == p.UNKNOWN_USER
            return
        mine = {m["id"] for m in self.mine(me)}
        if reply_to is not None and reply_to not in mine:
            assert reply["error"]["code"] == p.UNKNOWN_MESSAGE
            return
        msg = reply["message"]
        expected_id = (self.messages[-1]["id"] + 1) if self.messages else 1
        assert msg["id"] == expected_id
        assert (msg["from"], msg["to"], msg["text"], msg["reply_to"]) == (
            me, self.accounts[p.user_key(to)], text, reply_to)
        self.messages.append(msg)

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
        peer = data.draw(st.sampled_from(sorted(self.accounts.values()) + ["ghost"]))
        upto = data.draw(st.sampled_from([0, 99] + [m["id"] for m in self.messages]))
        reply = self.conns[c].request("read", upto=upto, **{"with": peer})
        me = self.logged_in[c]
        if me is None:
            assert reply["error"]["code"] == p.NOT_LOGGED_IN
        elif p.user_key(peer) not in self.accounts:
            assert reply["error"]["code"] == p.UNKNOWN_USER
        else:
            assert reply["ok"]
            newest = self.messages[-1]["id"] if self.messages else 0
            key = (p.user_key(me), p.user_key(peer))
            self.markers[key] = max(self.markers.get(key, 0), min(upto, newest))

    @rule(c=st.integers(0, 2))
    def disconnect(self, c: int) -> None:
        self.conns[c].close()
        self.conns[c] = RawConn(self.server.address)
        self.logged_in[c] = None

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
        key = p.user_key(name)
        return [m for m in self.messages
                if key in (p.user_key(m["from"]), p.user_key(m["to"]))]

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


ChatModel.TestCase.settings = settings(max_examples=20, stateful_step_count=25, deadline=None)
test_server_agrees_with_the_model = ChatModel.TestCase
