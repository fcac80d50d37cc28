"""Client library: one connection to a chat server, requests matched to replies, events.

No curses here: the terminal client, the tests and scripts all use this. A
reader thread parses frames; replies are matched to waiting requests by id;
events go to ``events`` (a ``queue.Queue``). When the connection drops and
``reconnect`` is on, it reconnects with backoff, logs in again with the
credentials it holds in memory, and fetches what it missed with ``history``,
so no message is lost or delivered twice across a server restart.
"""
from __future__ import annotations

import itertools
import logging
import queue
import random
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from . import protocol as p

log = logging.getLogger(__name__)

#: Frames from the server may be larger than the request limit (long user lists).
MAX_INCOMING_FRAME = 16 * 1024 * 1024


@dataclass(frozen=True)
class UserInfo:
    username: str
    online: bool
    unread: int


@dataclass(frozen=True)
class RoomInfo:
    """A room as the server shows it to the caller (protocol version 2)."""

    room: str
    topic: str
    private: bool
    members: int
    joined: bool
    unread: int
    mentions: int

    @classmethod
    def from_dict(cls, obj: Dict[str, Any]) -> "RoomInfo":
        return cls(str(obj["room"]), str(obj["topic"]), bool(obj["private"]),
                   int(obj["members"]), bool(obj["joined"]), int(obj["unread"]),
                   int(obj["mentions"]))


class ServerUnreachable(ConnectionError):
    """Nothing answered at the address: the connection was refused or timed out, the
    usual sign that no server is running there (unlike a name that does not resolve)."""


#: The protocol versions this library speaks (version 2 adds rooms and more to 1).
SUPPORTED_PROTOCOLS = (1, 2)


def new_nonce() -> str:
    """A fresh nonce for a send: a resend with it can never store a second copy."""
    return secrets.token_hex(12)


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Optional[Dict[str, Any]] = None


