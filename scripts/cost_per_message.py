#!/usr/bin/env python3
"""The cost of one direct message, counted rather than timed.

Starts an in-process server from the checkout at ROOT (default: this one),
has one client pipeline N direct messages (64 at a time) to another, waits
until all are delivered, and stops. Run it under a counter for two values
of N; the difference divided by the difference in N is one message's cost,
which does not depend on what else the machine is doing:

    valgrind --tool=callgrind python scripts/cost_per_message.py --n 5000
    valgrind --tool=callgrind python scripts/cost_per_message.py --n 100
    # (Collected 5000 - Collected 100) / 4900 = instructions per message

Pass --root to count another checkout (a git archive of an older commit).
"""
from __future__ import annotations

import argparse
import dataclasses
import socket
import sys
import tempfile
import threading
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="messages (default 5000)")
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent),
                        help="the checkout whose chat/ to run (default: this one)")
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    from chat import protocol as p
    from chat.server import ChatServer, ServerConfig

    config = dict(host="127.0.0.1", port=0, db=Path(tempfile.mkdtemp()) / "db", hash_cost=4,
                  msg_rate=0.0)
    known = {f.name for f in dataclasses.fields(ServerConfig)}
    config.update({k: 0.0 for k in ("signup_rate", "read_rate") if k in known})
    server = ChatServer(ServerConfig(**config))
    server.serve_in_thread()

    def connect(name: str):
        sock = socket.create_connection(server.address)
        lines = sock.makefile("rb")
        lines.readline()
        for i, op in enumerate(("signup", "login")):
            sock.sendall(p.encode_request(op, i, username=name, password="password1"))
            lines.readline()
        return sock, lines

    sender, acks = connect("alice")
    _, events = connect("bob")
    n = args.n
    done = threading.Event()

    def count(lines, marker: bytes, then=None) -> None:
        seen = 0
        while seen < n:
            if marker in lines.readline():
                seen += 1
        if then is not None:
            then.set()

    threading.Thread(target=count, args=(events, b'"message"', done), daemon=True).start()
    threading.Thread(target=count, args=(acks, b'"ok"'), daemon=True).start()
    frames = [p.encode_request("send", i, to="bob", text="492660041349 " + "x" * 50)
              for i in range(n)]
    for i in range(0, n, 64):
        sender.sendall(b"".join(frames[i:i + 64]))
    done.wait(600)
    server.stop()


if __name__ == "__main__":
    main()
