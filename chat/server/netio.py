"""Socket plumbing for the server: non-blocking outbound queues and TLS in memory.

Every connection is read by its own thread (socketserver's model), but events
for it are produced by other connections' threads. An ``Outbox`` lets any
thread hand bytes to a connection without ever blocking on it: it tries a
non-blocking send and queues what the kernel would not take; one shared
``Flusher`` thread drains those queues as sockets become writable. A
connection whose queue outgrows its limit is a reader that cannot keep up: it
is cut off (its user gets the messages later through ``history``).

TLS is done with ``ssl.SSLObject`` over memory BIOs so that the raw socket
stays a plain socket (non-blocking sends keep working) and every use of the
TLS state is serialised by one lock.
"""
from __future__ import annotations

import logging
import select
import selectors
import socket
import ssl
import threading
import time
from typing import Callable, List, Optional, Set

log = logging.getLogger(__name__)

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_WINDOWS_CHUNK = 16 * 1024


def send_nowait(sock: socket.socket, data) -> int:
    """Send what the kernel takes right now; never block. Returns bytes sent."""
    try:
        if _DONTWAIT:
            return sock.send(data, _DONTWAIT)
        # No per-call non-blocking flag (Windows): send only when writable, in
        # chunks small enough for the socket buffer to take whole.
        _, writable, _ = select.select([], [sock], [], 0)
        return sock.send(data[:_WINDOWS_CHUNK]) if writable else 0
    except (BlockingIOError, InterruptedError):
        return 0


class TlsSession:
    """Server-side TLS over memory BIOs; all calls serialised by ``lock``."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=True)
        self.lock = threading.Lock()

    def handshake(self, sock: socket.socket, timeout: float) -> None:
        """Complete the handshake with blocking I/O; ssl.SSLError/OSError on failure."""
        sock.settimeout(timeout)
        try:
            while True:
                try:
                    self._obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(self._out.read())
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("peer closed during the TLS handshake") from None
                    self._in.write(data)
            sock.sendall(self._out.read())
        finally:
            sock.settimeout(None)

    def decrypt(self, data: bytes) -> bytes:
        """Feed ciphertext; return the plaintext it completes (may be b'')."""
        with self.lock:
            self._in.write(data)
            chunks = []
            while True:
                try:
                    chunk = self._obj.read(65536)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)

    def encrypt(self, plaintext: bytes) -> bytes:
        """Ciphertext for ``plaintext``; the caller must hold ``lock``."""
        if plaintext:
            self._obj.write(plaintext)
        return self._out.read()


class Flusher:
    """One thread that finishes the sends the owning threads could not."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wanted: Set["Outbox"] = set()
        self._closing: Set["Outbox"] = set()   # close once flushed, or at their deadline
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="chat-flusher", daemon=True)
        self._thread.start()

    def watch(self, outbox: "Outbox") -> None:
        with self._lock:
            self._wanted.add(outbox)
        self._wake()

    def close_later(self, outbox: "Outbox") -> None:
        """Close ``outbox`` once its queue is sent or its ``close_deadline`` passes."""
        with self._lock:
            self._closing.add(outbox)
            self._wanted.add(outbox)
        self._wake()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join(timeout=5)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        try:
            send_nowait(self._wake_w, b"x")
        except OSError:
            pass  # closed: the flusher is stopping anyway

    def _register_new(self) -> None:
        with self._lock:
            wanted, self._wanted = self._wanted, set()
        for outbox in wanted:
            try:
                self._selector.register(outbox.sock, selectors.EVENT_WRITE, outbox)
            except KeyError:
                pass  # already registered
            except (ValueError, OSError):
                outbox.close()  # the socket is already closed

    def _close_due(self) -> bool:
        """Close the outboxes whose deadline passed; True while some still wait."""
        now = time.monotonic()
        with self._lock:
            due = [o for o in self._closing if o.closed or now >= o.close_deadline]
            self._closing.difference_update(due)
            waiting = bool(self._closing)
        for outbox in due:
            outbox.close()
        return waiting

    def _run(self) -> None:
        while not self._stopping:
            self._register_new()
            timeout = 0.1 if self._close_due() else 1.0
            for key, _ in self._selector.select(timeout=timeout):
                if key.data is None:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                    continue
                outbox: Outbox = key.data
                if outbox.flush_some():
                    self._selector.unregister(key.fileobj)
            # Drop registrations of sockets closed meanwhile.
            for key in list(self._selector.get_map().values()):
                if key.data is not None and key.data.closed:
                    self._selector.unregister(key.fileobj)


