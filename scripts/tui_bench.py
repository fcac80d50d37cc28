#!/usr/bin/env python3
"""The terminal client's everyday costs, in milliseconds (a benchmark, not a test).

Preloads a fresh database straight through ``chat.store.Store`` (fast, no wire):
one conversation of 10,000 messages (``bench`` with ``big``) and 100,000
messages in all (the rest between ``bench`` and nine others), then starts a
server on it and drives the real client in a pseudo-terminal, read through a
pyte screen (pexpect and pyte: the test extras). Each run starts a fresh client
and measures, from the key that starts it to what a person waits for:

  paste      a 4,000-character bracketed paste, until its end shows in the input line
  open       ``/open big`` (10,000 messages), until its last message shows
  scroll     PgUp, as fast as the screen follows, until big's first message shows;
             if it never does (no paging back), where it stopped and after how many
  search     ``/search`` in the client (if it has it), until a result shows;
             and the client library's ``search`` over the 100,000 messages,
             for a rare word (the whole store scanned) and a common one

Prints the median of ``--repeat`` runs (default 3) and every run.

    .venv/bin/python scripts/tui_bench.py              # the sizes above
    .venv/bin/python scripts/tui_bench.py --quick      # tiny sizes, a few seconds
    .venv/bin/python scripts/tui_bench.py --root OTHER # another checkout's client
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
from typing import Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

try:
    import pexpect
    import pyte
except ImportError:
    sys.exit("tui_bench needs pexpect and pyte (the test extras): pip install '.[test]', "
             "or run it with .venv/bin/python")

from chat.auth import HashParams, hash_password  # noqa: E402
from chat.client import ChatClient  # noqa: E402
from chat.store import Store  # noqa: E402

PASSWORD = "password1"
HASH_COST = 4
ME, BIG = "bench", "big"
OTHERS = [f"p{i}" for i in range(9)]
FIRST, LAST = "FIRST-OF-BIG", "LAST-OF-BIG"
NEEDLE, FOUND = "needle", "found-it"
COMMON = "filler"
PASTE_END_MARK = "<END>"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
PGUP, CTRL_U, ENTER, ESC = "\x1b[5~", "\x15", "\r", "\x1b"
ROWS, COLS = 30, 120
#: ``big #123``: how the scroll measure tells which message is highest on screen.
BIG_NUMBER = re.compile(r"big #(\d+)\b")


# ---------------------------------------------------------------- the data

def big_text(i: int, count: int) -> str:
    mark = FIRST if i == 0 else LAST if i == count - 1 else ""
    return f"big #{i} {mark} {COMMON} text of a long conversation".replace("  ", " ")


def preload(db: Path, conv: int, total: int) -> None:
    """``conv`` messages between bench and big, first (so that none of them is on screen
    at login), then the others' up to ``total`` in all, with a few needles among the
    older ones."""
    store = Store(db)
    try:
        stored = hash_password(PASSWORD, HashParams.from_cost(HASH_COST))
        for name in [ME, BIG, *OTHERS]:
            store.add_user(name, stored)
        last = 0
        for i in range(conv):
            sender, to = (ME, BIG) if i % 2 else (BIG, ME)
            last, _ = store.append_message(sender, to, big_text(i, conv))
            if i % 50_000 == 0:
                store.wait_durable(last)
        rest = total - conv
        needles = {rest * k // 8 for k in range(1, 4)}
        for i in range(rest):
            other = OTHERS[i % len(OTHERS)]
            sender, to = (ME, other) if i % 2 else (other, ME)
            word = f"{NEEDLE} {FOUND}" if i in needles else COMMON
            last, _ = store.append_message(sender, to, f"message {i} with {other}: {word}")
            if i % 50_000 == 0:
                store.wait_durable(last)
        store.wait_durable(last)
    finally:
        store.close()


def start_server(db: Path) -> Tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "chat.server", "--port", "0", "--db",
                             str(db), "--hash-cost", str(HASH_COST)], cwd=str(HERE),
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, int(match.group(1))
    raise SystemExit("the server did not start")


# ---------------------------------------------------------------- the client in a pty

class Screen:
    """The client in a pty, its output kept on a pyte screen."""

    def __init__(self, root: Path, port: int) -> None:
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        env = {**os.environ, "TERM": "screen", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "CHAT_PASSWORD": PASSWORD}
        self.child = pexpect.spawn(sys.executable, ["-m", "chat.client", "--port", str(port),
                                                    "--no-beep", "--user", ME],
                                   cwd=str(root), env=env, dimensions=(ROWS, COLS))

    def pump(self, wait: float = 0.005) -> bool:
        """Read what the client wrote; True if anything came."""
        got = False
        while True:
            try:
                data = self.child.read_nonblocking(1 << 16, timeout=wait)
            except (pexpect.TIMEOUT, pexpect.EOF):
                return got
            self.stream.feed(data)
            got, wait = True, 0

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait(self, test: Callable[[str], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if test(self.text()):
                return True
        return False

    def shows(self, needle: str, timeout: float) -> bool:
        return self.wait(lambda screen: needle in screen, timeout)

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

    def typed(self, text: str) -> None:
        """Keys, then a pause longer than the client's paste window (so not a paste)."""
        self.write(text).join(5)
        end = time.monotonic() + 0.15
        while time.monotonic() < end:
            self.pump()

    def close(self) -> None:
        self.child.terminate(force=True)


