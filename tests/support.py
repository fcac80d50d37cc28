"""Test support: real servers on ephemeral ports and a raw line-protocol connection.

Servers run in-process (a thread) or as a subprocess (for kill -9 and restart
tests); either way they listen on 127.0.0.1 port 0 with a temporary database
and a low password-hash cost.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from chat import protocol as p
from chat.server import ChatServer, ServerConfig

TEST_HASH_COST = 4
ROOT = Path(__file__).resolve().parent.parent


def make_config(db: Path, **overrides: Any) -> ServerConfig:
    """A config for tests: port 0, cheap hashes, no send rate limit unless asked."""
    values: Dict[str, Any] = dict(host="127.0.0.1", port=0, db=db, hash_cost=TEST_HASH_COST,
                                  msg_rate=0.0, signup_rate=0.0, read_rate=0.0)
    values.update(overrides)
    return ServerConfig(**values)


def start_server(db: Path, **overrides: Any) -> ChatServer:
    server = ChatServer(make_config(db, **overrides))
    server.serve_in_thread()
    return server


class RawConn:
    """A client speaking the wire protocol by hand, for tests of the server itself."""

    def __init__(self, address, timeout: float = 10.0, read_hello: bool = True) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.decoder = p.FrameDecoder(max_frame=10 * p.MAX_FRAME_BYTES)
        self.frames: List[Dict[str, Any]] = []
        self.events: List[Dict[str, Any]] = []
        self._next_id = 0
        if read_hello:
            hello = self.recv()
            assert hello == {"event": "hello", "server": "parallel-chat", "protocol": 2}, hello

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_obj(self, obj: Any) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self) -> Optional[Dict[str, Any]]:
        """Next frame (event or reply); None at EOF."""
        while not self.frames:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            self.frames.extend(json.loads(line) for line in self.decoder.feed(data))
        return self.frames.pop(0)

    def reply(self) -> Dict[str, Any]:
        """Next reply, setting aside the events that come before it."""
        while True:
            frame = self.recv()
            assert frame is not None, "connection closed before a reply"
            if "event" in frame:
                self.events.append(frame)
                continue
            return frame

    def request(self, op: str, **fields: Any) -> Dict[str, Any]:
        self._next_id += 1
        fields = {("with" if k == "with_" else k): v for k, v in fields.items()}
        self.send_bytes(p.encode_request(op, self._next_id, **fields))
        reply = self.reply()
        assert reply.get("id") == self._next_id, reply
        return reply

    def ok(self, op: str, **fields: Any) -> Dict[str, Any]:
        reply = self.request(op, **fields)
        assert reply["ok"] is True, reply
        return reply

    def error(self, op: str, code: str, **fields: Any) -> Dict[str, Any]:
        reply = self.request(op, **fields)
        assert reply["ok"] is False and reply["error"]["code"] == code, reply
        assert reply["error"]["message"], reply
        return reply

    def event(self, name: str, timeout: float = 10.0) -> Dict[str, Any]:
        """The next event called ``name`` (earlier ones of other names are kept)."""
        for i, ev in enumerate(self.events):
            if ev["event"] == name:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                frame = self.recv()
            except socket.timeout:
                break
            finally:
                self.sock.settimeout(10.0)
            assert frame is not None, f"connection closed while waiting for {name}"
            if frame.get("event") == name:
                return frame
            self.events.append(frame)
        raise AssertionError(f"no {name} event within {timeout} s; saw {self.events}")

    def no_event(self, name: str, wait: float = 0.3) -> None:
        try:
            ev = self.event(name, timeout=wait)
        except AssertionError:
            return
        raise AssertionError(f"unexpected event {ev}")

    def all_history(self, **fields: Any) -> List[Dict[str, Any]]:
        """Every message visible to this connection, paging forwards with ``after``."""
        messages: List[Dict[str, Any]] = []
        after = 0
        while True:
            page = self.ok("history", after=after, limit=p.MAX_HISTORY_LIMIT, **fields)["messages"]
            if not page:
                return messages
            messages += page
            after = page[-1]["id"]

    def login(self, name: str, password: str = "password1", signup: bool = True) -> None:
        if signup:
            self.ok("signup", username=name, password=password)
        self.ok("login", username=name, password=password)

    def close(self) -> None:
        self.sock.close()


class ServerProcess:
    """``python -m chat.server`` in a subprocess: for restarts and kill -9."""

    LISTENING = re.compile(r"listening on ([\d.]+):(\d+)")
    #: Every one started: the test suite kills those a failed test left running.
    started: List["ServerProcess"] = []

    def __init__(self, db: Path, port: int = 0, *extra: str, env=None) -> None:
        self.db = db
        cmd = [sys.executable, "-m", "chat.server", "--port", str(port), "--db", str(db),
               "--hash-cost", str(TEST_HASH_COST), "--msg-rate", "0",
               "--signup-rate", "0", "--read-rate", "0", *extra]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                                     env=env or {**os.environ, "PYTHONUNBUFFERED": "1"})
        ServerProcess.started.append(self)
        self.log: List[str] = []
        self.address = self._wait_listening()
        self._pump = threading.Thread(target=self._read_log, daemon=True)
        self._pump.start()

    def _wait_listening(self):
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            match = self.LISTENING.search(line)
            if match:
                return match.group(1), int(match.group(2))
        raise AssertionError("server did not start:\n" + "".join(self.log))

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)