class ChatClient:
    """A connection to a parallel-chat server.

    Requests from several threads may be in flight at once. While the
    connection is down, requests wait for the reconnect (up to ``timeout``)
    and then raise ``ConnectionError``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = p.DEFAULT_PORT, *,
                 tls: bool = False, tls_ca: Optional[str] = None, timeout: float = 10.0,
                 reconnect: bool = True) -> None:
        self.host, self.port = host, port
        self.timeout = timeout
        self.reconnect = reconnect
        self.events: "queue.Queue[Dict[str, Any]]" = queue.Queue()
        self.username: Optional[str] = None
        self.last_message_id = 0
        self._ssl = _client_context(tls_ca) if (tls or tls_ca) else None
        self._password: Optional[str] = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()          # guards _pending, _sock, _seen
        self._send_lock = threading.Lock()     # one writer at a time
        self._pending: Dict[int, _Pending] = {}
        self._sock: Optional[socket.socket] = None
        self._connected = threading.Event()   # a socket is up
        self._ready = threading.Event()       # ... and, after a reconnect, logged in again
        self._closed = False
        self._reader: Optional[threading.Thread] = None
        self._seen: set = set()
        self._reconnecting = False            # the reconnect loop is running

    # ------------------------------------------------------------ connection

    def connect(self) -> Dict[str, Any]:
        """Open the connection and return the server's hello."""
        sock, hello, rest = self._open()
        self._start(sock, rest)
        self._ready.set()
        return hello

    @classmethod
    def connect_as(cls, host: str, port: int, username: str, password: str, *,
                   signup: bool = False, **kwargs: Any) -> "ChatClient":
        """Connect, optionally sign up, and log in: the usual start of a script."""
        client = cls(host, port, **kwargs)
        client.connect()
        try:
            if signup:
                client.signup(username, password)
            client.login(username, password)
        except BaseException:
            client.close()
            raise
        return client

    def _open(self):
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except socket.gaierror as exc:
            raise ConnectionError(f"cannot reach {self.host}:{self.port}: {self.host!r} does "
                                  f"not resolve to an address ({exc.strerror or exc})") from None
        except (ConnectionRefusedError, TimeoutError, socket.timeout) as exc:
            raise ServerUnreachable(f"cannot reach {self.host}:{self.port}: "
                                    f"{exc.strerror or exc or 'timed out'}") from None
        except OSError as exc:
            raise ConnectionError(f"cannot reach {self.host}:{self.port}: "
                                  f"{exc.strerror or exc}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
            hello, rest = self._read_hello(sock)
        except p.ChatError as exc:
            sock.close()
            raise ConnectionError(f"{self.host}:{self.port} refused the connection: "
                                  f"{exc.message}") from None
        except (OSError, ValueError, ssl.SSLError) as exc:
            sock.close()
            raise ConnectionError(f"{self.host}:{self.port} did not greet as a chat "
                                  f"server: {exc}") from None
        sock.settimeout(None)
        return sock, hello, rest

    @staticmethod
    def _read_hello(sock: socket.socket):
        """The hello, and any bytes that came after it; ChatError if refused instead."""
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ValueError("the connection closed before the hello")
            data += chunk
            if len(data) > p.MAX_FRAME_BYTES:
                raise ValueError("no hello line")
        line, rest = data.split(b"\n", 1)
        return p.check_hello(p.decode_json_line(line), SUPPORTED_PROTOCOLS), rest

    def _start(self, sock: socket.socket, rest: bytes = b"") -> None:
        with self._lock:
            self._sock = sock
        self._connected.set()
        self._reader = threading.Thread(target=self._read_loop, args=(sock, rest),
                                        name="chat-client-reader", daemon=True)
        self._reader.start()
        self._emit_state("connected")

    def close(self) -> None:
        """Close the connection and stop reconnecting; waiting requests fail."""
        self._closed = True
        with self._lock:
            sock, self._sock = self._sock, None
        self._connected.clear()
        self._ready.set()  # wake waiting requests: they see the client is closed
        if sock is not None:
            _shutdown(sock)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)
        self._fail_pending("the connection was closed")

    def __enter__(self) -> "ChatClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def state(self) -> str:
        """The connection as it is now: ``connected`` (up and, after a reconnect, logged in
        again), ``reconnecting``, ``disconnected`` (down, not trying) or ``closed``. What a
        user is shown; ``connection`` events say when it may have changed."""
        if self._closed:
            return "closed"
        if self._connected.is_set() and self._ready.is_set():
            return "connected"
        return "reconnecting" if self._reconnecting else "disconnected"

    # ------------------------------------------------------------ requests

    def request(self, op: str, **fields: Any) -> Dict[str, Any]:
        """Send one request and wait for its reply; ChatError when ``ok`` is false.

        While a reconnect is under way this waits for it (up to ``timeout``),
        so requests never reach a new connection before it is logged in again.
        """
        if self._closed:
            raise ConnectionError("the client is closed")
        if not self._ready.wait(self.timeout) or self._closed:
            raise ConnectionError(f"not connected to {self.host}:{self.port}")
        return self._request(op, fields)

    def _request(self, op: str, fields: Dict[str, Any]) -> Dict[str, Any]:
        if not self._connected.wait(self.timeout):
            raise ConnectionError(f"not connected to {self.host}:{self.port}")
        req_id = next(self._ids)
        pending = _Pending()
        frame = p.encode_request(op, req_id, **fields)
        with self._lock:
            sock = self._sock
            self._pending[req_id] = pending
        try:
            if sock is None:
                raise ConnectionError("not connected")
            with self._send_lock:
                sock.sendall(frame)
        except OSError as exc:
            with self._lock:
                self._pending.pop(req_id, None)
            raise ConnectionError(f"lost the connection: {exc}") from None
        if not pending.done.wait(self.timeout):
            with self._lock:
                self._pending.pop(req_id, None)
            raise TimeoutError(f"no reply to {op} within {self.timeout:g} s")
        reply = pending.reply
        if reply is None:
            raise ConnectionError("the connection dropped before the reply")
        if not reply.get("ok"):
            raise p.error_of(reply)
        return reply

    def signup(self, username: str, password: str) -> str:
        return self.request("signup", username=username, password=password)["username"]

    def login(self, username: str, password: str) -> str:
        name = self.request("login", username=username, password=password)["username"]
        self.username, self._password = name, password
        if self.last_message_id == 0:
            # Where a reconnect resumes from: what exists now is not "missed".
            newest = self.request("history", limit=1)["messages"]
            if newest:
                self._note_seen(int(newest[-1]["id"]))
        return name

    def logout(self) -> None:
        self.request("logout")
        self.username = self._password = None

    def users(self, after: Optional[str] = None,
              limit: Optional[int] = None) -> List[UserInfo]:
        """Accounts sorted by name (a page of them with ``after``/``limit``)."""
        reply = self.request("users", after=after, limit=limit)
        return [UserInfo(str(u["username"]), bool(u["online"]), int(u["unread"]))
                for u in reply["users"]]

    def online(self) -> List[str]:
        return [str(name) for name in self.request("online")["users"]]

    def send(self, to: str, text: str, reply_to: Optional[int] = None,
             nonce: Optional[str] = None) -> p.Message:
        """Send to a user or a room; stored exactly once, even across a reconnect.

        Every send carries a nonce (a fresh one unless given). If the connection
        drops before the reply, the send waits for the reconnect and is sent
        again with the same nonce: the server then answers with the message it
        already stored, if it did, and stores nothing twice. Gives up (with
        ConnectionError) after three times ``timeout``.
        """
        nonce = nonce or new_nonce()
        deadline = time.monotonic() + 3 * self.timeout
        while True:
            try:
                reply = self.request("send", to=to, text=text, reply_to=reply_to, nonce=nonce)
                break
            except ConnectionError:
                if not self.reconnect or self._closed or time.monotonic() >= deadline:
                    raise
                log.info("the connection dropped during a send; sending it again")
        msg = p.Message.from_dict(reply["message"])
        self._note_seen(msg.id)
        return msg

    def history(self, with_user: Optional[str] = None, after: Optional[int] = None,
                before: Optional[int] = None, limit: Optional[int] = None) -> List[p.Message]:
        fields = {"with": with_user, "after": after, "before": before, "limit": limit}
        reply = self.request("history", **fields)
        return [p.Message.from_dict(m) for m in reply["messages"]]

    def history_page(self, with_user: Optional[str] = None, after: Optional[int] = None,
                     before: Optional[int] = None,
                     limit: Optional[int] = None) -> Tuple[List[p.Message], bool]:
        """One page of history and whether there is more in the paging direction."""
        fields = {"with": with_user, "after": after, "before": before, "limit": limit}
        reply = self.request("history", **fields)
        return [p.Message.from_dict(m) for m in reply["messages"]], bool(reply.get("more"))

    def search(self, query: str, with_user: Optional[str] = None, before: Optional[int] = None,
               limit: Optional[int] = None) -> Tuple[List[p.Message], bool]:
        """The newest messages one may see whose text contains ``query`` (any case)."""
        reply = self.request("search", query=query, before=before, limit=limit,
                             **{"with": with_user})
        return [p.Message.from_dict(m) for m in reply["messages"]], bool(reply.get("more"))

    def read(self, with_user: str, upto: int) -> None:
        """Move the read marker of a conversation (a user or a room)."""
        self.request("read", **{"with": with_user, "upto": upto})

    def password(self, old: str, new: str) -> None:
        """Change the password; reconnects log in with the new one."""
        self.request("password", old=old, new=new)
        self._password = new

    # ------------------------------------------------------------ rooms

    def room_create(self, room: str, topic: Optional[str] = None,
                    private: Optional[bool] = None) -> RoomInfo:
        reply = self.request("room_create", room=room, topic=topic, private=private)
        return RoomInfo.from_dict(reply["room"])

    def join(self, room: str) -> RoomInfo:
        return RoomInfo.from_dict(self.request("join", room=room)["room"])

    def leave(self, room: str) -> None:
        self.request("leave", room=room)

    def invite(self, room: str, username: str) -> None:
        self.request("invite", room=room, username=username)

    def topic(self, room: str, topic: str) -> RoomInfo:
        return RoomInfo.from_dict(self.request("topic", room=room, topic=topic)["room"])

    def rooms(self, after: Optional[str] = None,
              limit: Optional[int] = None) -> Tuple[List[RoomInfo], bool]:
        """Public rooms, and private ones one is in or invited to; and whether there are more."""
        reply = self.request("rooms", after=after, limit=limit)
        return [RoomInfo.from_dict(r) for r in reply["rooms"]], bool(reply.get("more"))

    def members(self, room: str, after: Optional[str] = None,
                limit: Optional[int] = None) -> Tuple[List[Tuple[str, bool]], bool]:
        """(username, online) of a room's members, sorted; and whether there are more."""
        reply = self.request("members", room=room, after=after, limit=limit)
        return ([(str(m["username"]), bool(m["online"])) for m in reply["members"]],
                bool(reply.get("more")))

    def ping(self) -> None:
        self.request("ping")

    # ------------------------------------------------------------ reading

    def _read_loop(self, sock: socket.socket, data: bytes) -> None:
        decoder = p.FrameDecoder(MAX_INCOMING_FRAME)
        error = "the server closed the connection"
        try:
            for line in decoder.feed(data):
                self._dispatch(line)
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                for line in decoder.feed(data):
                    self._dispatch(line)
                if decoder.too_large:
                    error = "the server sent a frame too large to read"
                    break
        except OSError as exc:
            error = f"the connection failed: {exc}"
        with self._lock:
            mine = self._sock is sock
            if mine:
                self._sock = None
        _shutdown(sock)
        if not mine or self._closed:
            return
        self._connected.clear()
        self._ready.clear()
        self._fail_pending(error)
        if self.reconnect and self._password is not None:
            self._reconnecting = True
            self._emit_state("reconnecting", error)
            threading.Thread(target=self._reconnect_loop, name="chat-client-reconnect",
                             daemon=True).start()
        else:
            self._emit_state("disconnected", error)

    def _dispatch(self, line: bytes) -> None:
        try:
            frame = p.decode_json_line(line)
        except p.ChatError:
            log.warning("ignoring a frame that is not JSON: %r", line[:80])
            return
        if not isinstance(frame, dict):
            return
        if p.is_event(frame):
            if frame.get("event") == "message":
                msg_id = _message_id(frame)
                if msg_id is not None and not self._note_seen(msg_id):
                    return  # already delivered (e.g. fetched after a reconnect)
            self.events.put(frame)
            return
        req_id = frame.get("id")
        with self._lock:
            pending = self._pending.pop(req_id, None) if isinstance(req_id, int) else None
        if pending is not None:
            pending.reply = frame
            pending.done.set()
        elif not frame.get("ok", True):
            # An error with no request behind it: the server is closing on us.
            error = p.error_of(frame)
            self.events.put({"event": "error", "code": error.code, "message": error.message})

    def _note_seen(self, msg_id: int) -> bool:
        """Remember a message id; False if it was seen already."""
        with self._lock:
            if msg_id in self._seen:
                return False
            self._seen.add(msg_id)
            if len(self._seen) > 100_000:
                floor = self.last_message_id - 50_000
                self._seen = {i for i in self._seen if i > floor}
            self.last_message_id = max(self.last_message_id, msg_id)
            return True

    def _fail_pending(self, error: str) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for item in pending.values():
            item.done.set()  # reply stays None: the request raises ConnectionError
        if pending:
            log.info("%d request(s) failed: %s", len(pending), error)

    # ------------------------------------------------------------ reconnecting

    def _reconnect_loop(self) -> None:
        try:
            self._reconnect_until_done()
        finally:
            self._reconnecting = False

    def _reconnect_until_done(self) -> None:
        delay = 0.2
        while not self._closed:
            try:
                sock, _, rest = self._open()
            except ConnectionError as exc:
                log.info("reconnect failed: %s; next try in %.1f s", exc, delay)
                if self._sleep(delay):
                    return
                delay = min(delay * 2, 5.0)
                continue
            if self._closed:
                _shutdown(sock)
                return
            self._start(sock, rest)
            try:
                self._resume()
                self._ready.set()
                self._emit_state("resumed")
                return
            except (ConnectionError, TimeoutError, p.ChatError) as exc:
                log.info("could not resume the session: %s", exc)
                with self._lock:   # drop this socket quietly: this loop tries again
                    failed, self._sock = self._sock, None
                self._connected.clear()
                if failed is not None:
                    _shutdown(failed)
                if isinstance(exc, p.ChatError) and exc.code == p.AUTH_FAILED:
                    self._reconnecting = False
                    self._emit_state("disconnected", f"log-in refused: {exc.message}")
                    return
                if self._sleep(delay):
                    return
                delay = min(delay * 2, 5.0)

    def _sleep(self, seconds: float) -> bool:
        """Sleep with jitter; True if the client was closed meanwhile."""
        stop = threading.Event()
        stop.wait(seconds * random.uniform(0.8, 1.2))
        return self._closed

    def _resume(self) -> None:
        """Log in again and deliver what was sent while we were away."""
        assert self.username is not None and self._password is not None
        self._request("login", {"username": self.username, "password": self._password})
        after = self.last_message_id
        while True:
            page = self._request("history", {"after": after,
                                             "limit": p.MAX_HISTORY_LIMIT})["messages"]
            if not page:
                break
            for obj in page:
                if self._note_seen(int(obj["id"])):
                    self.events.put({"event": "message", "message": obj})
            after = int(page[-1]["id"])

    def _emit_state(self, state: str, error: str = "") -> None:
        self.events.put({"event": "connection", "state": state, "error": error})


def _message_id(frame: Dict[str, Any]) -> Optional[int]:
    msg = frame.get("message")
    if isinstance(msg, dict) and isinstance(msg.get("id"), int):
        return msg["id"]
    return None


def _client_context(ca_file: Optional[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


if __name__ == "__main__":
    # ``python -m chat.client`` still starts the terminal client, without the
    # library importing the TUI (run as a module by name, not imported here).
    import runpy

    runpy.run_module("chat.tui", run_name="__main__", alter_sys=True)
