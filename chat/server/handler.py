"""One connection: a thread that reads frames and answers them in batches.

The handler reads whatever the peer pipelined, answers every frame of the
read in one batch (``ops.OPS`` does the work), and submits a batch holding
sends to the store's committer (through the server's ``Deliveries``)
instead of storing them or waiting for the commit itself: a handler thread
only reads, frames, parses and checks. Any other op first waits for the
connection's earlier replies, which keeps replies in request order.
"""
from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
import time
from typing import TYPE_CHECKING, List, Optional

from .. import protocol as p
from ..store import SendRequest
from .delivery import Slot
from .netio import Outbox, TlsSession
from .ops import OPS

if TYPE_CHECKING:
    from .server import ChatServer

log = logging.getLogger("chat.server")

_ACK_STALL_SECONDS = 60   # a commit this late means the disk is gone: give up on the peer
#: A connection with this many batches submitted and not yet answered stops reading
#: until they are: what a client may pipeline is bounded by the committer's pace, so a
#: flood of sends costs memory in proportion to connections, not to time.
MAX_OWED_BATCHES = 16
_MIN_RECV = 4 * 1024
_MAX_RECV = 256 * 1024


#: op name -> (its function, whether it needs a login): the protocol's table and the
#: ops' table joined once, so each frame pays one lookup.
_DISPATCH = {name: (OPS[name], spec.login_required) for name, spec in p.OP_SPECS.items()
             if name in OPS}


class ChatHandler(socketserver.BaseRequestHandler):
    """One connection: its login state, its outbox, its batch of replies."""

    server: "ChatServer"

    def setup(self) -> None:
        self.peer_host = self.client_address[0]
        self.peer = f"{self.client_address[0]}:{self.client_address[1]}"
        self.user: Optional[str] = None
        self.finished = threading.Event()
        self.login_deadline: Optional[float] = None
        self.tls: Optional[TlsSession] = None
        self._batch: List[bytes] = []         # replies not yet sent, in order
        self._slots: List[Slot] = []          # where each send's reply goes in the batch
        self._sends: List[SendRequest] = []   # sends checked, for the store's committer
        self.undelivered = 0                  # batches submitted, not yet answered
        self.drained = threading.Event()      # set: none is
        self.drained.set()
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
                if request.op != "send" and (self._sends or self.undelivered):
                    self._flush_replies()
                    if not self._wait_drained():
                        return
                self._batch.append(self._run(request))
            except p.ChatError as exc:
                self._batch.append(p.error_reply(req_id, exc.code, exc.message))
            except Exception:
                log.exception("error answering %s from %s", line[:80], self.peer)
                self._batch.append(p.error_reply(
                    req_id, p.SERVER_ERROR, "the server failed on this request; it was logged"))
        self._flush_replies()
        if self.undelivered >= MAX_OWED_BATCHES:   # the committer is behind: stop reading
            self._wait_drained()

    def _wait_drained(self) -> bool:
        """Wait until every batch this connection submitted is answered; False (and the
        connection closed) if that takes so long that the disk must be gone."""
        if self.drained.wait(_ACK_STALL_SECONDS):
            return True
        log.error("closing %s: acknowledgements stalled for %d s", self.peer,
                  _ACK_STALL_SECONDS)
        self.outbox.close()
        return False

    def _flush_replies(self) -> None:
        """Send the batch now, or submit it with its sends to wait for their commit (and
        behind this connection's earlier batches, if any are still owed)."""
        if not self._batch:
            return
        replies, self._batch = self._batch, []
        if self._sends or self.undelivered:
            slots, sends = self._slots, self._sends
            self._slots, self._sends = [], []
            self.server.delivery.submit(self, replies, slots, sends)
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
        entry = _DISPATCH.get(request.op)
        if entry is None:
            raise p.ChatError(p.UNKNOWN_OP, f"this server does not implement {request.op!r} yet")
        op, login_required = entry
        if login_required and self.user is None:
            raise p.ChatError(p.NOT_LOGGED_IN, "log in first")
        return op(self, request)

    def defer_send(self, req_id: Optional[p.RequestId], message: SendRequest) -> bytes:
        """Keep a checked send (sender, to, text, reply_to, nonce) for the store's
        committer, which stores the sends of many reads at once; its reply's
        place in the batch is kept with an empty placeholder until then."""
        self._slots.append((len(self._batch), req_id, message[1], message[0]))
        self._sends.append(message)
        return b""

    def logged_in(self, name: str) -> None:
        config = self.server.config
        self.user = name
        self.login_deadline = None
        self.outbox.limit = config.outbox_limit
        self.server.log_in(self, name)

    def logged_out(self) -> None:
        config = self.server.config
        self.server.log_out(self, self.me)
        self.user = None
        self.login_deadline = time.monotonic() + config.login_timeout
        self.outbox.limit = config.prelogin_outbox_limit

    @property
    def me(self) -> str:
        """The logged-in user, for ops the table marks ``login_required``."""
        assert self.user is not None
        return self.user


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
