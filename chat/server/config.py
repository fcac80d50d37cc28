"""Everything the server can be told, in one dataclass built from the command line."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .. import protocol as p
from ..auth import DEFAULT_HASH_COST


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