class OutboxBudget:
    """The bytes queued in all outboxes together, against one limit.

    Each outbox's own limit stops one reader from pinning memory; this stops
    many from doing it together. Past the limit, any outbox holding more than
    ``fair_share`` is dropped when it grows. Only the slow path (a peer that
    is not keeping up) touches it.
    """

    def __init__(self, limit: int, fair_share: int) -> None:
        self.limit = limit
        self.fair_share = fair_share
        self.queued = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> bool:
        """Count ``n`` more bytes (negative: fewer); True while under the limit."""
        with self._lock:
            self.queued += n
            return self.queued <= self.limit


class Outbox:
    """Bytes waiting to go to one socket; safe to push from any thread.

    One writer at a time per socket (the lock); pushing never blocks on the
    peer. ``limit`` bounds the bytes queued for a peer that does not read
    (the owner may change it, e.g. at login); past it, or past the shared
    ``budget`` with more than a fair share queued, ``on_overflow`` is called
    once and the connection is shut down.
    """

    def __init__(self, sock: socket.socket, flusher: Flusher, limit: int,
                 on_overflow: Callable[[int], None], tls: Optional[TlsSession] = None,
                 budget: Optional[OutboxBudget] = None) -> None:
        self.sock = sock
        self.limit = limit
        self._flusher = flusher
        self._on_overflow = on_overflow
        self._tls = tls
        self._budget = budget
        self._lock = tls.lock if tls else threading.Lock()
        self._queue = bytearray()
        self.closed = False
        self.close_deadline = 0.0

    def push(self, data: bytes) -> bool:
        """Queue ``data`` and send what can be sent now. False once closed."""
        overflow = 0
        with self._lock:
            if self.closed:
                return False
            if self._tls is not None:
                data = self._tls.encrypt(data)
            if self._queue:
                self._queue += data
                if not self._count(len(data)) or len(self._queue) > self.limit:
                    overflow = len(self._queue)
            else:
                try:
                    sent = send_nowait(self.sock, data)
                except OSError:
                    self._close_locked()
                    return False
                if sent < len(data):
                    self._queue += data[sent:]
                    self._count(len(data) - sent)
                    self._flusher.watch(self)
        if overflow:
            self._overflowed(overflow)
            return False
        return True

    def push_many(self, chunks: List[bytes]) -> bool:
        return self.push(b"".join(chunks)) if chunks else not self.closed

    def close_after(self, data: bytes, timeout: float) -> None:
        """Send ``data`` (a last word), then close; never blocks the caller.

        What the kernel does not take at once is sent by the flusher, which
        closes the connection when done or after ``timeout`` seconds, so
        closing a thousand stuck peers costs no one a second each.
        """
        self.push(data)
        with self._lock:
            if self.closed:
                return
            if not self._queue:
                self._close_locked()
                return
            self.close_deadline = time.monotonic() + timeout
        self._flusher.close_later(self)

    def flush_some(self) -> bool:
        """Called by the flusher when writable; True when nothing is left."""
        with self._lock:
            if self.closed:
                return True
            try:
                sent = send_nowait(self.sock, self._queue)
            except OSError:
                self._close_locked()
                return True
            del self._queue[:sent]
            self._count(-sent)
            if not self._queue and self.close_deadline:
                self._close_locked()
            return not self._queue

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _count(self, n: int) -> bool:
        """Tell the shared budget; False when it is exceeded and this queue is large."""
        if self._budget is None:
            return True
        return self._budget.add(n) or len(self._queue) <= self._budget.fair_share

    def _close_locked(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._count(-len(self._queue))
        self._queue = bytearray()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _overflowed(self, queued: int) -> None:
        self._on_overflow(queued)
        self.close()