def timed(start: Callable[[], object], done: Callable[[], bool]) -> Optional[float]:
    t0 = time.perf_counter()
    start()
    return (time.perf_counter() - t0) * 1000 if done() else None


# ---------------------------------------------------------------- the measures

def measure_paste(term: Screen, length: int, timeout: float) -> Optional[float]:
    text = "a" * (length - len(PASTE_END_MARK)) + PASTE_END_MARK
    ms = timed(lambda: term.write(PASTE_START + text + PASTE_END),
               lambda: term.shows(PASTE_END_MARK, timeout))
    term.typed(CTRL_U)
    term.wait(lambda s: PASTE_END_MARK not in s, timeout)
    return ms


def measure_open(term: Screen, timeout: float) -> Optional[float]:
    term.typed(CTRL_U + "/open " + BIG)
    if LAST in term.text():
        raise SystemExit("big's last message is on screen before it is opened")
    return timed(lambda: term.write(ENTER), lambda: term.shows(LAST, timeout))


def highest_big(screen: str) -> Optional[int]:
    numbers = [int(n) for n in BIG_NUMBER.findall(screen)]
    return min(numbers) if numbers else None


def measure_scroll(term: Screen, timeout: float, stall: float) -> Tuple[Optional[float], str]:
    """PgUp until the first message shows: (ms or None, what happened)."""
    presses = 0
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if FIRST in term.text():
            ms = (time.perf_counter() - t0) * 1000
            return ms, f"{presses} PgUp"
        before = term.text()
        term.write(PGUP).join(1)
        presses += 1
        if not term.wait(lambda s, old=before: s != old, stall):
            top = highest_big(term.text())
            return None, (f"stuck after {presses} PgUp: the screen stopped changing with "
                          f"big #{top} highest (message {top} of the conversation, 0 first)")
    top = highest_big(term.text())
    return None, f"not there after {timeout:.0f} s and {presses} PgUp (big #{top} highest)"


def has_search_command(root: Path) -> bool:
    """Whether the client in ``root`` has ``/search`` (its error may not reach the screen)."""
    probe = subprocess.run([sys.executable, "-c", "from chat.tui.commands import COMMANDS; "
                            "print('search' in COMMANDS)"], cwd=str(root),
                           capture_output=True, text=True)
    return probe.stdout.strip() == "True"


