"""The chat server: one thread per connection on socketserver, ops by dispatch table.

``ChatServer`` owns the shared state (store, sessions, limits); a
``ChatHandler`` per connection reads frames, runs one small method per op and
pushes events to other connections through their outboxes (never blocking on
a slow reader). Sends are acknowledged only once fsynced: a handler takes
every frame a read delivered, appends their messages, waits once for the
group commit, then answers them all in one write.
"""
from __future__ import annotations

import argparse
import heapq
import ipaddress
import itertools
import logging
import math
import os
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple

from . import protocol as p
from .auth import DEFAULT_HASH_COST, Hasher, HashParams, KeyedBuckets, LoginThrottle, Throttled
from .dblock import DatabaseLocked
from .netio import Flusher, Outbox, OutboxBudget, TlsSession, send_nowait
from .store import Store, StoreCorrupt

log = logging.getLogger("chat.server")

_ACK_STALL_SECONDS = 60   # a commit this late means the disk is gone: give up on the peer
#: Past the global outbox budget, a queue longer than this is dropped when it grows.
_FAIR_SHARE = 64 * 1024
_MIN_RECV = 4 * 1024
_MAX_RECV = 256 * 1024


@dataclass
class ServerConfig:
    """Everything the server can be told; built from the command line by ``parse_args``."""

    host: str = "127.0.0.1"
    port: int = p.DEFAULT_PORT
    db: Path = Path("db")
    hash_cost: int = DEFAULT_HASH_COST
    tls_cert: Optional[Path] = None
    tls_key: Optional[Path] = None
    max_connections: int = 4096
    max_per_address: int = 2048
    max_handshakes: int = 64           # TLS handshakes in progress at once
    login_timeout: float = 60.0
    msg_rate: float = 50.0             # per user, over all their connections
    msg_burst: float = 200.0
    read_rate: float = 20.0            # read-marker moves per user per second
    read_burst: float = 100.0
    signup_rate: float = 0.1           # sign-ups per address per second (one per 10 s) ...
    signup_burst: float = 5.0          # ... after a burst of this many
    user_quota: int = 256 * 1024 * 1024  # bytes of messages one user may store; 0: no limit
    outbox_limit: int = 4 * 1024 * 1024
    prelogin_outbox_limit: int = 64 * 1024
    outbox_budget: int = 512 * 1024 * 1024  # all outboxes together
    keepalive_idle: int = 60
    backlog: int = 1024


