"""The batch pipeline (issue 10): sends are submitted to the store's committer, which
answers whole rounds, and no handler thread waits on the store's lock to read.

Speed is measured by the benchmark, not here; these tests hold the shape that
makes it fast to the promises: every batch answered, in order, only once
durable; errors per send; a failed write answered ``server_error``; fan-out
targets that follow logins and memberships.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, List, Tuple

import pytest

from chat import protocol as p
from chat.server.handler import MAX_OWED_BATCHES
from chat.store import Store

from .support import RawConn
from .test_store_faults import FailingSync


class Rounds:
    """A batch listener that keeps every round it is given."""

    def __init__(self) -> None:
        self.rounds: List[List[Tuple[Any, list]]] = []
        self.changed = threading.Condition()

    def __call__(self, done) -> None:
        with self.changed:
            self.rounds.append(list(done))
            self.changed.notify_all()

    def answered(self, count: int, timeout: float = 10.0) -> List[Tuple[Any, list]]:
        """The first ``count`` batches answered, in the order they were answered."""
        with self.changed:
            assert self.changed.wait_for(
                lambda: sum(len(r) for r in self.rounds) >= count, timeout), self.rounds
            return [batch for r in self.rounds for batch in r][:count]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db")
    s.add_user("alice", "h")
    s.add_user("bob", "h")
    yield s
    s.close()


def test_submitted_batches_are_answered_in_order_with_each_sends_outcome(store):
    rounds = Rounds()
    store.set_batch_listener(rounds)
    store.submit("first", [("alice", "bob", "one", None, None),
                           ("alice", "nobody", "lost", None, None),
                           ("alice", "bob", "two", None, "n-1")])
    store.submit("empty", [])     # a batch with no send keeps its place too
    store.submit("third", [("bob", "alice", "three", 1, None),
                           ("alice", "bob", "two again", None, "n-1"),
                           ("alice", "#nowhere", "x", None, None)])
    (t1, first), (t2, empty), (t3, third) = rounds.answered(3)
    assert (t1, t2, t3) == ("first", "empty", "third")
    assert empty == []
    one, unknown, two = first
    assert one[0] == 1 and one[2] is True and '"text":"one"' in one[1]
    assert isinstance(unknown, p.ChatError) and unknown.code == p.UNKNOWN_USER
    assert two[0] == 2 and two[2] is True
    three, resend, room = third
    assert three[0] == 3 and json.loads(three[1])["reply_to"] == 1
    assert resend == (2, two[1], False)            # the stored message, not stored again
    assert isinstance(room, p.ChatError) and room.code == p.UNKNOWN_ROOM
    # answered only once durable: every id is on disk and readable
    assert store.durable_id >= 3
    assert [json.loads(m)["text"] for m in store.history("bob")] == ["one", "two", "three"]


def test_a_batch_submitted_after_close_is_answered_with_an_error(tmp_path):
    s = Store(tmp_path / "db")
    s.add_user("alice", "h")
    rounds = Rounds()
    s.set_batch_listener(rounds)
    s.close()
    s.submit("late", [("alice", "alice", "after the end", None, None)])
    (token, (outcome,)), = rounds.answered(1)
    assert token == "late"
    assert isinstance(outcome, p.ChatError) and outcome.code == p.SERVER_ERROR


def test_a_round_whose_write_fails_answers_its_sends_with_server_error(tmp_path):
    files = FailingSync()
    s = Store(tmp_path / "db", files=files)
    s.add_user("alice", "h")
    s.add_user("bob", "h")
    rounds = Rounds()
    s.set_batch_listener(rounds)
    s.submit("good", [("alice", "bob", "stored", None, None)])
    rounds.answered(1)
    files.broken.set()
    s.submit("bad", [("alice", "bob", "secret", None, None), ("bob", "alice", "x", None, None)])
    _, (token, outcomes) = rounds.answered(2)
    assert token == "bad"
    assert [type(o) for o in outcomes] == [p.ChatError, p.ChatError]
    assert all(o.code == p.SERVER_ERROR and "not sent" in o.message for o in outcomes)
    assert [json.loads(m)["text"] for m in s.history("alice")] == ["stored"]
    s.close()


def _handler_stacks() -> List[List[str]]:
    """The function names on the stack of every connection's handler thread."""
    threads = {t.ident: t for t in threading.enumerate()}
    stacks = []
    for ident, frame in sys._current_frames().items():
        names = []
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        thread = threads.get(ident)
        if thread is not None and "handle" in names and "_receive" in names:
            stacks.append(names)
    return stacks


