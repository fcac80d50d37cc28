"""chat-server: the composition root. Parse the command line, open the store,
start the listener, stop on a signal.

It imports the parts; none of them imports it, so the command line never
becomes a hub that the parts depend on (the IRC listener will start here too).
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
import threading
from pathlib import Path
from typing import List, Optional, Tuple

from chat import __version__  # the package root: a constant, no part

from . import protocol as p
from .auth import DEFAULT_HASH_COST, HashParams
from .dblock import DatabaseLocked
from .server import ChatServer, ServerConfig
from .store import StoreCorrupt

log = logging.getLogger("chat.server")


def port_number(text: str) -> int:
    """``--port``: 0 (a free one) to 65535, said in words rather than a traceback."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, not {text!r}")
    return port


def not_a_folder(db: Path) -> Optional[Path]:
    """The first of ``db`` and its parents that exists but is not a folder, if any."""
    for path in (db, *db.parents):
        if path.exists() or path.is_symlink():
            return None if path.is_dir() else path
    return None


def parse_args(argv: Optional[List[str]] = None) -> Tuple[ServerConfig, str]:
    parser = argparse.ArgumentParser(
        prog="chat-server",
        description="parallel-chat server: direct messages between signed-up users, "
                    "stored durably in a JSON database folder.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0: all interfaces)")
    parser.add_argument("--port", type=port_number, default=p.DEFAULT_PORT,
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
    parser.add_argument("--version", action="version", version=f"parallel-chat {__version__}")
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
    blocker = not_a_folder(args.db)
    if blocker is not None:
        parser.error(f"argument --db: {blocker} is not a folder" if blocker == args.db else
                     f"argument --db: {blocker} is not a folder, so {args.db} cannot be one")
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
    except socket.gaierror as exc:   # before OSError, of which it is one
        log.error("cannot start: --host %r does not resolve to an address (%s)",
                  config.host, exc.strerror or exc)
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