class _Send(NamedTuple):
    """A message sent in a batch of replies, until its fate is known."""

    id: int                         # its message id
    index: int                      # where its acknowledgement stands in the batch
    req_id: Optional[p.RequestId]   # to answer with an error instead, if it is lost
    json: str                       # the message as the wire shows it
    to: str
    sender: str


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
        self._handlers: Set["ChatHandler"] = set()
        self._admitted: Dict[socket.socket, str] = {}   # accepted socket -> peer host
        self._per_address: Counter = Counter()
        self._handshakes = 0
        self._delivery_lock = threading.Lock()
        self._deliveries: List[_Send] = []    # heap: (message id, seq, handler, replies, msgs)
        self._delivery_seq = itertools.count()
        self._delivering = False          # one thread sends acknowledgements at a time
        self._durable_seen = 0
        self.store.add_durable_listener(self._on_durable)
        self._stopping = threading.Event()
        self._serving_thread: Optional[threading.Thread] = None
        self._reaper = threading.Thread(target=self._reap, name="chat-reaper", daemon=True)
        self._reaper.start()

    @property
    def address(self) -> Tuple[str, int]:
        host, port = self.server_address[:2]
        return host, port

    # ------------------------------------------------------------ connections

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

    # ------------------------------------------------------------ acknowledgements

    def deliver_when_durable(self, last_id: int, handler: "ChatHandler", replies: List[bytes],
                             sends: List[_Send]) -> None:
        """Queue a batch of replies (and its message events) until message ``last_id``
        is fsynced, or known lost. ``sends`` holds a ``_Send`` tuple per message."""
        with self._delivery_lock:
            heapq.heappush(self._deliveries,
                           (last_id, next(self._delivery_seq), handler, replies, sends))
            handler.undelivered += 1
            handler._drained.clear()
        store = self.store
        if last_id <= store.durable_id or store.lost(last_id):
            self._on_durable(store.durable_id, None)  # settled already: nobody else will call

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
            if self._delivering:
                return  # the thread sending now takes this work on its next round
            self._delivering = True
        lost = self.store.lost
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
                self._add_message_events(out, handler, stored)
            for handler, chunks in out.items():   # one write per connection per round
                handler.outbox.push_many(chunks)
            with self._delivery_lock:
                for _, _, handler, _, _ in ready:
                    handler.undelivered -= 1
                    if not handler.undelivered:
                        handler._drained.set()

    def _settle(self, replies: List[bytes], sends: List[_Send]) -> List[_Send]:
        """Turn the acknowledgement of every message the store lost into an error
        reply (in place); the sends that were stored."""
        lost = self.store.lost
        stored = []
        for send in sends:
            if lost(send.id):
                replies[send.index] = p.error_reply(
                    send.req_id, p.SERVER_ERROR,
                    "the server could not store the message (disk error); it was not sent")
            else:
                stored.append(send)
        return stored

    def _add_message_events(self, out: Dict["ChatHandler", List[bytes]], sender: "ChatHandler",
                            sends: List[_Send]) -> None:
        """Each message to every session of its recipient and its sender but the sending one."""
        with self._lock:
            for send in sends:
                frame = p.message_event(send.json)
                for key in {p.user_key(send.to), p.user_key(send.sender)}:
                    for handler in self._sessions.get(key, ()):
                        if handler is not sender:
                            out.setdefault(handler, []).append(frame)

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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._delivery_lock:
                if not self._deliveries and not self._delivering:
                    return
            time.sleep(0.01)

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


