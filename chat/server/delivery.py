"""Acknowledge after durable: replies and events wait for the commit of their messages.

A handler answers a read's worth of frames at once; when the batch holds
sends, it is parked here until the store says its last message is on disk
(or lost to a failed write), and the store's committer thread then sends
every reply and event that became due: one write per connection per round,
in message id order, never holding a lock while writing.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import TYPE_CHECKING, Callable, Dict, List, NamedTuple, Optional

from .. import protocol as p
from ..store import Store

if TYPE_CHECKING:
    from .handler import ChatHandler

FanOut = Callable[[Dict["ChatHandler", List[bytes]], "ChatHandler", List["Send"]], None]


class Send(NamedTuple):
    """A message sent in a batch of replies, until its fate is known."""

    id: int                         # its message id
    index: int                      # where its acknowledgement stands in the batch
    req_id: Optional[p.RequestId]   # to answer with an error instead, if it is lost
    json: str                       # the message as the wire shows it
    to: str                         # a user or a room, canonical
    sender: str
    fresh: bool                     # False: a resend with a used nonce (no event)


class Deliveries:
    """The batches waiting for their commit, in message id order.

    ``fan_out(out, sender, sends)`` adds the events of stored sends to ``out``
    (the session registry knows who gets them).
    """

    def __init__(self, store: Store, fan_out: FanOut) -> None:
        self._store = store
        self._fan_out = fan_out
        self._delivery_lock = threading.Lock()
        self._deliveries: List[tuple] = []    # heap: (last id, seq, handler, replies, sends)
        self._delivery_seq = itertools.count()
        self._delivering = False          # one thread sends acknowledgements at a time
        self._durable_seen = 0
        #: Ids the store gave up on (failed writes), as it reported them: kept here so
        #: the per-message path never takes the store's lock to ask.
        self._lost: List[range] = []
        store.add_durable_listener(self._on_durable)

    def _is_lost(self, msg_id: int) -> bool:
        return any(msg_id in ids for ids in self._lost) if self._lost else False

    def deliver_when_durable(self, last_id: int, handler: "ChatHandler", replies: List[bytes],
                             sends: List[Send]) -> None:
        """Queue a batch of replies (and its message events) until message ``last_id``
        is fsynced, or known lost. ``sends`` holds a ``Send`` tuple per message."""
        with self._delivery_lock:
            heapq.heappush(self._deliveries,
                           (last_id, next(self._delivery_seq), handler, replies, sends))
            handler.undelivered += 1
            handler._drained.clear()
        durable_id = self._store.durable_id
        if last_id <= durable_id or self._is_lost(last_id):
            self._on_durable(durable_id, None)  # settled already: nobody else will call

    def _on_durable(self, durable_id: int, failed: Optional[range]) -> None:
        """Send every reply and event whose messages are now on disk (from the committer).

        After a failed write (``failed``: the ids the store gave up), the
        batches holding those ids are settled too: their sends are answered
        with ``server_error`` instead of an acknowledgement. One thread sends
        at a time, which keeps each connection's replies in order; the lock is
        held only to take work from the heap, never while sending, so handler
        threads queueing new work never wait on the network.
        """
        with self._delivery_lock:
            self._durable_seen = max(self._durable_seen, durable_id)
            if failed:
                self._lost.append(failed)
            if self._delivering:
                return  # the thread sending now takes this work on its next round
            self._delivering = True
        lost = self._is_lost
        while True:
            with self._delivery_lock:
                ready = []
                while self._deliveries and (self._deliveries[0][0] <= self._durable_seen
                                            or lost(self._deliveries[0][0])):
                    ready.append(heapq.heappop(self._deliveries))
                if not ready:
                    self._delivering = False
                    return
            out: Dict[ChatHandler, List[bytes]] = {}
            for _, _, handler, replies, sends in ready:
                stored = self._settle(replies, sends)
                out.setdefault(handler, []).extend(replies)
                self._fan_out(out, handler, stored)
            for handler, chunks in out.items():   # one write per connection per round
                handler.outbox.push_many(chunks)
            with self._delivery_lock:
                for _, _, handler, _, _ in ready:
                    handler.undelivered -= 1
                    if not handler.undelivered:
                        handler._drained.set()

    def _settle(self, replies: List[bytes], sends: List[Send]) -> List[Send]:
        """Turn the acknowledgement of every message the store lost into an error
        reply (in place); the sends that were stored."""
        if not self._lost:   # the usual case: no write ever failed
            return sends
        lost = self._is_lost
        stored = []
        for send in sends:
            if lost(send.id):
                replies[send.index] = p.error_reply(
                    send.req_id, p.SERVER_ERROR,
                    "the server could not store the message (disk error); it was not sent")
            else:
                stored.append(send)
        return stored

    def wait_idle(self, timeout: float) -> None:
        """Wait up to ``timeout`` for every parked batch to be sent (at shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._delivery_lock:
                if not self._deliveries and not self._delivering:
                    return
            time.sleep(0.01)
