"""Fixtures: a running in-process server with a fresh database, and raw connections to it."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from chat.server import ChatServer
from tests.support import RawConn, ServerProcess, start_server


@pytest.fixture(autouse=True)
def no_server_left_behind():
    """Kill the server subprocesses a test started and did not stop (a failed test)."""
    yield
    while ServerProcess.started:
        proc = ServerProcess.started.pop().proc
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def server(tmp_path):
    """A server subprocess on a fresh folder (for the pty tests of the client)."""
    proc = ServerProcess(tmp_path / "db")
    yield proc
    if proc.proc.poll() is None:
        proc.terminate()


@pytest.fixture(autouse=True)
def settings_home(tmp_path, monkeypatch):
    """The client's settings file (chat/tui/settings.py) in a folder of the test's own,
    never the runner's: the clients a test starts inherit ``XDG_CONFIG_HOME``."""
    folder = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    return folder


@pytest.fixture
def make_server(tmp_path):
    """Start in-process servers: ``make_server(**ServerConfig overrides)``, each on a
    fresh database folder unless ``db=`` is given; all stopped at the end of the test."""
    servers = []

    def _make(db=None, **options) -> ChatServer:
        server = start_server(db or tmp_path / f"db{len(servers) or ''}", **options)
        servers.append(server)
        return server

    yield _make
    for server in servers:
        server.stop()


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


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def terminals():
    """Open the real client in pseudo-terminals (``Terminal(port, ...)``); all closed at
    the end of the test."""
    from tests.test_tui_e2e import Terminal  # needs the test extras (pexpect, pyte)

    opened = []

    def open_terminal(*args, **kwargs):
        term = Terminal(*args, **kwargs)
        opened.append(term)
        return term

    yield open_terminal
    for term in opened:
        term.close()