class ChatHandler(socketserver.BaseRequestHandler):
    """One connection: its login state, its outbox, and one method per op."""

    server: ChatServer

    def setup(self) -> None:
        self.peer_host = self.client_address[0]
        self.peer = f"{self.client_address[0]}:{self.client_address[1]}"
        self.user: Optional[str] = None
        self.finished = threading.Event()
        self.login_deadline: Optional[float] = None
        self.tls: Optional[TlsSession] = None
        self._batch: List[bytes] = []         # replies not yet sent, in order
        self._batch_msgs: List[_Send] = []    # a _Send per message sent in the batch
        self._last_msg_id = 0
        self.undelivered = 0                              # batches the committer still owes
        self._drained = threading.Event()
        self._drained.set()
        config = self.server.config
        sock: socket.socket = self.request
        _tune_socket(sock, config.keepalive_idle)
        if self.server.tls_context is not None:
            self.tls = TlsSession(self.server.tls_context)
        self.outbox = Outbox(sock, self.server.flusher, config.prelogin_outbox_limit,
                             self._overflowed, self.tls, self.server.outbox_budget)

    def handle(self) -> None:
        server = self.server
        sock: socket.socket = self.request
        if self.tls is not None and not self._handshake(sock):
            return
        server.register(self)
        log.info("connect from %s", self.peer)
        self.login_deadline = time.monotonic() + server.config.login_timeout
        self.outbox.push(p.hello_event())
        self._decoder = p.FrameDecoder()
        self._recv_size = _MIN_RECV
        try:
            while not self.outbox.closed and self._receive(sock):
                pass
        except OSError as exc:
            if not self.outbox.closed:
                log.info("connection from %s lost: %s", self.peer, exc)

    def _handshake(self, sock: socket.socket) -> bool:
        """The TLS handshake, within the cap on handshakes in progress."""
        assert self.tls is not None
        if not self.server.begin_handshake():
            log.warning("refused %s: too many TLS handshakes in progress", self.peer)
            return False
        try:
            self.tls.handshake(sock, timeout=10)
            return True
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            log.info("TLS handshake with %s failed: %s", self.peer, exc)
            return False
        finally:
            self.server.end_handshake()

    def _receive(self, sock: socket.socket) -> bool:
        """Read once and answer what arrived; False at the end of the connection.

        The read size adapts: a busy pipelining client gets big reads (big
        batches, one commit wait each), while an idle connection blocks with
        a small buffer, which keeps a thousand idle connections cheap.
        """
        data = sock.recv(self._recv_size)
        if not data:
            return False
        if len(data) == self._recv_size:
            self._recv_size = min(self._recv_size * 4, _MAX_RECV)
        elif len(data) < self._recv_size // 8:
            self._recv_size = max(self._recv_size // 2, _MIN_RECV)
        if self.tls is not None:
            data = self.tls.decrypt(data)
        lines = self._decoder.feed(data)
        if lines:
            self._answer(lines)
        if self._decoder.too_large:
            self.refuse(p.FRAME_TOO_LARGE, f"a frame may not exceed {p.MAX_FRAME_BYTES} bytes")
            return False
        return True

    def finish(self) -> None:
        try:
            if self.user:
                self.server.log_out(self, self.user)
                log.info("%s disconnected (%s)", self.user, self.peer)
            else:
                log.info("disconnect from %s", self.peer)
        finally:
            self.server.forget(self)
            self.outbox.close()
            self.finished.set()

    # ------------------------------------------------------------ batching

    def _answer(self, lines: List[bytes]) -> None:
        """Answer every frame of one read.

        Replies to sends may only leave once their messages are fsynced; the
        committer thread sends them (``ChatServer.deliver``), so this thread
        goes straight back to reading instead of sleeping on every commit.
        Any other op first waits for this connection's acknowledgements to be
        out, which keeps replies in request order and lets a ``history`` see
        the messages sent before it.
        """
        for line in lines:
            req_id = None
            try:
                obj = p.decode_json_line(line)
                req_id = p.request_id_of(obj)
                request = p.parse_request(obj)
                if request.op != "send" and (self._batch_msgs or self.undelivered):
                    self._flush_replies()
                    if not self._drained.wait(_ACK_STALL_SECONDS):
                        log.error("closing %s: acknowledgements stalled for %d s",
                                  self.peer, _ACK_STALL_SECONDS)
                        self.outbox.close()
                        return
                self._batch.append(self._run(request))
            except p.ChatError as exc:
                self._batch.append(p.error_reply(req_id, exc.code, exc.message))
            except Exception:
                log.exception("error answering %s from %s", line[:80], self.peer)
                self._batch.append(p.error_reply(
                    req_id, p.SERVER_ERROR, "the server failed on this request; it was logged"))
        self._flush_replies()

    def _flush_replies(self) -> None:
        """Send the batch now, or hand it to the committer if it must wait for a commit."""
        if not self._batch:
            return
        replies, self._batch = self._batch, []
        sends, self._batch_msgs = self._batch_msgs, []
        if sends or self.undelivered:
            self.server.deliver_when_durable(self._last_msg_id, self, replies, sends)
        else:
            self.outbox.push_many(replies)

    # ------------------------------------------------------------ helpers

    def refuse(self, code: str, message: str) -> None:
        """Tell the peer why, then close the connection."""
        log.info("closing %s: %s", self.peer, message)
        self.outbox.close_after(p.error_reply(None, code, message), 1.0)

    def _overflowed(self, queued: int) -> None:
        log.warning("dropping %s (%s): not reading, %d bytes unsent", self.user or "-",
                    self.peer, queued)

    def _run(self, request: p.Request) -> bytes:
        """The checks every op shares, done once from the protocol's table; then the op."""
        op = self.OPS.get(request.op)
        if op is None:
            raise p.ChatError(p.UNKNOWN_OP, f"this server does not implement {request.op!r} yet")
        if p.OP_SPECS[request.op].login_required and self.user is None:
            raise p.ChatError(p.NOT_LOGGED_IN, "log in first")
        return op(self, request)

    @property
    def me(self) -> str:
        """The logged-in user, for ops the table marks ``login_required``."""
        assert self.user is not None
        return self.user

    def _known_user(self, name: str) -> str:
        canonical = self.server.store.canonical_name(name)
        if canonical is None:
            raise p.ChatError(p.UNKNOWN_USER, f"there is no user {name[:40]!r}")
        return canonical

    # ------------------------------------------------------------ ops

    def op_signup(self, req: p.Request) -> bytes:
        name, password = req.fields["username"], req.fields["password"]
        p.validate_username(name)
        p.validate_password(password)
        wait = self.server.signup_limits.take(self.peer_host)
        if wait:
            log.info("sign-up refused from %s: over the per-address sign-up rate", self.peer)
            raise p.ChatError(p.RATE_LIMITED, "too many sign-ups from your address; "
                                              f"try again in {math.ceil(wait)} s")
        store = self.server.store
        if store.canonical_name(name) is not None:
            raise p.ChatError(p.USERNAME_TAKEN, f"the name {name!r} is taken")
        canonical = store.add_user(name, self.server.hasher.hash(password))
        log.info("signup %s from %s", canonical, self.peer)
        self.server.push_to(self.server.all_logged_in(), p.event("signup", username=canonical))
        return p.ok_reply(req.id, username=canonical)

    def op_login(self, req: p.Request) -> bytes:
        if self.user is not None:
            raise p.ChatError(p.ALREADY_LOGGED_IN, f"already logged in as {self.user}")
        name, password = req.fields["username"], req.fields["password"]
        server = self.server
        account = p.user_key(name)
        try:
            server.throttle.begin(account, self.peer_host)
        except Throttled as exc:
            log.info("login refused from %s: %s", self.peer, exc.reason)
            raise p.ChatError(p.RATE_LIMITED,
                              f"{exc.reason}; try again in {max(1, round(exc.wait))} s") from None
        ok = False
        try:
            user = server.store.get_user(name) if p.USERNAME_RE.match(name) else None
            ok = server.hasher.verify(password, user.password_hash if user else None)
            ok = ok and user is not None
        finally:
            holdback = server.throttle.finish(account, self.peer_host, ok)
        if not ok or user is None:
            log.info("failed login from %s", self.peer)
            if holdback:  # the address is over its allowance: slow the next guess
                server._stopping.wait(holdback)
            raise p.ChatError(p.AUTH_FAILED, "wrong username or password")
        if server.hasher.needs_rehash(user.password_hash):
            server.store.set_password_hash(user.name, server.hasher.hash(password))
        self.user = user.name
        self.login_deadline = None
        self.outbox.limit = server.config.outbox_limit
        server.log_in(self, user.name)
        log.info("login %s from %s", user.name, self.peer)
        return p.ok_reply(req.id, username=user.name)

    def op_logout(self, req: p.Request) -> bytes:
        user = self.me
        self.server.log_out(self, user)
        self.user = None
        self.login_deadline = time.monotonic() + self.server.config.login_timeout
        self.outbox.limit = self.server.config.prelogin_outbox_limit
        log.info("logout %s (%s)", user, self.peer)
        return p.ok_reply(req.id)

    def op_users(self, req: p.Request) -> bytes:
        user = self.me
        store = self.server.store
        online = self.server.online_keys()
        unread = store.unread_counts(user)
        users = [{"username": name, "online": p.user_key(name) in online,
                  "unread": unread.get(name, 0)} for name in store.usernames()]
        return p.ok_reply(req.id, users=users)

    def op_online(self, req: p.Request) -> bytes:
        online = self.server.online_keys()
        names = [n for n in self.server.store.usernames() if p.user_key(n) in online]
        return p.ok_reply(req.id, users=names)

    def op_send(self, req: p.Request) -> bytes:
        user = self.me
        fields = req.fields
        text = fields["text"]
        p.validate_text(text)
        to = self._known_user(fields["to"])
        server = self.server
        if server.send_limits.take(p.user_key(user)):
            raise p.ChatError(p.RATE_LIMITED, "you are sending too fast; slow down")
        quota = server.config.user_quota
        if quota and server.store.sent_bytes(user) >= quota:
            raise p.ChatError(p.RATE_LIMITED,
                              f"you have stored the most this server allows one user "
                              f"({quota // 2**20} MiB of messages); ask its operator")
        msg_id, msg_json = server.store.append_message(user, to, text, fields.get("reply_to"))
        self._batch_msgs.append(_Send(msg_id, len(self._batch), req.id, msg_json, to, user))
        self._last_msg_id = msg_id
        return p.ok_reply_raw(req.id, "message", msg_json)

    def op_history(self, req: p.Request) -> bytes:
        user = self.me
        fields = req.fields
        peer = self._known_user(fields["with"]) if "with" in fields else None
        messages = self.server.store.history(
            user, peer, after=fields.get("after"), before=fields.get("before"),
            limit=fields.get("limit", p.DEFAULT_HISTORY_LIMIT))
        return p.history_reply(req.id, messages, keep_oldest="after" in fields)

    def op_read(self, req: p.Request) -> bytes:
        user = self.me
        peer = self._known_user(req.fields["with"])
        if self.server.read_limits.take(p.user_key(user)):
            raise p.ChatError(p.RATE_LIMITED, "you are marking messages read too fast; slow down")
        self.server.store.mark_read(user, peer, req.fields["upto"])
        return p.ok_reply(req.id)

    def op_ping(self, req: p.Request) -> bytes:
        return p.ok_reply(req.id)

    OPS: Dict[str, Callable[["ChatHandler", p.Request], bytes]] = {
        "signup": op_signup, "login": op_login, "logout": op_logout, "users": op_users,
        "online": op_online, "send": op_send, "history": op_history, "read": op_read,
        "ping": op_ping,
    }


def _tune_socket(sock: socket.socket, keepalive_idle: int) -> None:
    """No Nagle delay for small frames; TCP keepalive so dead peers go offline."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if keepalive_idle > 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_KEEPIDLE"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, keepalive_idle)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    except OSError:
        pass


# ---------------------------------------------------------------- command line

def parse_args(argv: Optional[List[str]] = None) -> Tuple[ServerConfig, str]:
    parser = argparse.ArgumentParser(
        prog="chat-server",
        description="parallel-chat server: direct messages between signed-up users, "
                    "stored durably in a JSON database folder.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0: all interfaces)")
    parser.add_argument("--port", type=int, default=p.DEFAULT_PORT,
                        help=f"TCP port (default {p.DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--db", type=Path, default=Path("db"),
                        help="database folder, created if missing (default ./db)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO")
    parser.add_argument("--hash-cost", type=int, default=DEFAULT_HASH_COST, metavar="LOG2N",
                        help=f"scrypt cost as log2 of n (default {DEFAULT_HASH_COST}). Lower it "
                             "only for tests and benchmarks: it weakens stored passwords")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate: serve TLS (1.2 or newer)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key, if not in --tls-cert")
    limits = parser.add_argument_group("limits")
    d = ServerConfig()
    limits.add_argument("--max-connections", type=int, default=d.max_connections,
                        help=f"connections in all (default {d.max_connections})")
    limits.add_argument("--max-per-address", type=int, default=d.max_per_address,
                        help=f"connections from one address (default {d.max_per_address})")
    limits.add_argument("--login-timeout", type=float, default=d.login_timeout,
                        help=f"seconds a connection may stay logged out "
                             f"(default {d.login_timeout:g})")
    limits.add_argument("--max-handshakes", type=int, default=d.max_handshakes,
                        help=f"TLS handshakes in progress at once (default {d.max_handshakes})")
    limits.add_argument("--msg-rate", type=float, default=d.msg_rate,
                        help=f"messages per second per user, over all their connections; 0 "
                             f"for no limit (default {d.msg_rate:g}, bursts of --msg-burst)")
    limits.add_argument("--msg-burst", type=float, default=d.msg_burst,
                        help=f"default {d.msg_burst:g}")
    limits.add_argument("--read-rate", type=float, default=d.read_rate,
                        help=f"read-marker moves per second per user; 0 for no limit "
                             f"(default {d.read_rate:g}, bursts of --read-burst)")
    limits.add_argument("--read-burst", type=float, default=d.read_burst,
                        help=f"default {d.read_burst:g}")
    limits.add_argument("--signup-rate", type=float, default=d.signup_rate,
                        help=f"sign-ups per second from one address; 0 for no limit (default "
                             f"{d.signup_rate:g}, i.e. one per 10 s, after bursts of "
                             f"--signup-burst). Raise it for a class signing up from one box")
    limits.add_argument("--signup-burst", type=float, default=d.signup_burst,
                        help=f"default {d.signup_burst:g}")
    limits.add_argument("--user-quota", type=int, default=d.user_quota, metavar="BYTES",
                        help="bytes of messages one user may store before sends are refused; "
                             f"0 for no limit (default {d.user_quota // 2**20} MiB)")
    limits.add_argument("--outbox-limit", type=int, default=d.outbox_limit,
                        help="bytes queued for a logged-in client that does not read before it "
                             f"is dropped (default {d.outbox_limit})")
    limits.add_argument("--prelogin-outbox-limit", type=int, default=d.prelogin_outbox_limit,
                        help="the same before login (default "
                             f"{d.prelogin_outbox_limit})")
    limits.add_argument("--outbox-budget", type=int, default=d.outbox_budget,
                        help="bytes queued for all clients together; past it the clients with "
                             f"the most queued are dropped (default {d.outbox_budget})")
    args = parser.parse_args(argv)
    if bool(args.tls_key) and not args.tls_cert:
        parser.error("--tls-key needs --tls-cert")
    try:
        HashParams.from_cost(args.hash_cost)
    except ValueError as exc:
        parser.error(str(exc))
    config = ServerConfig(
        host=args.host, port=args.port, db=args.db, hash_cost=args.hash_cost,
        tls_cert=args.tls_cert, tls_key=args.tls_key, max_connections=args.max_connections,
        max_per_address=args.max_per_address, max_handshakes=args.max_handshakes,
        login_timeout=args.login_timeout, msg_rate=args.msg_rate, msg_burst=args.msg_burst,
        read_rate=args.read_rate, read_burst=args.read_burst, signup_rate=args.signup_rate,
        signup_burst=args.signup_burst, user_quota=args.user_quota,
        outbox_limit=args.outbox_limit, prelogin_outbox_limit=args.prelogin_outbox_limit,
        outbox_budget=args.outbox_budget)
    return config, args.log_level


def _raise_fd_limit() -> None:
    """One thread and one descriptor per connection: let the process use its hard limit."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Optional[List[str]] = None) -> int:
    config, level = parse_args(argv)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _raise_fd_limit()
    try:
        server = ChatServer(config)
    except DatabaseLocked as exc:
        log.error("cannot start: %s", exc)
        return 1
    except StoreCorrupt as exc:
        log.error("cannot open the database: %s", exc)
        log.error("the file was left as it is; repair or move it, then start again")
        return 2
    except (OSError, ssl.SSLError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    host, port = server.address
    if not _is_loopback(config.host) and server.tls_context is None:
        log.warning("listening on %s without TLS: passwords and messages cross the network "
                    "in clear text (use --tls-cert/--tls-key)", config.host)
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server.serve_in_thread()
    # Scripts wait for this line, so it shows at every --log-level.
    ready = logging.getLogger("chat.server.ready")
    ready.setLevel(logging.INFO)
    ready.info("listening on %s:%d (database %s, %d users, %d messages)", host, port,
               os.path.abspath(config.db), len(server.store.usernames()), server.store.last_id)
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