def test_a_handler_reads_on_while_the_store_lock_is_held(chat_server, connect):
    """While something else holds the store's lock (a history read, a commit's
    bookkeeping), a connection's sends are taken off the socket and submitted:
    its handler is back in recv, not queued on the lock (the lock convoy that
    stalled a thousand connections). They are answered once the lock is free."""
    alice = connect()
    alice.login("alice")
    bob = connect()
    bob.login("bob")
    with chat_server.store._lock:
        for i in range(50):
            alice.send_obj({"op": "send", "id": i, "to": "bob", "text": f"m{i}"})
        deadline = time.monotonic() + 5
        while True:
            stacks = _handler_stacks()
            reading = [s for s in stacks if s[0] == "_receive"]   # in recv (C, no frame)
            submitted = [h for h in chat_server._handlers if h.user == "alice" and h.undelivered]
            if len(reading) == len(stacks) == 2 and submitted:
                break
            assert time.monotonic() < deadline, f"handlers not reading: {stacks}"
            time.sleep(0.02)
    replies = [alice.reply() for _ in range(50)]
    assert [r["id"] for r in replies] == list(range(50)) and all(r["ok"] for r in replies)
    assert [bob.event("message")["message"]["text"] for _ in range(50)] == \
        [f"m{i}" for i in range(50)]


def test_fan_out_follows_logins_logouts_joins_and_leaves(chat_server, connect):
    """The sessions a conversation's messages go to are cached; every change of
    sessions or members must show in the very next message."""
    alice, bob = connect(), connect()
    alice.login("alice")
    bob.login("bob")
    alice.ok("send", to="bob", text="before")
    assert bob.event("message")["message"]["text"] == "before"
    bob2 = RawConn(chat_server.address)          # a second session of bob, after the first
    bob2.login("bob", signup=False)
    alice.ok("send", to="bob", text="to both")
    assert bob.event("message")["message"]["text"] == "to both"
    assert bob2.event("message")["message"]["text"] == "to both"
    bob2.close()
    alice.ok("send", to="bob", text="one left")
    assert bob.event("message")["message"]["text"] == "one left"

    alice.ok("room_create", room="#team")
    carol = connect()
    carol.login("carol")
    alice.ok("send", to="#team", text="alone")
    carol.no_event("message")
    carol.ok("join", room="#team")
    alice.ok("send", to="#team", text="hello carol")
    assert carol.event("message")["message"]["text"] == "hello carol"
    carol.ok("leave", room="#team")
    alice.ok("send", to="#team", text="gone")
    carol.no_event("message")
    bob.no_event("message")


def test_a_flooding_connection_stops_being_read_while_its_batches_are_owed(chat_server,
                                                                            connect):
    """Sends are taken off the socket without waiting for the store, so something
    must bound what one connection can have submitted: past MAX_OWED_BATCHES
    unanswered batches its handler stops reading (the kernel's buffers then push
    back on the client) until the committer catches up. Nothing is lost."""
    alice = connect()
    alice.login("alice")
    bob = connect()
    bob.login("bob")
    handler = next(h for h in chat_server._handlers if h.user == "alice")
    count = 4 * MAX_OWED_BATCHES
    with chat_server.store._lock:    # the committer cannot store a round meanwhile
        for i in range(count):       # one frame per write: a batch per read, roughly
            alice.send_obj({"op": "send", "id": i, "to": "bob", "text": f"m{i}"})
            time.sleep(0.005)
        time.sleep(0.3)
        assert handler.undelivered <= MAX_OWED_BATCHES
    replies = [alice.reply() for _ in range(count)]
    assert [r["id"] for r in replies] == list(range(count)) and all(r["ok"] for r in replies)
    assert [bob.event("message")["message"]["text"] for _ in range(count)] == \
        [f"m{i}" for i in range(count)]
