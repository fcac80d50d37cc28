"""Fixtures: a running in-process server with a fresh database, and raw connections to it."""
from __future__ import annotations

import pytest

from tests.support import RawConn, start_server


@pytest.fixture
def chat_server(tmp_path):
    server = start_server(tmp_path / "db")
    yield server
    server.stop()


@pytest.fixture
def connect(chat_server):
    """Open raw connections to ``chat_server``; all closed at the end of the test."""
    conns = []

    def _connect(**kwargs) -> RawConn:
        conn = RawConn(chat_server.address, **kwargs)
        conns.append(conn)
        return conn

    yield _connect
    for conn in conns:
        conn.close()
