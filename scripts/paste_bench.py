#!/usr/bin/env python3
"""How long a 4,000-character paste takes to show in the real client (not a test).

Runs a server with a fresh database and the terminal client in a pseudo-terminal
(pexpect, read through a pyte screen, both in the test extras), pastes 4,000
characters of ASCII and of CJK, bracketed and not, and prints the median of 5
runs: milliseconds from the start of the paste to the paste's end on screen.

    .venv/bin/python scripts/paste_bench.py                 # this checkout
    .venv/bin/python scripts/paste_bench.py --root OTHER    # another checkout's client
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

try:
    import pexpect
    import pyte
except ImportError:
    sys.exit("paste_bench needs pexpect and pyte (the test extras): pip install '.[test]', "
             "or run it with .venv/bin/python")

from chat.client import ChatClient  # noqa: E402

END = "<END>"
CASES = [("ascii", "a"), ("cjk", "中")]
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
CTRL_U = "\x15"


class Screen:
    """The client in a pty, its output kept on a pyte screen."""

    def __init__(self, root: Path, port: int, user: str, password: str) -> None:
        self.screen = pyte.Screen(120, 30)
        self.stream = pyte.ByteStream(self.screen)
        env = {**os.environ, "TERM": "screen", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "CHAT_PASSWORD": password}
        self.child = pexpect.spawn(sys.executable, ["-m", "chat.client", "--port", str(port),
                                                    "--no-beep", "--user", user],
                                   cwd=str(root), env=env, dimensions=(30, 120))

    def pump(self, wait: float = 0.01) -> None:
        while True:
            try:
                data = self.child.read_nonblocking(1 << 16, timeout=wait)
            except (pexpect.TIMEOUT, pexpect.EOF):
                return
            self.stream.feed(data)
            wait = 0

    def shows(self, needle: str) -> bool:
        return any(needle in row for row in self.screen.display)

    def wait(self, needle: str, present: bool = True, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if self.shows(needle) == present:
                return True
        return False

    def write(self, data: str) -> threading.Thread:
        """Write in the background: the client's output must be read meanwhile."""
        payload = data.encode()

        def run() -> None:
            view = memoryview(payload)
            try:
                while view:
                    view = view[os.write(self.child.child_fd, view):]
            except OSError:
                pass

        writer = threading.Thread(target=run, daemon=True)
        writer.start()
        return writer

    def close(self) -> None:
        self.child.terminate(force=True)


def start_server(db: Path) -> Tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "chat.server", "--port", "0", "--db",
                             str(db), "--hash-cost", "4"], cwd=str(HERE),
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, int(match.group(1))
    raise SystemExit("the server did not start")


def one_paste(term: Screen, text: str, bracketed: bool, timeout: float) -> Optional[float]:
    """Milliseconds until the paste's end shows; None after ``timeout`` s."""
    payload = PASTE_START + text + PASTE_END if bracketed else text
    start = time.perf_counter()
    writer = term.write(payload)
    shown = term.wait(END, timeout=timeout)
    elapsed = (time.perf_counter() - start) * 1000
    writer.join(1)
    term.write(CTRL_U)
    term.wait(END, present=False, timeout=timeout)
    return elapsed if shown else None


def bench(root: Path, runs: int, length: int, timeout: float) -> List[str]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        server, port = start_server(Path(tmp) / "db")
        try:
            ChatClient.connect_as("127.0.0.1", port, "bench", "password1", signup=True).close()
            term = Screen(root, port, "bench", "password1")
            try:
                if not term.wait("bench @"):
                    raise SystemExit("the client did not log in")
                for bracketed in (True, False):
                    for name, ch in CASES:
                        text = ch * (length - len(END)) + END
                        times = [one_paste(term, text, bracketed, timeout) for _ in range(runs)]
                        rows.append(report(name, bracketed, times, timeout))
                        print(rows[-1], flush=True)
                        if None in times:
                            term.close()                  # a stuck client: start afresh
                            term = Screen(root, port, "bench", "password1")
                            term.wait("bench @")
            finally:
                term.close()
        finally:
            server.terminate()
            server.wait(15)
    return rows


def report(name: str, bracketed: bool, times: List[Optional[float]], timeout: float) -> str:
    mode = "bracketed" if bracketed else "unbracketed"
    done = [t for t in times if t is not None]
    missed = len(times) - len(done)
    if missed:
        return f"{name:5} {mode:11}  > {timeout * 1000:.0f} ms (timed out {missed} of {len(times)})"
    runs = " ".join(f"{t:.0f}" for t in done)
    return f"{name:5} {mode:11}  median {statistics.median(done):7.0f} ms   runs: {runs}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE,
                        help="checkout whose client to run (default: this one)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--length", type=int, default=4000, help="characters per paste")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per paste")
    args = parser.parse_args()
    print(f"client from {args.root}; {args.length} characters, median of {args.runs}")
    bench(args.root, args.runs, args.length, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
