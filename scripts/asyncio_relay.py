#!/usr/bin/env python3
"""A plain asyncio relay that speaks just enough of parallel-chat's protocol for the
benchmark (``chat-bench compare``): a comparison target, not a chat server.

Newline-delimited JSON frames and the same hello on connect; ``signup`` and ``login``
answered ok (no passwords, no accounts kept); ``send`` answered with the reply shape of
the real server and a ``message`` event to the recipient's connections (and the sender's
other ones). What one read brings is answered in one write per connection. Nothing is
written to disk; no limits, no history.

    python scripts/asyncio_relay.py --host 127.0.0.1 --port 0   # says "listening on ..."
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Dict, Set

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from chat import protocol as p  # noqa: E402  (the repository's own module, from a clone)

#: user key -> the connections logged in as that user
online: Dict[str, Set["Relay"]] = {}
ids = itertools.count(1)


class Relay(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport, self.user, self.partial = transport, "", b""
        transport.write(p.hello_event())

    def connection_lost(self, exc) -> None:
        online.get(p.user_key(self.user), set()).discard(self)

    def data_received(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) >= p.MAX_FRAME_BYTES:
            self.transport.close()
            return
        out: Dict[Relay, bytearray] = {self: bytearray()}
        for line in lines:
            try:
                req = json.loads(line)
                op, rid = req["op"], req.get("id")
            except (ValueError, KeyError, TypeError):
                out[self] += p.error_reply(None, p.BAD_JSON, "not a request")
                continue
            if op in ("signup", "login"):
                name = str(req.get("username", ""))
                out[self] += p.ok_reply(rid, username=name)
                if op == "login" and not self.user:
                    self.user = name
                    online.setdefault(p.user_key(name), set()).add(self)
            elif op == "send" and self.user:
                to = str(req.get("to", ""))
                msg = p.message_json(next(ids), self.user, to, str(req.get("text", "")),
                                     time.time(), None)
                out[self] += p.ok_reply_raw(rid, "message", msg)
                event = p.message_event(msg)
                to_key, my_key = p.user_key(to), p.user_key(self.user)
                for key in (to_key,) if to_key == my_key else (to_key, my_key):
                    for conn in online.get(key, ()):
                        if conn is not self:
                            out.setdefault(conn, bytearray()).extend(event)
            elif op == "ping":
                out[self] += p.ok_reply(rid)
            else:
                out[self] += p.error_reply(rid, p.UNKNOWN_OP, f"not in this relay: {op}")
        for conn, frames in out.items():
            if frames:
                conn.transport.write(frames)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Relay, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (default)")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
