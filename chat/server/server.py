"""The listener and the registry of live sessions.

``ChatServer`` (socketserver's ``ThreadingTCPServer``) admits or refuses
connections before any work is spent on them, knows who is logged in on
which connections (presence, fan-out targets), clears connections that did
not log in in time, and stops in bounded time. Each connection is a
``ChatHandler`` thread (handler.py); replies to sends wait in ``Deliveries``
(delivery.py) for the store's committer to make their messages durable.
"""
from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
import time
from collections import Counter
from typing import Dict, List, Optional, Set, Tuple

from .. import protocol as p
from ..auth import Hasher, HashParams, KeyedBuckets, LoginThrottle
from ..store import Store
from .config import ServerConfig
from .delivery import Deliveries, Stored
from .handler import ChatHandler
from .netio import Flusher, OutboxBudget, send_nowait
from .rooms import RoomRegistry

log = logging.getLogger("chat.server")

#: Past the global outbox budget, a queue longer than this is dropped when it grows.
_FAIR_SHARE = 64 * 1024


class ChatServer(socketserver.ThreadingTCPServer):
    """Listening socket, shared state, and the registry of live sessions."""

    allow_reuse_address = True
    # Handler threads are cut loose at exit: shutdown() closes their sockets
    # first, so each finishes promptly, and a stuck one cannot hang the exit.
    daemon_threads = True

    def __init__(self, config: ServerConfig, store: Optional[Store] = None) -> None:
        """Bind the port, then open the store (which takes the database folder's
        lock before it reads anything): a second server fails on one or the
        other before it can touch the first one's files."""
        self.config = config
        self.request_queue_size = config.backlog
        self.tls_context = _tls_context(config)
        super().__init__((config.host, config.port), ChatHandler)
        try:
            self.store = store or Store(config.db)
        except BaseException:
            self.server_close()
            raise
        self.hasher = Hasher(HashParams.from_cost(config.hash_cost))
        self.throttle = LoginThrottle()
        self.send_limits = KeyedBuckets(config.msg_rate, config.msg_burst)
        self.read_limits = KeyedBuckets(config.read_rate, config.read_burst)
        self.signup_limits = KeyedBuckets(config.signup_rate, config.signup_burst)
        self.flusher = Flusher()
        self.outbox_budget = OutboxBudget(config.outbox_budget, _FAIR_SHARE)
        self._lock = threading.Lock()
        self._sessions: Dict[str, Set["ChatHandler"]] = {}
        #: (recipient as sent, sender) -> the sessions its messages go to; see sessions_changed
        self._targets: Dict[Tuple[str, str], Tuple["ChatHandler", ...]] = {}
        self._handlers: Set["ChatHandler"] = set()
        self._admitted: Dict[socket.socket, str] = {}   # accepted socket -> peer host
        self._per_address: Counter = Counter()
        self._handshakes = 0
        self.rooms = RoomRegistry(self._room_members, self.sessions_changed)
        self.delivery = Deliveries(self.store, self._add_message_events)
        self._stopping = threading.Event()
        self._serving_thread: Optional[threading.Thread] = None
        self._reaper = threading.Thread(target=self._reap, name="chat-reaper", daemon=True)
        self._reaper.start()

    @property
    def address(self) -> Tuple[str, int]:
        host, port = self.server_address[:2]
        return host, port

    # ------------------------------------------------------------ connections

    def _room_members(self, name: str):
        room = self.store.get_room(name)
        return None if room is None else room.members

    def verify_request(self, request, client_address) -> bool:
        """Admit or refuse a connection in the accepting thread, before a thread,
        a TLS handshake or a byte of buffer is spent on it (socketserver's hook)."""
        host = client_address[0]
        with self._lock:
            if len(self._admitted) >= self.config.max_connections:
                refusal = "the server has too many connections; try again later"
            elif self._per_address[host] >= self.config.max_per_address:
                refusal = "too many connections from your address"
            else:
                self._admitted[request] = host
                self._per_address[host] += 1
                return True
        log.warning("refused %s:%s: %s", host, client_address[1], refusal)
        if self.tls_context is None:  # a TLS client could not read a plain-text reason
            try:
                send_nowait(request, p.error_reply(None, p.RATE_LIMITED, refusal))
            except OSError:
                pass
        return False

    def shutdown_request(self, request) -> None:
        """Called once for every accepted socket, admitted or not: release its place."""
        with self._lock:
            host = self._admitted.pop(request, None)
            if host is not None:
                self._per_address[host] -= 1
                if self._per_address[host] <= 0:
                    del self._per_address[host]
        super().shutdown_request(request)

    def begin_handshake(self) -> bool:
        """Take one of the ``max_handshakes`` places for a TLS handshake."""
        with self._lock:
            if self._handshakes >= self.config.max_handshakes:
                return False
            self._handshakes += 1
            return True

    def end_handshake(self) -> None:
        with self._lock:
            self._handshakes -= 1

    def register(self, handler: "ChatHandler") -> None:
        with self._lock:
            self._handlers.add(handler)

    def forget(self, handler: "ChatHandler") -> None:
        with self._lock:
            self._handlers.discard(handler)

    # ------------------------------------------------------------ sessions

    def log_in(self, handler: "ChatHandler", name: str) -> None:
        key = p.user_key(name)
        with self._lock:
            sessions = self._sessions.setdefault(key, set())
            first = not sessions
            sessions.add(handler)
            self._targets.clear()
            others = self._logged_in_except(handler) if first else []
        if first:
            self.push_to(others, p.event("presence", username=name, online=True))

    def log_out(self, handler: "ChatHandler", name: str) -> None:
        key = p.user_key(name)
        with self._lock:
            sessions = self._sessions.get(key)
            if not sessions or handler not in sessions:
                return
            sessions.discard(handler)
            self._targets.clear()
            last = not sessions
            if last:
                del self._sessions[key]
            others = self._logged_in_except(handler) if last else []
        if last:
            self.push_to(others, p.event("presence", username=name, online=False))

    def _logged_in_except(self, handler: "ChatHandler") -> List["ChatHandler"]:
        return [h for group in self._sessions.values() for h in group if h is not handler]

    def online_keys(self) -> Set[str]:
        with self._lock:
            return set(self._sessions)

    def all_logged_in(self) -> List["ChatHandler"]:
        with self._lock:
            return [h for group in self._sessions.values() for h in group]

    def _add_message_events(self, out: Dict["ChatHandler", List[bytes]],
                            stored: List[Stored]) -> None:
        """Each new message to every session of its conversation but the sending one:
        a direct message's two users, or a room's members. This runs for every
        message delivered (a hot loop): each conversation's target sessions are
        cached, and the cache is cleared whenever a session or a membership changes
        (under this lock, so a stale entry cannot be stored after a clear). The
        event's bytes are built once and shared by every recipient."""
        targets = self._targets
        message_event = p.message_event
        with self._lock:
            for sending, to, sender, msg_json in stored:
                handlers = targets.get((to, sender))
                if handlers is None:
                    handlers = self._target_sessions(to, sender)
                frame = message_event(msg_json)
                for handler in handlers:
                    if handler is not sending:
                        queued = out.get(handler)
                        if queued is None:
                            out[handler] = [frame]
                        else:
                            queued.append(frame)

    def _target_sessions(self, to: str, sender: str) -> Tuple["ChatHandler", ...]:
        """The sessions a message from ``sender`` to ``to`` goes to (cached; the lock is
        held): a room's members' or the two users' of a direct message."""
        if len(self._targets) > 100_000:
            self._targets.clear()
        keys = self.rooms.members(to) if to[:1] == "#" else {p.user_key(to),
                                                             p.user_key(sender)}
        sessions = self._sessions
        handlers = tuple(h for key in keys for h in sessions.get(key, ()))
        self._targets[(to, sender)] = handlers
        return handlers

    def sessions_changed(self) -> None:
        """Forget the cached fan-out targets: a session or a room membership changed."""
        with self._lock:
            self._targets.clear()

    def to_users(self, users, frame: bytes, but: Optional[ChatHandler] = None) -> None:
        """Push ``frame`` to every session of ``users`` (names or keys) except ``but``."""
        with self._lock:
            targets = [h for user in users for h in self._sessions.get(p.user_key(user), ())
                       if h is not but]
        self.push_to(targets, frame)


    @staticmethod
    def push_to(handlers, frame: bytes) -> None:
        for handler in handlers:
            handler.outbox.push(frame)

    # ------------------------------------------------------------ lifecycle

    def _reap(self) -> None:
        """Close connections that did not log in within the deadline."""
        while not self._stopping.wait(1.0):
            now = time.monotonic()
            with self._lock:
                late = [h for h in self._handlers if h.login_deadline and now > h.login_deadline]
            for handler in late:
                handler.refuse(p.BAD_REQUEST,
                               f"log in within {self.config.login_timeout:g} seconds of connecting")

    def stop(self) -> None:
        """Stop accepting, close every connection, commit and close the store."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._serving_thread is not None:
            self.shutdown()
        self.server_close()
        self._flush_acknowledgements(timeout=3.0)
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:   # what is queued gets half a second, all at once
            handler.outbox.close_after(b"", 0.5)
        deadline = time.monotonic() + 5
        for handler in handlers:
            handler.finished.wait(max(0.0, deadline - time.monotonic()))
        for handler in handlers:
            handler.outbox.close()
        self.flusher.stop()
        self.store.close()
        log.info("stopped; database closed cleanly")

    def _flush_acknowledgements(self, timeout: float) -> None:
        """Commit what is appended and let its replies out before connections close,
        so a message stored at shutdown is also acknowledged."""
        try:
            self.store.wait_durable(self.store.last_id)
        except (p.ChatError, ValueError):
            return
        self.delivery.wait_idle(timeout)

    def pause(self, seconds: float) -> None:
        """Sleep in a handler thread, cut short when the server stops."""
        self._stopping.wait(seconds)

    def serve_in_thread(self) -> threading.Thread:
        """Start serving in a background thread (what tests and the benchmark use)."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                  name="chat-accept", daemon=True)
        self._serving_thread = thread
        thread.start()
        return thread

    def handle_error(self, request, client_address) -> None:
        log.exception("unhandled error on connection from %s", client_address)


def _tls_context(config: ServerConfig) -> Optional[ssl.SSLContext]:
    if not config.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(config.tls_cert), str(config.tls_key) if config.tls_key else None)
    return context