def measure_tui_search(term: Screen, timeout: float) -> Tuple[Optional[float], str]:
    """``/search needle`` until a result shows, or why it cannot be measured."""
    term.typed(ESC)                     # out of the messages pane, if PgUp took the focus
    time.sleep(0.6)                     # a stale Esc, not an Alt prefix
    term.typed(CTRL_U + f"/search {NEEDLE}")
    hit = FOUND

    def result() -> bool:
        return term.wait(lambda s: hit in s or "unknown command" in s, timeout)

    ms = timed(lambda: term.write(ENTER), result)
    term.typed(ESC)
    time.sleep(0.6)
    return ms, "" if ms is not None else "no result on screen"


def measure_library_search(port: int, query: str) -> float:
    client = ChatClient.connect_as("127.0.0.1", port, ME, PASSWORD)
    try:
        t0 = time.perf_counter()
        client.search(query)
        return (time.perf_counter() - t0) * 1000
    finally:
        client.close()


# ---------------------------------------------------------------- the run

def one_run(root: Path, port: int, args) -> Dict[str, Tuple[Optional[float], str]]:
    out: Dict[str, Tuple[Optional[float], str]] = {}
    term = Screen(root, port)
    try:
        if not term.shows(f"{ME} @", args.timeout):
            raise SystemExit(f"the client did not log in:\n{term.text()}")
        out["paste"] = (measure_paste(term, args.paste, args.timeout), "")
        out["search (client, /search)"] = (measure_tui_search(term, args.timeout)
                                           if has_search_command(root)
                                           else (None, "this client has no /search"))
        out["open"] = (measure_open(term, args.timeout), "")
        out["scroll to first"] = measure_scroll(term, args.scroll_timeout, args.stall)
    finally:
        term.close()
    out["search (library, rare word)"] = (measure_library_search(port, NEEDLE), "")
    out["search (library, common word)"] = (measure_library_search(port, COMMON), "")
    return out


def report(results: List[Dict[str, Tuple[Optional[float], str]]]) -> None:
    for name in results[0]:
        runs = [r[name][0] for r in results]
        notes = sorted({r[name][1] for r in results if r[name][1]})
        done = [t for t in runs if t is not None]
        shown = " ".join("-" if t is None else f"{t:.0f}" for t in runs)
        median = f"{statistics.median(done):8.0f} ms" if done else "       - ms"
        note = f"   ({'; '.join(notes)})" if notes else ""
        print(f"{name:31} median {median}   runs: {shown}{note}", flush=True)


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=HERE,
                        help="checkout whose client to run (default: this one)")
    parser.add_argument("--repeat", type=int, default=3, help="runs, each a fresh client")
    parser.add_argument("--conversation", type=int, default=10_000,
                        help="messages in the conversation opened and scrolled")
    parser.add_argument("--total", type=int, default=100_000, help="messages in all")
    parser.add_argument("--paste", type=int, default=4000, help="characters pasted")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per wait")
    parser.add_argument("--scroll-timeout", type=float, default=300.0,
                        help="seconds of PgUp before giving up on the first message")
    parser.add_argument("--stall", type=float, default=3.0,
                        help="seconds without a change after PgUp that count as stuck")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and one run: a check that it works, in seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.conversation, args.total, args.paste = 1, 60, 300, 400
        args.timeout, args.scroll_timeout, args.stall = 20.0, 30.0, 2.0
    args.total = max(args.total, args.conversation + 10)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    print(f"client from {args.root}; {args.conversation:,} messages in the conversation, "
          f"{args.total:,} in all; median of {args.repeat}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "db"
        t0 = time.perf_counter()
        preload(db, args.conversation, args.total)
        print(f"preloaded in {time.perf_counter() - t0:.1f} s", flush=True)
        server, port = start_server(db)
        try:
            results = [one_run(args.root, port, args) for _ in range(args.repeat)]
        finally:
            server.terminate()
            server.wait(15)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
