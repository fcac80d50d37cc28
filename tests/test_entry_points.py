"""The two programs' command lines and ``scripts/demo``, run as a person runs them.

Every program here is a subprocess; every server one starts is stopped, and the demo's
tmux sessions live on a tmux server of their own (``TMUX_TMPDIR``), ended by the test.
"""
from __future__ import annotations

import configparser
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

import chat
from tests.support import ROOT, RawConn

SERVER = [sys.executable, "-m", "chat.server"]
CLIENT = [sys.executable, "-m", "chat.client"]
DEMO = ROOT / "scripts" / "demo"
UNRESOLVABLE = "nosuchhost.invalid"


def run(argv: List[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def free_port() -> int:
    """A port nothing listens on now (the demo's own probe is what is under test)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


# ---------------------------------------------------------------- --version

@pytest.mark.parametrize("program", [SERVER, CLIENT], ids=["server", "client"])
def test_version_names_the_package_and_its_version(program):
    proc = run([*program, "--version"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"parallel-chat {chat.__version__}"
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert chat.__version__ == setup["metadata"]["version"]


# ---------------------------------------------------------------- --port

@pytest.mark.parametrize("port", ["99999", "-1", "65536", "http"])
def test_server_refuses_a_port_out_of_range(tmp_path, port):
    proc = run([*SERVER, "--port", port, "--db", str(tmp_path / "db")])
    assert proc.returncode == 2, proc.stderr
    assert "port must be 0-65535" in proc.stderr
    assert "usage: chat-server" in proc.stderr
    no_traceback(proc)
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_client_refuses_a_port_out_of_range(port):
    proc = run([*CLIENT, "--port", port])
    assert proc.returncode == 2, proc.stderr
    assert "port must be 1-65535" in proc.stderr
    assert "usage: chat-client" in proc.stderr
    no_traceback(proc)


# ---------------------------------------------------------------- --host

def test_server_says_an_unresolvable_host_does_not_resolve(tmp_path):
    proc = run([*SERVER, "--host", UNRESOLVABLE, "--port", "0", "--db", str(tmp_path / "db")])
    assert proc.returncode != 0
    assert f"{UNRESOLVABLE!r} does not resolve" in proc.stderr, proc.stderr
    no_traceback(proc)
    assert not (tmp_path / "db").exists()


def test_client_says_an_unresolvable_host_does_not_resolve(terminals):
    """In a terminal, as a person runs it: it says so and ends, instead of a login
    screen asking whether the server is running."""
    import pexpect

    term = terminals(free_port(), "--host", UNRESOLVABLE)
    try:
        term.child.expect(pexpect.EOF, timeout=15)
    except pexpect.TIMEOUT:
        term.pump()
        raise AssertionError("the client is still running; its screen:\n" + term.text()) from None
    output = (bytes(term.raw) + (term.child.before or b"")).decode(errors="replace")
    term.child.close()
    assert f"{UNRESOLVABLE!r} does not resolve" in output, output
    assert "Is the server running" not in output and "Traceback" not in output, output
    assert term.child.exitstatus not in (0, None)


# ---------------------------------------------------------------- --db

@pytest.mark.parametrize("where", ["a file", "under a file", "/etc/passwd"])
def test_server_says_the_database_is_not_a_folder(tmp_path, where):
    file = tmp_path / "notes.txt"
    file.write_text("not a database\n")
    db = {"a file": file, "under a file": file / "db", "/etc/passwd": Path("/etc/passwd")}[where]
    if not db.parent.exists() and where == "/etc/passwd":
        pytest.skip("no /etc/passwd here")
    proc = run([*SERVER, "--port", "0", "--db", str(db)])
    assert proc.returncode != 0
    assert "is not a folder" in proc.stderr, proc.stderr
    no_traceback(proc)
    assert file.read_text() == "not a database\n"


# ---------------------------------------------------------------- scripts/demo

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None or shutil.which("bash") is None,
                                reason="the demo needs tmux and bash")


class Demo:
    """Runs ``scripts/demo`` against a tmux server of its own."""

    def __init__(self, tmp_path: Path) -> None:
        # A short folder: tmux's socket path must fit in a sockaddr_un.
        self.tmux_dir = tempfile.mkdtemp(prefix="pc-tmux-")
        self.tmp = tmp_path / "demo-tmp"
        self.tmp.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE", "PORT")}
        self.env: Dict[str, str] = {**env, "TMUX_TMPDIR": self.tmux_dir, "TMPDIR": str(self.tmp),
                                    "PYTHON": sys.executable, "TERM": "xterm",
                                    # The old script knew no --no-attach:
                                    "DEMO_DETACHED": "1"}

    def run(self, *args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        return run(["bash", str(DEMO), *args], env={**self.env, **(env or {})})

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        return run(["tmux", *args], env=self.env, timeout=20)

    def sessions(self) -> List[str]:
        proc = self.tmux("list-sessions", "-F", "#{session_name}")
        return proc.stdout.split() if proc.returncode == 0 else []

    def pane_commands(self, session: str) -> List[str]:
        proc = self.tmux("list-panes", "-s", "-t", session, "-F", "#{pane_start_command}")
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    def close(self) -> None:
        """End every session (their servers get SIGHUP), then this tmux server; then,
        should a demo's server have outlived its session (a failed test), kill it."""
        for session in self.sessions():
            self.tmux("kill-session", "-t", session)
        self.tmux("kill-server")
        for pidfile in self.tmp.glob("*/server.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
        shutil.rmtree(self.tmux_dir, ignore_errors=True)


@pytest.fixture
def demo(tmp_path) -> Iterator[Demo]:
    d = Demo(tmp_path)
    yield d
    d.close()


def wait_closed(port: int, timeout: float = 15) -> None:
    """Until nothing accepts on 127.0.0.1:port (the demo's server has stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.1)
    raise AssertionError(f"something still listens on port {port}")


def reported_port(output: str) -> int:
    match = re.search(r"server on (?:port |127\.0\.0\.1:)(\d+)", output)
    assert match, output
    return int(match.group(1))


def check_running_demo(demo: Demo, proc: subprocess.CompletedProcess, clients: int) -> int:
    """The demo's server answers on the port it reported, on a database in its own
    temporary folder, and every client pane points at that port; then end it."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    port = reported_port(proc.stdout)
    sessions = demo.sessions()
    assert len(sessions) == 1, sessions
    try:
        hello = RawConn(("127.0.0.1", port))
        hello.close()
        commands = demo.pane_commands(sessions[0])
        assert len(commands) == 1 + clients, commands
        # The server pane may say --port 0: the server picks the port, the log tells it.
        assert sum("chat.server" in c and str(demo.tmp) in c for c in commands) == 1, commands
        assert sum("chat.client" in c and f"--port {port}" in c for c in commands) == clients
        assert str(demo.tmp) in proc.stdout, proc.stdout      # its own temporary database
    finally:
        demo.tmux("kill-session", "-t", sessions[0])
        wait_closed(port)
    return port


@needs_tmux
def test_demo_takes_port_first_and_starts_its_own_server_there(demo):
    port = free_port()
    proc = demo.run("--port", str(port), "--no-attach")
    assert check_running_demo(demo, proc, clients=2) == port


@needs_tmux
def test_demo_takes_a_client_count_and_port_in_any_order(demo):
    port = free_port()
    proc = demo.run("--no-attach", "--port", str(port), "3")
    assert check_running_demo(demo, proc, clients=3) == port


@needs_tmux
def test_demo_by_default_keeps_off_a_busy_5050(demo):
    """The README's first command runs a real server on 5050; the demo must neither fail
    on that port nor point its clients at that server."""
    with contextlib.ExitStack() as stack:
        real = socket.socket()
        stack.callback(real.close)
        real.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # past TIME_WAIT
        try:
            real.bind(("127.0.0.1", 5050))
            real.listen(8)
        except OSError:
            pass   # already busy: just as good
        real.settimeout(0)
        proc = demo.run()        # DEMO_DETACHED=1 instead of --no-attach: as it was
        port = check_running_demo(demo, proc, clients=2)
        assert port != 5050
        with contextlib.suppress(BlockingIOError, OSError):
            conn, peer = real.accept()
            conn.close()
            raise AssertionError(f"the demo connected to the server on 5050 from {peer}")


@needs_tmux
def test_demo_refuses_a_busy_port_it_was_given(demo):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(8)
        port = busy.getsockname()[1]
        proc = demo.run("--port", str(port), "--no-attach")
        assert proc.returncode != 0, proc.stdout
        assert f"port {port} is in use" in proc.stderr, proc.stdout + proc.stderr
        assert demo.sessions() == []
        busy.settimeout(0)
        with pytest.raises(BlockingIOError):
            busy.accept()


FAKE_PYTHON = """#!/usr/bin/env bash
# A python whose chat-server dies at once; anything else runs for real.
for arg in "$@"; do
  if [[ "$arg" == chat.server ]]; then echo "boom: the server cannot start" >&2; exit 3; fi
done
exec {python} "$@"
"""


@needs_tmux
@pytest.mark.parametrize("failure", ["unknown option", "server fails to start", "bad count"])
def test_demo_leaves_no_session_behind_when_it_fails(demo, tmp_path, failure):
    env = {}
    if failure == "unknown option":
        args = ["--colour", "blue", "--no-attach"]
    elif failure == "bad count":
        args = ["lots", "--port", str(free_port()), "--no-attach"]
    else:
        fake = tmp_path / "fake-python"
        fake.write_text(FAKE_PYTHON.format(python=sys.executable))
        fake.chmod(0o755)
        env["PYTHON"] = str(fake)
        args = ["--port", str(free_port()), "--no-attach"]
    proc = demo.run(*args, env=env)
    assert proc.returncode != 0, proc.stdout
    assert proc.stderr.strip(), "it must say why"
    if failure == "server fails to start":
        assert "boom: the server cannot start" in proc.stderr
    assert demo.sessions() == [], proc.stdout + proc.stderr
    assert list(demo.tmp.iterdir()) == [], "its temporary folder is removed"


@needs_tmux
def test_demo_help(demo):
    proc = demo.run("--help")
    assert proc.returncode == 0, proc.stderr
    assert "--port" in proc.stdout and "--no-attach" in proc.stdout
    assert demo.sessions() == []
