"""Acknowledge after durable: a connection's replies wait for the commit of its sends.

A handler answers a read's worth of frames at once. When the batch holds
sends (or earlier batches are still owed), it is submitted to the store
with its replies and the place of each send's acknowledgement, and the
handler goes back to reading: it takes no lock the committer holds. Once
per round the store's committer hands over every batch it made durable
(``_on_round``); this module fills in each acknowledgement (or the error a
send was refused with), adds the message events, and sends it all: one write
per connection per round, in message id order, never holding a lock while
writing.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from .. import protocol as p
from ..store import ChatStore, Outcome, SendRequest

if TYPE_CHECKING:
    from .handler import ChatHandler

#: Where a send's acknowledgement goes in its batch, and what its event needs:
#: (index in the replies, request id, recipient as sent, sender).
Slot = Tuple[int, Optional[p.RequestId], str, str]
#: A stored new message to fan out: (sending connection, recipient as sent, sender, JSON).
Stored = Tuple["ChatHandler", str, str, str]
FanOut = Callable[[Dict["ChatHandler", List[bytes]], List[Stored]], None]


class Deliveries:
    """The batches submitted to the store and not yet answered.

    ``fan_out(out, stored)`` adds the events of a round's new messages to
    ``out`` (the session registry knows who gets them).
    """

    def __init__(self, store: ChatStore, fan_out: FanOut) -> None:
        self._store = store
        self._fan_out = fan_out
        self._lock = threading.Lock()
        self._outstanding = 0             # batches submitted, not yet answered
        store.set_batch_listener(self._on_round)

    def submit(self, handler: "ChatHandler", replies: List[bytes], slots: List[Slot],
               sends: List[SendRequest]) -> None:
        """Hand a batch of replies and its sends to the store; the replies leave when
        every send is durable (or refused), after the connection's earlier batches."""
        with self._lock:
            handler.undelivered += 1
            handler.drained.clear()
            self._outstanding += 1
        self._store.submit((handler, replies, slots), sends)

    def _on_round(self, done: List[Tuple[Any, List[Outcome]]]) -> None:
        """Send every reply and event of a round the store made durable (the committer).

        Each send's placeholder becomes its acknowledgement (the stored
        message) or its error; new messages (not resends) go to their
        conversation's other sessions, whose frames are shared bytes.
        """
        out: Dict["ChatHandler", List[bytes]] = {}
        stored: List[Stored] = []
        ok_reply_raw, error_reply = p.ok_reply_raw, p.error_reply
        for (handler, replies, slots), outcomes in done:
            for (index, req_id, to, sender), outcome in zip(slots, outcomes):
                if type(outcome) is tuple:
                    msg_json = outcome[1]
                    replies[index] = ok_reply_raw(req_id, "message", msg_json)
                    if outcome[2]:
                        stored.append((handler, to, sender, msg_json))
                else:
                    replies[index] = error_reply(req_id, outcome.code, outcome.message)
            queued = out.get(handler)
            if queued is None:
                out[handler] = replies
            else:
                queued.extend(replies)
            if stored:   # events after the replies already queued, in id order
                self._fan_out(out, stored)
                stored = []
        for handler, chunks in out.items():   # one write per connection per round
            handler.outbox.push_many(chunks)
        with self._lock:
            for (handler, _, _), _ in done:
                handler.undelivered -= 1
                if not handler.undelivered:
                    handler.drained.set()
            self._outstanding -= len(done)

    def wait_idle(self, timeout: float) -> None:
        """Wait up to ``timeout`` for every submitted batch to be answered (at shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._outstanding:
                    return
            time.sleep(0.01)
