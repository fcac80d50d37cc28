"""Messages on their way: sent off the UI thread, shown pending until the server has them.

Enter must never wait for the network. ``Outbox.submit`` files the message and
returns at once; a worker thread sends the messages one after another, in the
order typed, each with its own nonce, and posts the outcome as an ``outbox``
event to the app's event queue (the client library's ``events``), so the UI
thread is the only one that changes what is shown.

The promise: a message is stored **exactly once** or refused with the server's
reason. A lost connection is no refusal: the worker waits for the client
library to reconnect and log in again, and sends it again with the same nonce,
which the server answers with the copy it already stored, if it stored one.
Not promised: a message still pending when the client quits is not kept.
"""
from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import protocol as p
from ..client import ChatClient, new_nonce
from .text import sanitize, truncate, wrap_text

#: send(to, text, reply_to, nonce) → the stored message; ChatError when refused.
SendFn = Callable[[str, str, Optional[int], str], p.Message]
#: Pending rows are drawn like a quote: dimmed.
PENDING_ROLE = "quote"
#: Seconds between two tries while the connection is down (the library's own wait comes first).
RETRY_DELAY = 0.5


@dataclass(frozen=True)
class Outgoing:
    """One message typed and not yet stored."""

    key: int
    to: str
    text: str
    reply_to: Optional[int]
    nonce: str


class Outbox:
    """Pending and refused sends, in the order typed. ``items`` and ``failed`` are read and
    changed by the UI thread only; the worker gets its own reference to each message."""

    def __init__(self, send: SendFn, post: Callable[[Dict[str, Any]], None],
                 threaded: bool = True) -> None:
        self._send = send
        self._post = post
        self.threaded = threaded
        self.items: List[Outgoing] = []
        self.failed: Dict[int, str] = {}          # key → the server's reason
        self._keys = itertools.count(1)
        self._jobs: "queue.Queue[Optional[Outgoing]]" = queue.Queue()
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None

    def submit(self, to: str, text: str, reply_to: Optional[int] = None) -> Outgoing:
        """File a message for sending; returns at once (unless ``threaded`` is off)."""
        item = Outgoing(next(self._keys), to, text, reply_to, new_nonce())
        self.items.append(item)
        if not self.threaded:
            self._deliver(item)
            return item
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="chat-outbox", daemon=True)
            self._worker.start()
        self._jobs.put(item)
        return item

    def settle(self, ev: Dict[str, Any]) -> Tuple[Optional[Outgoing], Optional[p.Message]]:
        """Apply an ``outbox`` event: (the message it was about, the stored message or
        None when refused). A refused message stays in ``items``, marked in ``failed``."""
        item = next((i for i in self.items if i.key == ev.get("key")), None)
        if item is None:
            return None, None
        if "error" in ev:
            self.failed[item.key] = str(ev["error"])
            return item, None
        self.items.remove(item)
        self.failed.pop(item.key, None)
        try:
            return item, p.Message.from_dict(ev.get("message"))
        except p.ChatError:
            return item, None

    def forget(self, item: Outgoing) -> None:
        """No longer show a refused message (its text went back to the input line)."""
        self.items = [i for i in self.items if i.key != item.key]
        self.failed.pop(item.key, None)

    def waiting(self) -> int:
        return sum(1 for i in self.items if i.key not in self.failed)

    def stop(self) -> None:
        """No more tries (the screen is closing): the worker ends after its current one."""
        self._stop.set()
        self._jobs.put(None)

    # ------------------------------------------------------------ the worker thread

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self._jobs.get()
            if item is None:
                return
            self._deliver(item)

    def _deliver(self, item: Outgoing) -> None:
        """Send until stored or refused; a connection problem is waited out, not reported."""
        while not self._stop.is_set():
            try:
                msg = self._send(item.to, item.text, item.reply_to, item.nonce)
            except p.ChatError as exc:
                self._post({"event": "outbox", "key": item.key, "error": exc.message})
                return
            except (ConnectionError, TimeoutError) as exc:
                if not self.threaded:
                    self._post({"event": "outbox", "key": item.key, "error": str(exc)})
                    return
                self._stop.wait(RETRY_DELAY)
                continue
            except Exception as exc:   # a bug here must not leave every later message stuck
                self._post({"event": "outbox", "key": item.key,
                            "error": f"{type(exc).__name__}: {exc}"})
                return
            self._post({"event": "outbox", "key": item.key, "message": msg.to_dict()})
            return


def pending_rows(outbox: Optional[Outbox], peer: Optional[str], me: str,
                 width: int) -> List[Tuple[str, str, Optional[int]]]:
    """The messages pane's rows for what is on its way to the open conversation (to all,
    in the all-messages view): ``… alice · sending`` over the text, or ``✗`` and the
    server's reason once refused. Pure: tested directly."""
    if outbox is None or not outbox.items:
        return []
    rows: List[Tuple[str, str, Optional[int]]] = []
    key = p.user_key(peer) if peer else None
    for item in outbox.items:
        if key is not None and p.user_key(item.to) != key:
            continue
        who = sanitize(me) + ("" if peer else f" → {sanitize(item.to)}")
        reason = outbox.failed.get(item.key)
        head = f"✗ {who} · not sent: {sanitize(reason)}" if reason is not None else \
            f"… {who} · pending"
        rows.append((truncate(head, width), PENDING_ROLE, None))
        for line in wrap_text(item.text, max(1, width - 2)):
            rows.append(("  " + line, PENDING_ROLE, None))
    return rows


def make_outbox(client: Any) -> Outbox:
    """The outbox of a client: threaded for a ``ChatClient``; a stand-in client (the app's
    tests) is sent to inline, without nonces, so a test sees what was sent at once."""
    post = client.events.put
    if isinstance(client, ChatClient):
        return Outbox(lambda to, text, reply_to, nonce: client.send(
            to, text, reply_to=reply_to, nonce=nonce), post)
    return Outbox(lambda to, text, reply_to, _nonce: client.send(to, text, reply_to=reply_to),
                  post, threaded=False)
