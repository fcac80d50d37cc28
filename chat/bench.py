"""The benchmark: durable message throughput and latency, memory, store growth, rooms.

It starts a server (a subprocess on a fresh temporary database, durability on)
or targets ``--host/--port``, signs up its users, and drives them from several
worker processes, each running many non-blocking connections on a selectors
loop, so the load generator is not what is measured. Latency is from the
send to the recipient's ``message`` event: the text carries the sender's
``time.monotonic_ns()``, a clock all processes on the machine share.

    python -m chat.bench                      # the default suite, ~1 minute
    python -m chat.bench pairs -n 1000 -m 100 --repeat 3
    python -m chat.bench history --preload 1000000
    python -m chat.bench growth --accounts 1000 100000 --repeat 3
    python -m chat.bench rss --preload 1000000
    python -m chat.bench rooms --members 10 100 --repeat 3
    python -m chat.bench compare -n 2 100 --repeat 3   # vs an asyncio relay and miniircd
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import inspect
import json
import multiprocessing as mp
import os
import random
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import protocol as p

PASSWORD = "bench-password"
BENCH_HASH_COST = 4
SERVER_FLAGS = ["--hash-cost", str(BENCH_HASH_COST), "--msg-rate", "0"]
#: Limits a newer server has and an older one does not: turned off when the
#: server's --help lists them (an older server would refuse the flag). The
#: benchmark signs up many users from one address and moves read markers as
#: fast as it can: it measures the server's work, not its rate limits.
OPTIONAL_SERVER_FLAGS = {"--signup-rate": "0", "--read-rate": "0"}
SETTINGS_NOTE = (f"server flags {' '.join(SERVER_FLAGS)}: the password hash cost is lowered "
                 f"(scrypt n=2^{BENCH_HASH_COST}) for the benchmark's own users, and the "
                 "per-connection send rate limit is off; durability is ON (every acknowledged "
                 "message fsynced, group commit)")

_server_flags: Optional[List[str]] = None


def server_flags() -> List[str]:
    """SERVER_FLAGS, plus those OPTIONAL_SERVER_FLAGS this server has (asked once)."""
    global _server_flags
    if _server_flags is None:
        flags = list(SERVER_FLAGS)
        try:
            out = subprocess.run([sys.executable, "-m", "chat.server", "--help"],
                                 capture_output=True, text=True, timeout=60,
                                 cwd=str(Path(__file__).resolve().parent.parent)).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for flag, value in OPTIONAL_SERVER_FLAGS.items():
            if re.search(re.escape(flag) + r"\b", out):
                flags += [flag, value]
        _server_flags = flags
    return _server_flags


def settings_note() -> str:
    extra = server_flags()[len(SERVER_FLAGS):]
    if not extra:
        return SETTINGS_NOTE
    return (SETTINGS_NOTE.replace(" ".join(SERVER_FLAGS), " ".join(server_flags()))
            + "; this server's sign-up and read-marker rate limits are off too")


# ---------------------------------------------------------------- the server under test

def _die_with_parent() -> None:
    """In the server child (Linux): SIGTERM it when the benchmark dies, however it dies
    (a killed benchmark would otherwise leave its server running)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


class Server:
    """A chat server subprocess (or a running one), with its CPU and memory read from /proc."""

    LISTENING = re.compile(r"listening on ([\d.]+):(\d+)")
    COUNTS = re.compile(r"(\d+) users, (\d+) messages")

    def __init__(self, db: Optional[Path] = None, host: str = "", port: int = 0,
                 cmd: Optional[List[str]] = None) -> None:
        """A parallel-chat server on ``db`` (a fresh temporary one by default), the server
        at ``host:port`` (not started), or ``cmd``: another server that says
        ``listening on HOST:PORT`` on stderr (a comparison target)."""
        self.proc: Optional[subprocess.Popen] = None
        self.own_db = db is None and not host and cmd is None
        self.db = db
        self.start_seconds = 0.0
        self.users: Optional[int] = None      # as the ready line says, when it does
        self.messages: Optional[int] = None
        if host:
            self.address = (host, port)
            return
        if cmd is None:
            if self.db is None:
                self.db = Path(tempfile.mkdtemp(prefix="chat-bench-"))
            cmd = [sys.executable, "-m", "chat.server", "--port", "0", "--db", str(self.db),
                   "--log-level", "WARNING", *server_flags()]
        started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True,
                                     cwd=str(Path(__file__).resolve().parent.parent),
                                     preexec_fn=_die_with_parent)
        assert self.proc.stderr is not None
        said: List[str] = []
        for line in self.proc.stderr:
            said = (said + [line])[-20:]
            match = self.LISTENING.search(line)
            if match:
                self.address = (match.group(1), int(match.group(2)))
                counts = self.COUNTS.search(line)
                if counts:
                    self.users, self.messages = int(counts.group(1)), int(counts.group(2))
                break
        else:
            self.proc.wait(10)
            raise RuntimeError("the server did not start: " + " ".join(cmd) + "\n"
                               + "".join(said[-10:]))
        self.start_seconds = time.perf_counter() - started
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            if "ERROR" in line or "Traceback" in line:
                sys.stderr.write("server: " + line)

    def cpu_seconds(self) -> float:
        if self.proc is None:
            return 0.0
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0

    def memory_mb(self, key: str = "VmHWM") -> float:
        if self.proc is None:
            return 0.0
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.own_db and self.db is not None:
            shutil.rmtree(self.db, ignore_errors=True)


# ---------------------------------------------------------------- blocking helpers

class Line:
    """A blocking line-protocol connection for set-up work (sign-ups, probes)."""

    def __init__(self, address: Tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = p.FrameDecoder(64 * 1024 * 1024)
        self.frames: List[dict] = []
        self.hello = self.next_frame()

    def next_frame(self) -> dict:
        while not self.frames:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.frames.extend(json.loads(line) for line in self.decoder.feed(data))
        return self.frames.pop(0)

    def call(self, op: str, **fields: Any) -> dict:
        self.sock.sendall(p.encode_request(op, "b", **fields))
        while True:
            frame = self.next_frame()
            if frame.get("id") == "b":
                return frame

    def close(self) -> None:
        self.sock.close()


def sign_up(address, names: List[str]) -> None:
    """Create accounts, pipelined on one connection ('taken' is fine: reruns)."""
    line = Line(address)
    for start in range(0, len(names), 200):
        chunk = names[start:start + 200]
        line.sock.sendall(b"".join(p.encode_request("signup", i, username=n, password=PASSWORD)
                                   for i, n in enumerate(chunk)))
        got = 0
        while got < len(chunk):
            if "ok" in line.next_frame():
                got += 1
    line.close()


def loopback_rtt_us(rounds: int = 2000) -> float:
    """Median round trip of a 64-byte ping-pong over loopback TCP: the floor."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def echo() -> None:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            data = conn.recv(4096)
            if not data:
                break
            conn.sendall(data)
        conn.close()

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    client = socket.create_connection(server.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    payload = b"x" * 64
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        client.sendall(payload)
        got = 0
        while got < len(payload):
            got += len(client.recv(4096))
        samples.append(time.perf_counter_ns() - t0)
    client.close()
    server.close()
    thread.join(2)
    return statistics.median(samples) / 1000


# ---------------------------------------------------------------- the load generator

@dataclass
class WorkerResult:
    delivered: int = 0
    acked: int = 0
    errors: int = 0
    latencies_us: List[int] = field(default_factory=list)
    cpu_seconds: float = 0.0
    seconds: float = 0.0


def _worker(address, pairs, messages: int, window: int, size: int, rate: float,
            ready, go, results, progress) -> None:
    """One process: many connections on one selectors loop, each sending to its peer."""
    sel = selectors.DefaultSelector()
    conns = []
    for me, peer in pairs:
        sock = socket.create_connection(address, timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(p.encode_request("login", 0, username=me, password=PASSWORD))
        conns.append({"sock": sock, "peer": peer, "sent": 0, "acked": 0, "got": 0,
                      "dec": p.FrameDecoder(64 * 1024 * 1024), "out": bytearray()})
    for c in conns:  # wait for every login before the clock starts
        buf = b""
        while b'"id":0,' not in buf:
            chunk = c["sock"].recv(1 << 16)
            if not chunk:
                raise ConnectionError("login refused")
            buf += chunk
        if b'"ok":false' in buf.split(b'"id":0,', 1)[1][:20]:
            raise ConnectionError(f"login refused: {buf[-200:]!r}")
        c["sock"].setblocking(False)
        sel.register(c["sock"], selectors.EVENT_READ, c)
    ready.put(len(conns))
    go.wait()
    pad = "x" * max(0, size - 20)
    result = WorkerResult()
    cpu0 = os.times()
    start = time.monotonic()
    interval = len(conns) / rate if rate > 0 else 0.0   # open loop: each conn's gap
    next_send = [start + (i / len(conns)) * interval for i in range(len(conns))]
    want = messages

    def fill(c, now_ns) -> None:
        while c["sent"] < want and c["sent"] - c["acked"] < window:
            c["sent"] += 1
            c["out"] += p.encode_request("send", c["sent"], to=c["peer"],
                                         text=f"{now_ns} {pad}")

    flush = _send_pending

    if rate <= 0:
        now_ns = time.monotonic_ns()
        for c in conns:
            fill(c, now_ns)
            flush(c)
    done = 0
    last_report = start
    reported = 0
    while done < len(conns):
        timeout = 0.2
        if rate > 0:
            now = time.monotonic()
            for i, c in enumerate(conns):
                if c["sent"] < want and now >= next_send[i] and c["sent"] - c["acked"] < window:
                    c["sent"] += 1
                    c["out"] += p.encode_request("send", c["sent"], to=c["peer"],
                                                 text=f"{time.monotonic_ns()} {pad}")
                    next_send[i] += interval
                    flush(c)
            pending = [t for i, t in enumerate(next_send)
                       if conns[i]["sent"] < want and conns[i]["sent"] - conns[i]["acked"] < window]
            timeout = max(0.0, min(pending) - time.monotonic()) if pending else 0.2
        for key, _ in sel.select(timeout):
            c = key.data
            try:
                data = c["sock"].recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("the server closed a connection")
            now_ns = time.monotonic_ns()
            for line in c["dec"].feed(data):
                if line.startswith(b'{"event":"message"'):
                    c["got"] += 1
                    i = line.index(b'"text":"') + 8
                    sent_ns = int(line[i:line.index(b" ", i)])
                    result.latencies_us.append((now_ns - sent_ns) // 1000)
                elif line.startswith(b'{"id"'):
                    c["acked"] += 1
                    if b'"ok":false' in line[:40]:
                        result.errors += 1
            if rate <= 0:
                fill(c, now_ns)
            flush(c)
            if c["acked"] >= want and c["got"] >= want and not c.get("done"):
                c["done"] = True
                done += 1
        for c in conns:
            flush(c)
        now = time.monotonic()
        if now - last_report > 0.2:
            delivered = sum(c["got"] for c in conns)
            progress.put(delivered - reported)
            reported = delivered
            last_report = now
    result.seconds = time.monotonic() - start
    cpu1 = os.times()
    result.cpu_seconds = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    result.delivered = sum(c["got"] for c in conns)
    result.acked = sum(c["acked"] for c in conns)
    progress.put(result.delivered - reported)
    for c in conns:
        c["sock"].close()
    results.put(asdict(result))


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, max(1, total), enabled
        self.done = 0
        self.started = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(frac * 30)
        rate = self.done / max(1e-9, time.monotonic() - self.started)
        sys.stderr.write(f"\r{self.label:<28} [{bar:<30}] {frac * 100:5.1f}% {rate:9.0f} msg/s")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


def percentile(values: List[int], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return float(values[min(len(values) - 1, int(q * len(values)))])




def _send_pending(c: dict) -> None:
    """Send what a load connection has queued, as much as the kernel takes now."""
    if c["out"]:
        try:
            n = c["sock"].send(c["out"])
        except BlockingIOError:
            n = 0
        del c["out"][:n]

class _Ticker:
    """A load process's progress to the parent every 0.2 s, and an error once nothing
    arrived for ``stall_s`` (a stuck server must not hang the benchmark)."""

    def __init__(self, progress, stall_s: float, start: float, what: str,
                 shown: Tuple[str, ...]) -> None:
        self.progress, self.stall_s = progress, stall_s
        self.last_report, self.reported = start, 0
        self.what, self.shown = what, shown   # the error's start; the fields it shows

    def tick(self, conns: List[dict], last_data: float) -> None:
        now = time.monotonic()
        if now - self.last_report > 0.2:
            delivered = sum(c["got"] for c in conns)
            self.progress.put(delivered - self.reported)
            self.reported, self.last_report = delivered, now
            if now - last_data > self.stall_s:
                waiting = [tuple(c[f] for f in self.shown) for c in conns if not c["done"]]
                raise RuntimeError(f"{self.what}nothing received for {self.stall_s:.0f} s; "
                                   f"waiting ({', '.join(self.shown)}): {waiting[:5]}")

    def finish(self, delivered: int) -> None:
        self.progress.put(delivered - self.reported)


def _count_chat_frame(c: dict, line: bytes, now_ns: int, latencies: List[int]) -> int:
    """Count one frame a load connection received: 1 for a message event (its latency
    noted from the timestamp that starts its text), an acknowledgement in ``acks``;
    a refused send stops the run."""
    if line.startswith(b'{"event":"message"'):
        i = line.index(b'"text":"') + 8
        latencies.append((now_ns - int(line[i:line.index(b" ", i)])) // 1000)
        return 1
    if line.startswith(b'{"id"'):
        c["acks"] += 1
        if b'"ok":false' in line[:40]:
            raise RuntimeError(f"{c['name']}: a send was refused: "
                               f"{line[:300].decode(errors='replace')}")
    return 0


def _start_sending(conns: List[dict], fill, flush) -> Tuple[Any, float]:
    """Fill and send every connection's first window: the CPU times and the start."""
    cpu0, start, now_ns = os.times(), time.monotonic(), time.monotonic_ns()
    for c in conns:
        fill(c, now_ns)
        flush(c)
    return cpu0, start


def _send_and_watch(sel, c: dict) -> None:
    """Send what a connection has queued, and watch it for writing while some is left."""
    _send_pending(c)
    want_write = bool(c["out"])
    if want_write != c["writing"]:
        c["writing"] = want_write
        sel.modify(c["sock"], selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write
                                                      else 0), c)


def _arrivals(sel, flush: Callable[[dict], None], timeout: float = 0.2):
    """One select round: (connection, bytes read, monotonic ns) for each connection with
    data; a writable one gets ``flush`` on the way. A closed connection is an error."""
    for key, events in sel.select(timeout):
        c = key.data
        if events & selectors.EVENT_WRITE:
            flush(c)
        if not events & selectors.EVENT_READ:
            continue
        try:
            data = c["sock"].recv(1 << 20)
        except BlockingIOError:
            continue
        if not data:
            raise ConnectionError(f"the server closed {c['name']}'s connection")
        yield c, data, time.monotonic_ns()


def collect_results(procs, results, progress, bar, what: str = "") -> List[dict]:
    """Wait for every worker's result, showing progress; RuntimeError if a worker
    died, or (with ``what``) reported an error."""
    collected: List[dict] = []
    while len(collected) < len(procs):
        try:
            bar.add(progress.get(timeout=0.2))
        except Exception:
            pass
        while True:
            try:
                collected.append(results.get_nowait())
            except Exception:
                break
        if not any(proc.is_alive() for proc in procs) and len(collected) < len(procs):
            try:
                collected.append(results.get(timeout=2))
            except Exception:
                raise RuntimeError("a load worker died; see its error above") from None
        failed = [r["error"] for r in collected if "error" in r] if what else []
        if failed:
            raise RuntimeError(f"{what}: {failed[0]}")
    return collected

def run_load(server: Server, clients: int, messages: int, window: int, size: int,
             rate: float = 0.0, workers: int = 2, label: str = "", show: bool = True,
             prefix: str = "u") -> Dict[str, Any]:
    """One measured run: pairs of clients messaging each other."""
    clients += clients % 2
    names = [f"{prefix}{i}" for i in range(clients)]
    sign_up(server.address, names)
    pairs = [(names[i], names[i ^ 1]) for i in range(clients)]
    workers = max(1, min(workers, clients))
    ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
    ready, results, progress = ctx.Queue(), ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    shares = [pairs[w::workers] for w in range(workers)]
    procs = [ctx.Process(target=_worker, args=(server.address, share, messages, window, size,
                                               rate * len(share) / clients, ready, go,
                                               results, progress), daemon=True)
             for share in shares]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=300)
    bar = Progress(label or f"{clients} clients", clients * messages, show)
    cpu0, wall0 = server.cpu_seconds(), time.monotonic()
    go.set()
    collected = collect_results(procs, results, progress, bar)
    wall = time.monotonic() - wall0
    cpu = server.cpu_seconds() - cpu0
    bar.finish()
    for proc in procs:
        proc.join(5)
    latencies = [v for r in collected for v in r["latencies_us"]]
    delivered = sum(r["delivered"] for r in collected)
    seconds = max(r["seconds"] for r in collected)
    return {
        "clients": clients, "messages_per_client": messages, "window": window, "size": size,
        "offered_rate": rate or None,
        "delivered": delivered, "acked": sum(r["acked"] for r in collected),
        "errors": sum(r["errors"] for r in collected),
        **_rate_and_latency(delivered, seconds, latencies, cpu, wall),
        # server CPU per delivered message (issue 10's headline figure); None with --host
        "server_cpu_us_per_msg": round(cpu / delivered * 1e6, 2)
        if server.proc is not None and delivered else None,
        "server_peak_rss_mb": round(server.memory_mb("VmHWM"), 1),
        "generator_cpu_pct": round(sum(r["cpu_seconds"] for r in collected) / wall * 100, 1),
    }


def _rate_and_latency(delivered: int, seconds: float, latencies: List[int], cpu: float,
                      wall: float) -> Dict[str, Any]:
    """A run's figures every throughput workload reports alike."""
    return {
        "seconds": round(seconds, 3),
        "msgs_per_s": round(delivered / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentile(latencies, 0.50) / 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) / 1000, 3),
        "max_ms": round(percentile(latencies, 1.0) / 1000, 3),
        "server_cpu_pct": round(cpu / wall * 100, 1) if wall else 0.0,
    }


def median_of(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The run whose throughput is the median (figures stay from one real run)."""
    ordered = sorted(runs, key=lambda r: r["msgs_per_s"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["runs_msgs_per_s"] = [r["msgs_per_s"] for r in runs]
    return chosen


# ---------------------------------------------------------------- workloads

def workload_pairs(args, server: Server) -> List[Dict[str, Any]]:
    rows = []
    for n in args.clients:
        messages = args.messages or default_messages(n)
        runs = [run_load(server, n, messages, args.window, args.size,
                         workers=args.workers, label=f"pairs n={n} run {i + 1}",
                         show=args.progress, prefix=f"p{n}r{i}u")
                for i in range(args.repeat)]
        row = median_of(runs)
        row["workload"] = "pairs"
        rows.append(row)
    return rows


def default_messages(clients: int) -> int:
    """Messages per client: about 40,000 in all, and never fewer than 100 each."""
    return max(100, 40_000 // clients)


def workload_open(args, server: Server) -> List[Dict[str, Any]]:
    n = args.clients[0]
    messages = max(1, int(args.rate * args.seconds / n))
    runs = [run_load(server, n, messages, args.window, args.size, rate=args.rate,
                     workers=args.workers, label=f"open {args.rate:g}/s run {i + 1}",
                     show=args.progress, prefix=f"o{n}r{i}u") for i in range(args.repeat)]
    row = sorted(runs, key=lambda r: r["p99_ms"])[len(runs) // 2]
    row["workload"] = "open"
    return [row]


def workload_unloaded(args, server: Server) -> List[Dict[str, Any]]:
    runs = [run_load(server, 2, args.messages_unloaded, 1, args.size, workers=2,
                     label=f"unloaded run {i + 1}", show=args.progress, prefix=f"w1r{i}u")
            for i in range(args.repeat)]
    row = sorted(runs, key=lambda r: r["p50_ms"])[len(runs) // 2]
    row["workload"] = "unloaded (window 1)"
    return [row]


def workload_idle(args, server: Server) -> List[Dict[str, Any]]:
    n = args.clients[-1]
    names = [f"idle{i}" for i in range(n)]
    sign_up(server.address, names)
    before = server.memory_mb("VmRSS")
    socks = []
    for i, name in enumerate(names):
        sock = socket.create_connection(server.address, timeout=60)
        sock.sendall(p.encode_request("login", 1, username=name, password=PASSWORD))
        socks.append(sock)
        if args.progress and i % 50 == 0:
            sys.stderr.write(f"\ridle: {i + 1}/{n} logged in")
    time.sleep(2.0)
    for sock in socks:  # read the replies and presence events, as a client would
        sock.setblocking(False)
        try:
            while sock.recv(1 << 16):
                pass
        except (BlockingIOError, OSError):
            pass
    time.sleep(1.0)
    row = {"workload": "idle", "clients": n, "server_rss_mb": round(server.memory_mb("VmRSS"), 1),
           "server_rss_before_mb": round(before, 1),
           "server_peak_rss_mb": round(server.memory_mb("VmHWM"), 1)}
    for sock in socks:
        sock.close()
    if args.progress:
        sys.stderr.write("\r" + " " * 40 + "\r")
    return [row]


def preload(db: Path, count: int, show: bool) -> None:
    """Write ``count`` messages straight through the store (not over the wire)."""
    from .auth import HashParams, hash_password
    from .store import Store
    store = Store(db)
    try:
        users = [f"h{i}" for i in range(10)]
        stored_hash = hash_password(PASSWORD, HashParams.from_cost(BENCH_HASH_COST))
        for name in users:
            if store.canonical_name(name) is None:
                store.add_user(name, stored_hash)
        last = 0
        for i in range(count):
            last, _ = store.append_message(users[i % 10], users[(i + 1) % 10],
                                           f"preloaded message {i} " + "y" * 60)
            if i % 50_000 == 0:
                store.wait_durable(last)
                if show:
                    sys.stderr.write(f"\rpreloading {i:,}/{count:,}")
        if last:
            store.wait_durable(last)
    finally:
        store.close()
    if show:
        sys.stderr.write("\r" + " " * 40 + "\r")


def history_latency_ms(address, samples: int = 200, user: str = "h0") -> Tuple[float, float]:
    line = Line(address)
    expect_ok(line.call("login", username=user, password=PASSWORD), "login")
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        reply = line.call("history", limit=100)
        times.append(time.perf_counter() - t0)
        if not reply.get("ok") or not reply["messages"]:
            raise RuntimeError(f"history failed: {str(reply)[:200]}")
    line.close()
    times.sort()
    return statistics.median(times) * 1000, times[int(0.99 * len(times))] * 1000


def workload_history(args, _server: Optional[Server]) -> List[Dict[str, Any]]:
    rows = []
    base_rate = None
    for count in args.preload:
        db = Path(tempfile.mkdtemp(prefix="chat-bench-hist-"))
        try:
            t0 = time.perf_counter()
            preload(db, count, args.progress)
            preload_s = time.perf_counter() - t0
            server = Server(db=db)
            try:
                p50, p99 = history_latency_ms(server.address)
                load = run_load(server, 2, args.messages or default_messages(2), args.window,
                                args.size, workers=2,
                                label=f"send with {count:,} stored", show=args.progress,
                                prefix="hs")
            finally:
                server.stop()
            if base_rate is None:
                base_rate = load["msgs_per_s"]
            rows.append({"workload": "history", "stored": count,
                         "preload_s": round(preload_s, 1),
                         "start_s": round(server.start_seconds, 2),
                         "history100_p50_ms": round(p50, 3), "history100_p99_ms": round(p99, 3),
                         "msgs_per_s": load["msgs_per_s"],
                         "vs_first": round(load["msgs_per_s"] / base_rate, 2)})
        finally:
            shutil.rmtree(db, ignore_errors=True)
    return rows


# ---------------------------------------------------------------- store growth (issue 8)

#: Preloaded accounts are a0, a1, ...; the measured sign-ups s0, s1, ... No two
#: of these names fold to one look-alike skeleton (protocol.name_skeleton).
ACCOUNT_PREFIX = "a"
SIGNUP_PREFIX = "s"
#: Senders and recipients of the rss workload's preloaded messages.
RSS_PREFIX = "m"


def expect_ok(reply: dict, what: str) -> dict:
    if not reply.get("ok"):
        raise RuntimeError(f"{what} failed: {str(reply)[:300]}")
    return reply


def bench_hash() -> str:
    """One stored hash of PASSWORD at the benchmark's cost, shared by every preloaded
    account: the server verifies it at login like any other, and it needs no rehash
    (same parameters as the server's ``--hash-cost``)."""
    from .auth import HashParams, hash_password
    return hash_password(PASSWORD, HashParams.from_cost(BENCH_HASH_COST))


def _add_accounts_in_one_write(store: Any, names: List[str], stored_hash: str) -> bool:
    """The whole-document store's fast path: every account in one users.json write.

    That store (the one before the issue 8 rewrite) rewrites users.json whole
    on every ``add_user``, so N calls cost O(N²): 100,000 accounts would take
    hours. Its own ``_commit_doc(update=...)`` writes the document with a batch
    of accounts in one go, in its own format. Taken only when the store has
    that method; False otherwise, and the caller uses ``add_user``. Either way
    the accounts are then checked through the public API and the server's
    ready line.
    """
    commit = getattr(store, "_commit_doc", None)
    if commit is None or not isinstance(getattr(store, "_accounts", None), dict):
        return False
    try:
        if "update" not in inspect.signature(commit).parameters:
            return False
    except (TypeError, ValueError):
        return False
    created = time.time()

    def add(accounts: Dict[str, dict]) -> None:
        for name in names:
            key = p.user_key(name)
            if key in accounts:
                raise p.ChatError(p.USERNAME_TAKEN, f"the name {name!r} is taken")
            accounts[key] = {"name": name, "hash": stored_hash, "created": created}

    commit(update=add)
    return True


def _add_accounts_one_by_one(store: Any, names: List[str], stored_hash: str,
                             show: bool, threads: int = 16) -> None:
    """``Store.add_user`` for each name, from a few threads (a store that group-commits
    account changes shares its fsyncs among them)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(threads) as pool:
        for i, _ in enumerate(pool.map(lambda n: store.add_user(n, stored_hash), names,
                                       chunksize=64)):
            if show and i % 5000 == 0:
                sys.stderr.write(f"\rpreloading accounts {i:,}/{len(names):,}")


def preload_accounts(db: Path, count: int, messages: int, show: bool,
                     bulk: bool = True) -> str:
    """``count`` accounts a0.. (one shared cheap hash) and ``messages`` messages a0 -> a1
    (for a1's read marker to move over), straight through the store. Says how."""
    from .store import Store
    names = [f"{ACCOUNT_PREFIX}{i}" for i in range(count)]
    stored_hash = bench_hash()
    store = Store(db)
    try:
        if bulk and _add_accounts_in_one_write(store, names, stored_hash):
            method = "one users.json write (the whole-document store's _commit_doc)"
        else:
            _add_accounts_one_by_one(store, names, stored_hash, show)
            method = "Store.add_user from 16 threads"
        for name in (names[0], names[-1]):
            if store.canonical_name(name) != name:
                raise RuntimeError(f"preloading accounts: {name} is not there ({method})")
        last = 0
        for i in range(messages):
            last, _ = store.append_message(names[0], names[1], f"something to read {i}")
        if last:
            store.wait_durable(last)
    finally:
        store.close()
    if show:
        sys.stderr.write("\r" + " " * 50 + "\r")
    return method


def _p(values: List[float], q: float) -> float:
    """The q-quantile of seconds, in ms (nearest rank, no interpolation)."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def _check_counts(server: Server, users: Optional[int], messages: Optional[int]) -> None:
    """The ready line's counts, when it has them, must be what was preloaded."""
    if users is not None and server.users is not None and server.users != users:
        raise RuntimeError(f"the server loaded {server.users} users, not {users}")
    if messages is not None and server.messages is not None and server.messages != messages:
        raise RuntimeError(f"the server loaded {server.messages} messages, not {messages}")


def growth_run(db: Path, count: int, samples: int, seed: int) -> Dict[str, Any]:
    """One server on a copy of the preloaded folder: start, then timed sign-ups, logins
    and marker moves, one request at a time (each sign-up on a new connection, whose
    connect is not timed; the logins and moves on one)."""
    rng = random.Random(seed)
    server = Server(db=db)
    try:
        _check_counts(server, count, samples)
        rss = server.memory_mb("VmRSS")
        signup, login, read = [], [], []
        for i in range(samples):   # nobody is logged in: no signup events to fan out
            # a fresh connection each (not timed): a logged-out one is closed after
            # --login-timeout, which 200 slow sign-ups can outlast
            line = Line(server.address)
            t0 = time.perf_counter()
            reply = line.call("signup", username=f"{SIGNUP_PREFIX}{i}", password=PASSWORD)
            signup.append(time.perf_counter() - t0)
            expect_ok(reply, "signup")
            line.close()
        line = Line(server.address)
        for _ in range(samples):   # existing accounts, spread over all of them
            name = f"{ACCOUNT_PREFIX}{rng.randrange(count)}"
            t0 = time.perf_counter()
            reply = line.call("login", username=name, password=PASSWORD)
            login.append(time.perf_counter() - t0)
            expect_ok(reply, "login " + name)
            expect_ok(line.call("logout"), "logout")
        expect_ok(line.call("login", username=f"{ACCOUNT_PREFIX}1", password=PASSWORD), "login")
        for upto in range(1, samples + 1):   # every one moves a1's marker for a0 forward
            t0 = time.perf_counter()
            reply = line.call("read", **{"with": f"{ACCOUNT_PREFIX}0", "upto": upto})
            read.append(time.perf_counter() - t0)
            expect_ok(reply, "read")
        line.close()
    finally:
        server.stop()
    return {"start_s": server.start_seconds, "rss_mb": rss,
            "signup_p50_ms": _p(signup, 0.5), "signup_p90_ms": _p(signup, 0.9),
            "login_p50_ms": _p(login, 0.5), "login_p90_ms": _p(login, 0.9),
            "read_p50_ms": _p(read, 0.5), "read_p90_ms": _p(read, 0.9)}


def _median_row(runs: List[Dict[str, float]], digits: Dict[str, int],
                listed: Tuple[str, ...]) -> Dict[str, Any]:
    """Each figure's median over the runs (figures of one row may come from different
    runs), with the runs of the ``listed`` figures kept."""
    row: Dict[str, Any] = {key: round(statistics.median(r[key] for r in runs), digits[key])
                           for key in digits}
    for key in listed:
        row["runs_" + key] = [round(r[key], digits[key]) for r in runs]
    return row


def workload_growth(args) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    digits = {"start_s": 3, "rss_mb": 1, "signup_p50_ms": 3, "signup_p90_ms": 3,
              "login_p50_ms": 3, "login_p90_ms": 3, "read_p50_ms": 3, "read_p90_ms": 3}
    for count in args.accounts:
        work = Path(tempfile.mkdtemp(prefix="chat-bench-growth-"))
        try:
            t0 = time.perf_counter()
            method = preload_accounts(work / "preloaded", count, args.samples, args.progress)
            preload_s = time.perf_counter() - t0
            runs = []
            for i in range(args.repeat):   # each run on a fresh copy: same start every time
                db = work / f"run{i}"
                shutil.copytree(work / "preloaded", db)
                try:
                    runs.append(growth_run(db, count, args.samples, seed=i))
                finally:
                    shutil.rmtree(db, ignore_errors=True)
                if args.progress:
                    sys.stderr.write(f"\rgrowth {count:,} accounts: run {i + 1}/{args.repeat}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        row = {"workload": "growth", "accounts": count, "samples": args.samples,
               "repeat": args.repeat, "preload_s": round(preload_s, 2),
               "preload_method": method}
        row.update(_median_row(runs, digits, ("start_s", "signup_p50_ms", "login_p50_ms",
                                              "read_p50_ms")))
        rows.append(row)
    if args.progress:
        sys.stderr.write("\r" + " " * 50 + "\r")
    first = rows[0]
    for row in rows:
        for op in ("signup", "login", "read"):
            base = first[f"{op}_p50_ms"]
            row[f"{op}_vs_first"] = round(row[f"{op}_p50_ms"] / base, 2) if base else None
    return rows


def preload_messages(db: Path, count: int, users: int, size: int, show: bool) -> None:
    """``users`` accounts m0.. and ``count`` messages of ``size`` characters among them,
    straight through the store (user i writes to user i+1, round the ring)."""
    from .store import Store
    names = [f"{RSS_PREFIX}{i}" for i in range(users)]
    stored_hash = bench_hash()
    store = Store(db)
    try:
        for name in names:
            store.add_user(name, stored_hash)
        append, wait = store.append_message, store.wait_durable
        tail = "y" * max(0, size - 10)     # "%09d " + tail: exactly ``size`` characters
        pairs = [(names[i], names[(i + 1) % users]) for i in range(users)]
        last = 0
        for start in range(0, count, 100_000):   # bounded batches of pending lines
            for i in range(start, min(count, start + 100_000)):
                sender, to = pairs[i % users]
                last, _ = append(sender, to, f"{i:09d} {tail}")
            wait(last)
            if show:
                sys.stderr.write(f"\rpreloading messages {last:,}/{count:,}")
    finally:
        store.close()
    if show:
        sys.stderr.write("\r" + " " * 50 + "\r")


def _folder_mb(db: Path) -> float:
    return sum(f.stat().st_size for f in db.rglob("*") if f.is_file()) / 2 ** 20


def rss_run(db: Path, count: int, users: int, samples: int) -> Dict[str, float]:
    server = Server(db=db)
    try:
        _check_counts(server, users, count)
        rss, hwm = server.memory_mb("VmRSS"), server.memory_mb("VmHWM")
        p50, p99 = history_latency_ms(server.address, samples, user=f"{RSS_PREFIX}0")
        after = server.memory_mb("VmRSS")
    finally:
        server.stop()
    return {"start_s": server.start_seconds, "rss_mb": rss, "hwm_mb": hwm,
            "rss_after_history_mb": after, "history100_p50_ms": p50, "history100_p99_ms": p99}


def workload_rss(args) -> List[Dict[str, Any]]:
    rows = []
    digits = {"start_s": 3, "rss_mb": 1, "hwm_mb": 1, "rss_after_history_mb": 1,
              "history100_p50_ms": 3, "history100_p99_ms": 3}
    for count in args.preload:
        work = Path(tempfile.mkdtemp(prefix="chat-bench-rss-"))
        try:
            t0 = time.perf_counter()
            preload_messages(work / "preloaded", count, args.users, args.size, args.progress)
            preload_s = time.perf_counter() - t0
            folder_mb = _folder_mb(work / "preloaded")
            runs = []
            for i in range(args.repeat):
                db = work / f"run{i}"
                shutil.copytree(work / "preloaded", db)
                try:
                    runs.append(rss_run(db, count, args.users, args.samples))
                finally:
                    shutil.rmtree(db, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        row = {"workload": "rss", "stored": count, "users": args.users, "size": args.size,
               "repeat": args.repeat, "preload_s": round(preload_s, 1),
               "folder_mb": round(folder_mb, 1)}
        row.update(_median_row(runs, digits, ("start_s", "rss_mb")))
        rows.append(row)
    return rows


# ---------------------------------------------------------------- rooms (issue 9)

#: Room members are rm<M>r<run>u<i>; their rooms #rm<M>r<run>n<j>.
ROOMS_PREFIX = "rm"
#: The two ways the same deliveries are made in one run: room messages, and the
#: DMs that reach the same recipients (one per recipient).
ROOM, DM = "room", "dm"
#: A phase that makes no progress for this long is a failure, not a slow run.
ROOMS_STALL_S = 60.0


def _rooms_send_frame(req_id: int, to: str, text: str) -> bytes:
    """``encode_request("send", req_id, to=to, text=text)`` for the benchmark's own names
    and texts (digits, a space and ``x``: nothing to escape), built without json."""
    return f'{{"op":"send","id":{req_id},"to":"{to}","text":"{text}"}}\n'.encode("ascii")


def _rooms_login_all(address, specs) -> List[Dict[str, Any]]:
    conns = []
    for spec in specs:
        sock = socket.create_connection(address, timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(p.encode_request("login", 0, username=spec["name"], password=PASSWORD))
        conns.append(dict(spec, sock=sock, dec=p.FrameDecoder(64 * 1024 * 1024),
                          out=bytearray(), writing=False))
    for c in conns:  # every login answered before the clock starts
        buf = b""
        while b'"id":0,' not in buf:
            chunk = c["sock"].recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"login of {c['name']} refused")
            buf += chunk
        reply = buf.split(b'"id":0,', 1)[1]
        if b'"ok":false' in reply[:20]:
            raise ConnectionError(f"login of {c['name']} refused: {buf[-200:]!r}")
        if b"\n" in reply:   # keep the decoder on a line boundary; what came is not counted
            c["dec"].feed(reply.split(b"\n", 1)[1])
        c["sock"].setblocking(False)
    return conns


def _rooms_phase(sel, conns, kind: str, messages: int, window: int, pad: str,
                 progress) -> Dict[str, Any]:
    """One phase in one worker: every sender sends ``messages`` logical messages, as room
    messages or as bursts of one DM per other member; every connection counts its
    ``message`` events until it has what it expects and every sender has its acks."""
    for c in conns:
        c.update(sent=0, frames=0, acks=0, got=0, done=False)
        c["per_unit"] = 1 if kind == ROOM else len(c["peers"])
        c["targets"] = [c["room"]] if kind == ROOM else c["peers"]
    result: Dict[str, Any] = {"kind": kind, "latencies_us": []}

    def fill(c, now_ns: int) -> None:
        if not c["sender"]:
            return
        while c["sent"] < messages and c["sent"] - c["acks"] // c["per_unit"] < window:
            c["sent"] += 1
            text = f"{now_ns} {pad}"
            for to in c["targets"]:
                c["frames"] += 1
                c["out"] += _rooms_send_frame(c["frames"], to, text)

    flush = functools.partial(_send_and_watch, sel)

    def finished(c) -> bool:
        return (c["got"] >= c["expect"]
                and (not c["sender"] or c["acks"] >= messages * c["per_unit"]))

    cpu0, start = _start_sending(conns, fill, flush)
    done = 0
    for c in conns:
        if finished(c):
            c["done"] = True
            done += 1
    last_data = start
    ticker = _Ticker(progress, ROOMS_STALL_S, start, f"{kind} phase: ",
                     ("name", "got", "expect", "acks"))
    latencies = result["latencies_us"]
    while done < len(conns):
        for c, data, now_ns in _arrivals(sel, flush):
            last_data = time.monotonic()
            for line in c["dec"].feed(data):
                c["got"] += _count_chat_frame(c, line, now_ns, latencies)
            fill(c, now_ns)
            flush(c)
            if not c["done"] and finished(c):
                c["done"] = True
                done += 1
        ticker.tick(conns, last_data)
    result["seconds"] = time.monotonic() - start
    cpu1 = os.times()
    result["cpu_seconds"] = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    result["delivered"] = sum(c["got"] for c in conns)
    result["unexpected"] = sum(max(0, c["got"] - c["expect"]) for c in conns)
    result["frames"] = sum(c["frames"] for c in conns)
    result["logical"] = sum(c["sent"] for c in conns)
    ticker.finish(result["delivered"])
    return result


def _rooms_worker(address, specs, phases, messages: int, window: int, size: int,
                  ready, gos, results, progress) -> None:
    """One process: its share of the members on one selectors loop, through each phase
    in turn (the parent reads the server's CPU between phases)."""
    try:
        conns = _rooms_login_all(address, specs)
        sel = selectors.DefaultSelector()
        for c in conns:
            sel.register(c["sock"], selectors.EVENT_READ, c)
    except Exception as exc:  # the parent waits on ready: tell it
        ready.put(f"{type(exc).__name__}: {exc}")
        return
    ready.put(len(conns))
    pad = "x" * max(0, size - 20)
    for kind, go in zip(phases, gos):
        go.wait()
        try:
            results.put(_rooms_phase(sel, conns, kind, messages, window, pad, progress))
        except Exception as exc:
            results.put({"kind": kind, "error": f"{type(exc).__name__}: {exc}"})
            return
    for c in conns:
        c["sock"].close()


def rooms_setup(address, rooms: List[Tuple[str, List[str]]]) -> None:
    """Sign the members up, then on one connection, for each member in turn: log in,
    create its room (the first member) or join it, log out. Membership outlasts the
    logout; nobody else is logged in yet, so no event fans out. Against a server that
    already has the rooms (a rerun with --host), taken rooms are joined."""
    sign_up(address, [name for _, members in rooms for name in members])
    line = Line(address)
    try:
        if line.hello.get("protocol", 1) < 2:
            reply = line.call("room_create", room="#probe")
            raise RuntimeError(
                f"this server has no rooms: its hello says protocol "
                f"{line.hello.get('protocol')} (rooms are protocol 2), and room_create "
                f"answers {str(reply.get('error', reply))[:120]}")
        for room, members in rooms:
            for i, name in enumerate(members):
                expect_ok(line.call("login", username=name, password=PASSWORD), "login " + name)
                if i == 0:
                    reply = line.call("room_create", room=room)
                    if reply.get("error", {}).get("code") == p.ROOM_TAKEN:
                        reply = line.call("join", room=room)
                    expect_ok(reply, f"room_create {room}")
                else:
                    expect_ok(line.call("join", room=room), f"{name}: join {room}")
                expect_ok(line.call("logout"), "logout")
    finally:
        line.close()


def run_rooms(server: Server, members: int, rooms: int, senders: int, messages: int,
              window: int, size: int, workers: int = 2, order: Tuple[str, ...] = (ROOM, DM),
              show: bool = True, prefix: str = "rm") -> Dict[str, Dict[str, Any]]:
    """One measured run: set up ``rooms`` rooms of ``members`` members, log every member
    in, then run the phases in ``order`` on the same connections: ROOM, the first
    ``senders`` members of each room send ``messages`` room messages each; DM, they send
    the same messages as DMs, one to each other member of their room. The server's CPU is
    read around each phase. Returns each phase's figures by kind."""
    groups = [(f"#{prefix}n{r}", [f"{prefix}u{r * members + i}" for i in range(members)])
              for r in range(rooms)]
    rooms_setup(server.address, groups)
    specs = []
    for room, group in groups:
        for i, name in enumerate(group):
            sender = i < senders
            specs.append({"name": name, "room": room, "sender": sender,
                          "peers": [n for n in group if n != name],
                          "expect": (senders - sender) * messages})
    workers = max(1, min(workers, len(specs)))
    ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
    ready, results, progress = ctx.Queue(), ctx.Queue(), ctx.Queue()
    gos = [ctx.Event() for _ in order]
    procs = [ctx.Process(target=_rooms_worker,
                         args=(server.address, specs[w::workers], list(order), messages,
                               window, size, ready, gos, results, progress), daemon=True)
             for w in range(workers)]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            got = ready.get(timeout=300)
            if isinstance(got, str):
                raise RuntimeError("a load worker could not log in: " + got)
        expected = rooms * senders * messages * (members - 1)
        phases: Dict[str, Dict[str, Any]] = {}
        for kind, go in zip(order, gos):
            bar = Progress(f"rooms m={members} {kind}", expected, show)
            cpu0, wall0 = server.cpu_seconds(), time.monotonic()
            go.set()
            collected = collect_results(procs, results, progress, bar,
                                        what=f"rooms {kind} phase")
            wall = time.monotonic() - wall0
            cpu = server.cpu_seconds() - cpu0
            bar.finish()
            phases[kind] = _rooms_figures(collected, kind, cpu, wall, server, members,
                                          expected, own_server=server.proc is not None)
    finally:
        for go in gos:   # let a waiting worker run out rather than hang
            go.set()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
    return phases


def _rooms_figures(collected: List[dict], kind: str, cpu: float, wall: float, server: Server,
                   members: int, expected: int, own_server: bool) -> Dict[str, Any]:
    latencies = [v for r in collected for v in r["latencies_us"]]
    delivered = sum(r["delivered"] for r in collected)
    frames = sum(r["frames"] for r in collected)        # send requests: room messages or DMs
    logical = sum(r["logical"] for r in collected)      # room messages, or bursts of DMs
    seconds = max(r["seconds"] for r in collected)
    def per(n: int) -> Optional[float]:
        return round(cpu / n * 1e6, 2) if own_server and n else None
    return {
        "kind": kind, "sent": frames, "messages": logical, "deliveries": delivered,
        "expected_deliveries": expected,
        "unexpected_deliveries": sum(r["unexpected"] for r in collected),
        "seconds": round(seconds, 3),
        "sent_per_s": round(frames / seconds, 1) if seconds else 0.0,
        "deliveries_per_s": round(delivered / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentile(latencies, 0.50) / 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) / 1000, 3),
        "max_ms": round(percentile(latencies, 1.0) / 1000, 3),
        "server_cpu_s": round(cpu, 3) if own_server else None,
        "server_cpu_pct": round(cpu / wall * 100, 1) if own_server and wall else None,
        "cpu_us_per_delivery": per(delivered),
        "cpu_us_per_sent": per(frames),
        # per room message, or per burst of members-1 DMs: the same deliveries either way
        "cpu_us_per_message": per(logical),
        "server_peak_rss_mb": round(server.memory_mb("VmHWM"), 1),
        "generator_cpu_pct": round(sum(r["cpu_seconds"] for r in collected) / wall * 100, 1)
        if wall else 0.0,
    }


def default_room_messages(members: int, rooms: int, senders: int) -> int:
    """Messages per sender: about 500,000 deliveries per phase (a room phase then lasts
    about a second, long enough for the server CPU read in 10 ms ticks), at least 20."""
    return max(20, -(-500_000 // (rooms * senders * (members - 1))))


def _median_figures(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Each numeric figure's median over the runs (figures may come from different runs)."""
    out: Dict[str, Any] = {}
    for key, value in runs[0].items():
        values = [r[key] for r in runs]
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and all(isinstance(v, (int, float)) for v in values):
            median = statistics.median(values)
            if all(isinstance(v, int) for v in values):   # counts stay counts
                out[key] = int(round(median))
            else:
                out[key] = round(median, 3)
        else:
            out[key] = value
    return out


def workload_rooms(args, server: Server) -> List[Dict[str, Any]]:
    rows = []
    for m in args.members:
        rooms = args.rooms or max(1, round(100 / m))
        senders = min(args.senders, m)
        messages = args.messages or default_room_messages(m, rooms, senders)
        runs = []
        for i in range(args.repeat):
            order = (ROOM, DM) if i % 2 == 0 else (DM, ROOM)   # neither always goes first
            runs.append(run_rooms(server, m, rooms, senders, messages, args.window, args.size,
                                  workers=args.workers, order=order, show=args.progress,
                                  prefix=f"{ROOMS_PREFIX}{m}r{i}"))
        ratios = []
        for run_ in runs:
            room_cost, dm_cost = run_[ROOM]["cpu_us_per_message"], run_[DM]["cpu_us_per_message"]
            ratios.append(round(room_cost / dm_cost, 3) if room_cost and dm_cost else None)
        known = [r for r in ratios if r is not None]
        rows.append({
            "workload": "rooms", "members": m, "rooms": rooms, "clients": m * rooms,
            "senders_per_room": senders, "messages_per_sender": messages,
            "deliveries_per_message": m - 1, "window": args.window, "size": args.size,
            "repeat": args.repeat,
            ROOM: _median_figures([r[ROOM] for r in runs]),
            DM: _median_figures([r[DM] for r in runs]),
            # server CPU of a room message / of the members-1 DMs that reach the same
            # recipients, each run's own ratio (both phases on one server, one after the other)
            "room_vs_dm_cpu": round(statistics.median(known), 3) if known else None,
            "runs_room_vs_dm_cpu": ratios,
            "runs_room_deliveries_per_s": [r[ROOM]["deliveries_per_s"] for r in runs],
            "runs_dm_deliveries_per_s": [r[DM]["deliveries_per_s"] for r in runs],
            "runs_room_cpu_us_per_message": [r[ROOM]["cpu_us_per_message"] for r in runs],
            "runs_dm_cpu_us_per_message": [r[DM]["cpu_us_per_message"] for r in runs],
        })
    return rows


def print_rooms(rows: List[Dict[str, Any]]) -> None:
    for r in rows:
        n = r["deliveries_per_message"]
        senders = r["senders_per_room"]
        print(f"\n  rooms: {r['rooms']} room(s) of {r['members']} members ({r['clients']} "
              f"clients), {senders} sender{'s' if senders > 1 else ''} per room, "
              f"{r['messages_per_sender']:,} messages each, window {r['window']}, "
              f"{r['size']} chars; median of {r['repeat']} run(s)")
        print(f"  {'sent as':<16}{'sent/s':>10}{'deliveries/s':>14}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'max ms':>9}{'srv CPU':>9}{'µs/delivery':>13}{'µs/sent':>9}{'gen CPU':>9}")
        for kind, label in ((ROOM, "room messages"), (DM, f"DMs ({n} each)")):
            f = r[kind]
            cpu_pct = f"{f['server_cpu_pct']:.0f}%" if f["server_cpu_pct"] is not None else "-"
            per_d = (f"{f['cpu_us_per_delivery']:.2f}" if f["cpu_us_per_delivery"] is not None
                     else "-")
            per_s = f"{f['cpu_us_per_sent']:.1f}" if f["cpu_us_per_sent"] is not None else "-"
            print(f"  {label:<16}{f['sent_per_s']:>10,.0f}{f['deliveries_per_s']:>14,.0f}"
                  f"{f['p50_ms']:>9.2f}{f['p99_ms']:>9.2f}{f['max_ms']:>9.1f}{cpu_pct:>9}"
                  f"{per_d:>13}{per_s:>9}{f['generator_cpu_pct']:>8.0f}%")
        for kind in (ROOM, DM):
            f = r[kind]
            if f["deliveries"] != f["expected_deliveries"] or f["unexpected_deliveries"]:
                print(f"  note: {kind}: {f['deliveries']:,} deliveries counted, "
                      f"{f['expected_deliveries']:,} expected "
                      f"({f['unexpected_deliveries']:,} beyond what a member expected)")
        if r["room_vs_dm_cpu"] is not None:
            room, dm = r[ROOM]["cpu_us_per_message"], r[DM]["cpu_us_per_message"]
            print(f"  server CPU: a room message to {r['members']} members ({n} deliveries) "
                  f"costs {room:,.0f} µs against {dm:,.0f} µs for the {n} DMs that reach the "
                  f"same recipients: room/DMs = {r['room_vs_dm_cpu']:.3f} "
                  f"(DMs {1 / r['room_vs_dm_cpu']:.1f}x the room)")
            print("  same-run room/DMs ratio per run: "
                  + " / ".join(f"{v:.3f}" if v is not None else "-"
                               for v in r["runs_room_vs_dm_cpu"]))
        else:
            print("  (server CPU unknown: a running server was benchmarked with --host)")


# ---------------------------------------------------------------- comparison targets (issue 10)

PARALLEL_CHAT, ASYNCIO_RELAY, MINIIRCD = "parallel-chat", "asyncio-relay", "miniircd"
#: Every target of ``compare``, in the order of its first round and of its table.
COMPARE_TARGETS = (PARALLEL_CHAT, ASYNCIO_RELAY, MINIIRCD)
RELAY_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "asyncio_relay.py"
#: An IRC line is at most 512 bytes with its CRLF: room for the prefix and the command.
IRC_MAX_SIZE = 400
#: A round that makes no progress for this long is a failure, not a slow run.
COMPARE_STALL_S = 60.0


def _listening_port(pid: int) -> Optional[int]:
    """The TCP port a process listens on, from /proc (Linux): its socket inodes,
    looked up among the listening sockets of /proc/net/tcp."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:   # 0A: LISTEN
                    return int(fields[1].rsplit(":", 1)[1], 16)
    except (OSError, IndexError, ValueError):
        pass
    return None


class MiniIrcd(Server):
    """miniircd (PyPI: a Python select-loop IRC server, no disk) as a subprocess bound to
    127.0.0.1 on port 0; it does not say which port the kernel gave it, so that is read
    from /proc. Its CPU and memory are read from /proc like the chat server's."""

    def __init__(self) -> None:
        super().__init__(host="127.0.0.1")       # no process yet, nothing to remove
        cmd = [sys.executable, "-m", "miniircd", "--listen", "127.0.0.1", "--ports", "0"]
        if hasattr(os, "getuid") and os.getuid() == 0:
            cmd += ["--setuid", "root"]          # it refuses to run as root without this
        started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True,
                                     preexec_fn=_die_with_parent)
        while time.perf_counter() - started < 30:
            if self.proc.poll() is not None:
                said = self.proc.stderr.read() if self.proc.stderr else ""
                raise RuntimeError("miniircd did not start: " + " ".join(cmd) + "\n"
                                   + said[-1000:])
            port = _listening_port(self.proc.pid)
            if port:
                self.address = ("127.0.0.1", port)
                self.start_seconds = time.perf_counter() - started
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("miniircd did not listen within 30 s (its port is read from "
                           "/proc: Linux only)")


def compare_targets(requested: Optional[List[str]]) -> Tuple[List[str], Dict[str, str]]:
    """The targets to run (those asked for, default all, in COMPARE_TARGETS order) and,
    for each one left out, why."""
    asked = requested or list(COMPARE_TARGETS)
    chosen, skipped = [t for t in COMPARE_TARGETS if t in asked], {}
    if ASYNCIO_RELAY in chosen and not RELAY_SCRIPT.is_file():
        skipped[ASYNCIO_RELAY] = (f"{RELAY_SCRIPT} not found (it is in the repository's "
                                  "scripts/, not in an installed package)")
    if MINIIRCD in chosen:
        try:
            ok = importlib.util.find_spec("miniircd") is not None and subprocess.run(
                [sys.executable, "-m", "miniircd", "--version"], capture_output=True,
                timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError, ValueError):
            ok = False
        if not ok:
            skipped[MINIIRCD] = "not installed (pip install miniircd)"
    return [t for t in chosen if t not in skipped], skipped


def start_target(target: str) -> Server:
    """A fresh server of that target, as a subprocess."""
    if target == PARALLEL_CHAT:
        return Server()
    if target == ASYNCIO_RELAY:
        return Server(cmd=[sys.executable, str(RELAY_SCRIPT), "--host", "127.0.0.1",
                           "--port", "0"])
    if target == MINIIRCD:
        return MiniIrcd()
    raise ValueError(f"unknown target {target!r}")


def _irc_register_all(address, names: List[str]) -> List[Dict[str, Any]]:
    """One IRC connection per name, registered (NICK, USER, until 001) one at a time:
    miniircd listens with a backlog of 5."""
    conns = []
    for name in names:
        sock = socket.create_connection(address, timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(f"NICK {name}\r\nUSER {name} 0 * :{name}\r\n".encode("ascii"))
        buf = b""
        while not (b" 001 " in buf and b"\n" in buf.split(b" 001 ", 1)[1]):
            chunk = sock.recv(1 << 16)
            if not chunk or b" 432 " in buf or b" 433 " in buf:
                raise ConnectionError(f"IRC registration of {name} refused: {buf[-300:]!r}")
            buf += chunk
        dec = p.FrameDecoder(64 * 1024 * 1024)
        dec.feed(buf.split(b" 001 ", 1)[1].split(b"\n", 1)[1])   # the rest: not counted
        sock.setblocking(False)
        conns.append({"name": name, "sock": sock, "dec": dec, "out": bytearray(),
                      "writing": False})
    return conns


def _compare_round(irc: bool, sel, conns, messages: int, window: int, pad: str,
                   progress) -> Dict[str, Any]:
    """The measured part in one worker: every client sends ``messages`` to its partner,
    at most ``window`` of them in flight (sent, not yet received by the partner), until
    every client has received its partner's (and, in chat, every ack)."""
    latencies: List[int] = []

    def fill(c, now_ns: int) -> None:
        partner = c["partner"]
        n = min(messages - c["sent"], window - (c["sent"] - partner["got"]))
        if n <= 0:
            return
        text = f"{now_ns} {pad}"
        if irc:
            c["out"] += f"PRIVMSG {partner['name']} :{text}\r\n".encode("ascii") * n
            c["sent"] += n
            return
        to, out = partner["name"], c["out"]
        for _ in range(n):
            c["sent"] += 1
            out += _rooms_send_frame(c["sent"], to, text)

    flush = functools.partial(_send_and_watch, sel)

    def finished(c) -> bool:
        return c["got"] >= messages and (irc or c["acks"] >= messages)

    cpu0, start = _start_sending(conns, fill, flush)
    done = sum(finished(c) for c in conns)   # -m 0: nothing to wait for
    for c in conns:
        c["done"] = finished(c)
    last_data = start
    ticker = _Ticker(progress, COMPARE_STALL_S, start, "", ("name", "sent", "got", "acks"))
    while done < len(conns):
        for c, data, now_ns in _arrivals(sel, flush):
            last_data = time.monotonic()
            got = 0
            for line in c["dec"].feed(data):
                if irc:
                    i = line.find(b" PRIVMSG ")
                    if i > 0:
                        got += 1
                        j = line.index(b" :", i) + 2
                        latencies.append((now_ns - int(line[j:line.index(b" ", j)])) // 1000)
                    elif line.startswith(b"PING"):
                        c["out"] += b"PONG" + line[4:].rstrip(b"\r") + b"\r\n"
                    elif line.startswith(b"ERROR"):
                        raise ConnectionError(f"{c['name']}: {line[:200].decode(errors='replace')}")
                else:
                    got += _count_chat_frame(c, line, now_ns, latencies)
            if got:
                c["got"] += got
                fill(c["partner"], now_ns)     # its messages in flight just arrived
                flush(c["partner"])
            flush(c)
            if not c["done"] and finished(c):
                c["done"] = True
                done += 1
        ticker.tick(conns, last_data)
    seconds = time.monotonic() - start
    cpu1 = os.times()
    delivered = sum(c["got"] for c in conns)
    ticker.finish(delivered)
    return {"seconds": seconds, "delivered": delivered, "latencies_us": latencies,
            "acks": sum(c["acks"] for c in conns),
            "cpu_seconds": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)}


def _compare_worker(irc: bool, address, pairs: List[Tuple[str, str]], messages: int,
                    window: int, size: int, ready, go, results, progress) -> None:
    """One process: whole pairs (both members here, so each knows when its partner has
    received a message), on one selectors loop."""
    conns: List[Dict[str, Any]] = []
    try:
        names = [name for pair in pairs for name in pair]
        if irc:
            conns = _irc_register_all(address, names)
        else:
            conns = _rooms_login_all(address, [{"name": n} for n in names])
        sel = selectors.DefaultSelector()
        for i, c in enumerate(conns):
            c.update(partner=conns[i ^ 1], sent=0, got=0, acks=0, done=False)
            sel.register(c["sock"], selectors.EVENT_READ, c)
    except Exception as exc:  # the parent waits on ready: tell it
        ready.put(f"{type(exc).__name__}: {exc}")
        return
    ready.put(len(conns))
    go.wait()
    try:
        results.put(_compare_round(irc, sel, conns, messages, window,
                                   "x" * max(0, size - 20), progress))
    except Exception as exc:
        results.put({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        for c in conns:
            c["sock"].close()


def run_compare(target: str, clients: int, messages: int, window: int, size: int,
                workers: int = 2, label: str = "", show: bool = True) -> Dict[str, Any]:
    """One measured run against a fresh server of ``target``, stopped afterwards."""
    clients += clients % 2
    irc = target == MINIIRCD
    ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
    ready, results, progress = ctx.Queue(), ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    server = start_target(target)
    procs: List[Any] = []
    try:
        names = [f"c{i}" for i in range(clients)]
        if not irc:
            sign_up(server.address, names)
        pairs = [(names[i], names[i + 1]) for i in range(0, clients, 2)]
        workers = max(1, min(workers, len(pairs)))
        procs = [ctx.Process(target=_compare_worker,
                             args=(irc, server.address, pairs[w::workers], messages, window,
                                   size, ready, go, results, progress), daemon=True)
                 for w in range(workers)]
        for proc in procs:
            proc.start()
        for _ in procs:
            got = ready.get(timeout=300)
            if isinstance(got, str):
                raise RuntimeError(f"{target}: a load worker could not connect: {got}")
        bar = Progress(label or f"{target} n={clients}", clients * messages, show)
        cpu0, wall0 = server.cpu_seconds(), time.monotonic()
        go.set()
        collected = collect_results(procs, results, progress, bar, what=target)
        wall = time.monotonic() - wall0
        cpu = server.cpu_seconds() - cpu0
        bar.finish()
        rss = server.memory_mb("VmHWM")
    finally:
        go.set()   # let a waiting worker run out rather than hang
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
        server.stop()
    latencies = [v for r in collected for v in r["latencies_us"]]
    delivered = sum(r["delivered"] for r in collected)
    seconds = max(r["seconds"] for r in collected)
    return {
        "target": target, "delivered": delivered, "expected": clients * messages,
        "acks": None if irc else sum(r["acks"] for r in collected),
        **_rate_and_latency(delivered, seconds, latencies, cpu, wall),
        "server_cpu_us_per_msg": round(cpu / delivered * 1e6, 2) if delivered else None,
        "server_peak_rss_mb": round(rss, 1),
        "server_start_s": round(server.start_seconds, 3),
        "generator_cpu_pct": round(sum(r["cpu_seconds"] for r in collected) / wall * 100, 1)
        if wall else 0.0,
    }


def workload_compare(args) -> List[Dict[str, Any]]:
    targets, skipped = compare_targets(args.targets)
    rows = []
    for n in args.clients:
        n += n % 2
        messages = args.messages or default_messages(n)
        runs: Dict[str, List[Dict[str, Any]]] = {t: [] for t in targets}
        orders = []
        for i in range(args.repeat):      # round i starts i targets further on
            order = targets[i % len(targets):] + targets[:i % len(targets)] if targets else []
            orders.append(order)
            for target in order:
                runs[target].append(run_compare(
                    target, n, messages, args.window, args.size, workers=args.workers,
                    label=f"{target} n={n} round {i + 1}", show=args.progress))
        row: Dict[str, Any] = {
            "workload": "compare", "clients": n, "messages_per_client": messages,
            "window": args.window, "size": args.size, "repeat": args.repeat,
            "workers": args.workers, "orders": orders, "skipped": skipped,
            "targets": {}, "ratio_to_parallel_chat": {}, "runs_ratio_to_parallel_chat": {},
            "parallel_chat_vs": {}}
        for target in targets:
            figures = _median_figures(runs[target])
            figures["runs_msgs_per_s"] = [r["msgs_per_s"] for r in runs[target]]
            row["targets"][target] = figures
        if PARALLEL_CHAT in runs:   # each round's own ratio, then their median
            base = [r["msgs_per_s"] for r in runs[PARALLEL_CHAT]]
            for target in targets:
                ratios = [round(r["msgs_per_s"] / b, 3) if b else None
                          for r, b in zip(runs[target], base)]
                inverse = [round(b / r["msgs_per_s"], 3) if r["msgs_per_s"] else None
                           for r, b in zip(runs[target], base)]
                known = [x for x in ratios if x is not None]
                known_inverse = [x for x in inverse if x is not None]
                row["runs_ratio_to_parallel_chat"][target] = ratios
                row["ratio_to_parallel_chat"][target] = (
                    round(statistics.median(known), 3) if known else None)
                row["parallel_chat_vs"][target] = (
                    round(statistics.median(known_inverse), 3) if known_inverse else None)
        rows.append(row)
    return rows


def print_compare(rows: List[Dict[str, Any]]) -> None:
    for r in rows:
        print(f"\n  compare: {r['clients']} clients in pairs, {r['messages_per_client']:,} "
              f"messages each, window {r['window']} (in flight until the partner has "
              f"received it), {r['size']} chars; a fresh server per target and round, "
              f"rounds interleaved; median of {r['repeat']} round(s)")
        print(f"  {'target':<16}{'msg/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
              f"{'srv CPU':>9}{'srv µs/msg':>11}{'srv RSS':>9}{'gen CPU':>9}"
              f"{'vs parallel-chat':>18}")
        for target, f in r["targets"].items():
            ratio = r["ratio_to_parallel_chat"].get(target)
            print(f"  {target:<16}{f['msgs_per_s']:>10,.0f}{f['p50_ms']:>9.2f}"
                  f"{f['p99_ms']:>9.2f}{f['max_ms']:>9.1f}{f['server_cpu_pct']:>8.0f}%"
                  f"{_us(f['server_cpu_us_per_msg']):>11}{f['server_peak_rss_mb']:>7.0f}MB"
                  f"{f['generator_cpu_pct']:>8.0f}%"
                  f"{'-' if ratio is None else f'{ratio:.2f}x':>18}")
        for target, f in r["targets"].items():
            if f["delivered"] != f["expected"]:
                print(f"  note: {target}: {f['delivered']:,} delivered of {f['expected']:,}")
        others = [(t, v) for t, v in r["parallel_chat_vs"].items()
                  if t != PARALLEL_CHAT and v is not None]
        if others:
            print("  parallel-chat's msg/s over each (the median of the rounds' own ratios): "
                  + ", ".join(f"{v:.2f}x {t}" for t, v in others))
        if r["repeat"] > 1:
            print("  rounds' msg/s: " + "; ".join(
                f"{t} {_runs(f['runs_msgs_per_s'], 0)}" for t, f in r["targets"].items()))
        for target, why in r["skipped"].items():
            print(f"  {target}: {why}")


# ---------------------------------------------------------------- report

def print_table(report: Dict[str, Any]) -> None:
    print(f"parallel-chat benchmark · {report['machine']}")
    print(f"  {report['settings']}")
    print(f"  loopback TCP round trip (the floor): {report['loopback_rtt_us']:.0f} µs median")
    throughput = [r for r in report["results"] if "msgs_per_s" in r and "stored" not in r]
    if throughput:
        print()
        print(f"  {'workload':<22}{'clients':>8}{'window':>7}{'msg/s':>10}{'p50 ms':>9}"
              f"{'p99 ms':>9}{'max ms':>9}{'srv CPU':>9}{'srv µs/msg':>11}{'srv RSS':>9}"
              f"{'gen CPU':>9}")
        for r in throughput:
            print(f"  {r['workload']:<22}{r['clients']:>8}{r['window']:>7}{r['msgs_per_s']:>10,.0f}"
                  f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['max_ms']:>9.1f}"
                  f"{r['server_cpu_pct']:>8.0f}%{_us(r.get('server_cpu_us_per_msg')):>11}"
                  f"{r['server_peak_rss_mb']:>7.0f}MB{r['generator_cpu_pct']:>8.0f}%")
    for r in report["results"]:
        if r["workload"] == "idle":
            print(f"\n  idle: {r['clients']} logged-in connections: server RSS "
                  f"{r['server_rss_mb']:.0f} MB (peak {r['server_peak_rss_mb']:.0f} MB)")
    history = [r for r in report["results"] if r["workload"] == "history"]
    if history:
        print(f"\n  {'stored':>10}{'start s':>9}{'hist p50 ms':>13}{'hist p99 ms':>13}"
              f"{'send msg/s':>12}{'vs first':>10}")
        for r in history:
            print(f"  {r['stored']:>10,}{r['start_s']:>9.2f}{r['history100_p50_ms']:>13.2f}"
                  f"{r['history100_p99_ms']:>13.2f}{r['msgs_per_s']:>12,.0f}{r['vs_first']:>10.2f}")
    growth = [r for r in report["results"] if r["workload"] == "growth"]
    if growth:
        r0 = growth[0]
        print(f"\n  growth: {r0['samples']} of each op per run, one request at a time; "
              f"median of {r0['repeat']} run(s)")
        print(f"  {'accounts':>10}{'preload s':>10}{'start s':>9}{'RSS MB':>8}"
              f"{'signup p50':>11}{'p90':>8}{'login p50':>10}{'p90':>8}"
              f"{'read p50':>9}{'p90':>8}{'signup vs first':>16}")
        for r in growth:
            print(f"  {r['accounts']:>10,}{r['preload_s']:>10.1f}{r['start_s']:>9.2f}"
                  f"{r['rss_mb']:>8.0f}{r['signup_p50_ms']:>11.2f}{r['signup_p90_ms']:>8.2f}"
                  f"{r['login_p50_ms']:>10.2f}{r['login_p90_ms']:>8.2f}"
                  f"{r['read_p50_ms']:>9.2f}{r['read_p90_ms']:>8.2f}"
                  f"{r['signup_vs_first'] or 0:>15.1f}x")
        print("  (latencies in ms; preloaded by " + r0["preload_method"] + ")")
        if r0["repeat"] > 1:
            print("  runs' p50 (ms): " + "; ".join(
                f"{r['accounts']:,}: sign-up {_runs(r['runs_signup_p50_ms'])}, "
                f"read {_runs(r['runs_read_p50_ms'])}" for r in growth))
        for r in growth[1:]:
            print(f"  sign-up median with {r['accounts']:,} accounts / with {r0['accounts']:,}: "
                  f"{r['signup_vs_first']}x (login {r['login_vs_first']}x, "
                  f"read {r['read_vs_first']}x)")
    rss = [r for r in report["results"] if r["workload"] == "rss"]
    if rss:
        print(f"\n  rss: server memory after start from /proc (VmRSS, VmHWM = peak); "
              f"median of {rss[0]['repeat']} run(s)")
        print(f"  {'stored':>10}{'users':>7}{'size':>6}{'preload s':>10}{'folder MB':>10}"
              f"{'start s':>9}{'RSS MB':>8}{'peak MB':>8}{'hist p50 ms':>12}{'hist p99 ms':>12}")
        for r in rss:
            print(f"  {r['stored']:>10,}{r['users']:>7}{r['size']:>6}{r['preload_s']:>10.1f}"
                  f"{r['folder_mb']:>10.0f}{r['start_s']:>9.2f}{r['rss_mb']:>8.0f}"
                  f"{r['hwm_mb']:>8.0f}{r['history100_p50_ms']:>12.2f}"
                  f"{r['history100_p99_ms']:>12.2f}")
        if rss[0]["repeat"] > 1:
            print("  runs: " + "; ".join(f"{r['stored']:,}: start s {_runs(r['runs_start_s'])}, "
                                         f"RSS MB {_runs(r['runs_rss_mb'], 0)}" for r in rss))
    rooms = [r for r in report["results"] if r["workload"] == "rooms"]
    if rooms:
        print_rooms(rooms)
    compared = [r for r in report["results"] if r["workload"] == "compare"]
    if compared:
        print_compare(compared)


def _us(value: Optional[float]) -> str:
    """A CPU cost per message in µs, or '-' when unknown (a server run with --host)."""
    return "-" if value is None else f"{value:.2f}"


def _runs(values: List[float], decimals: int = 2) -> str:
    return " / ".join(f"{v:.{decimals}f}" for v in values)


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores {model}, Python {sys.version.split()[0]}, "
            f"{sys.platform}").replace("  ", " ")


WORKLOADS = ["suite", "pairs", "open", "idle", "history", "growth", "rss", "rooms", "compare"]

SUITE_DESCRIPTION = (
    "Benchmark a parallel-chat server with durability on. With no workload, runs the default "
    "suite: pairs at 2 and 100 clients, an unloaded latency check, an open-loop run at half "
    "the 100-client rate, and 1,000 idle connections (about a minute on 2 cores). "
    "`<workload> --help` describes one workload.")

#: What ``chat-bench <workload> --help`` says first.
WORKLOAD_DESCRIPTIONS = {
    "growth": (
        "growth: the cost of sign-up, login and a read-marker move as the number of accounts "
        "grows (store growth, issue 8). For each --accounts N: preload N accounts a0.. "
        "straight through the store (all sharing one precomputed cheap hash, and --samples "
        "messages a0 -> a1), then, --repeat times, start a real server subprocess on a fresh "
        "copy of that folder (" + " ".join(SERVER_FLAGS) + ": the password hash cost is "
        f"lowered to scrypt n=2^{BENCH_HASH_COST}, so hashing is not what is measured; and "
        "--signup-rate 0 --read-rate 0 when the server has those limits) and "
        "time over real sockets, one request at a time: --samples sign-ups of new names "
        "(each on a new connection, the connect not timed), "
        "--samples logins (each followed by a logout) of random existing accounts, and "
        "--samples 'read' requests that each move a1's marker for a0 forward. Reports the "
        "server's start time (spawn to listening) and RSS after start, p50 and p90 of each op "
        "(the median of the runs), and each p50 over the first N's. Default: 1,000 and "
        "100,000 accounts, 200 samples, 1 run."),
    "rss": (
        "rss: server memory with many stored messages. Preload --preload M messages "
        "(default 1,000,000) of --size characters (default 200) among --users accounts "
        "(default 100) straight through the store (the time it takes is reported: 4-6 s "
        "for 1,000,000 on 2 cores with the store before issue 8), then, --repeat times, "
        "start a real server "
        "subprocess on a fresh copy of that folder and report its start time (spawn to "
        "listening), its VmRSS right after start and its VmHWM (peak) from "
        "/proc/PID/status, and the p50/p99 of --samples history(limit 100) requests over a "
        "real socket (the median of the runs)."),
    "rooms": (
        "rooms: the cost of fan-out (issue 9). For each --members M: R rooms of M members "
        "(--rooms R; default about 100 clients in all: 10 rooms of 10, 1 room of 100), "
        "every member one logged-in connection, driven from --workers processes as in "
        "pairs, durability on. The first --senders members of each room (default 1) send "
        "-m messages each, pipelined --window deep (default 64 unacknowledged); every "
        "member counts the 'message' events it receives: one room message is M-1 "
        "deliveries. In the same run, on the same server and connections, the same "
        "senders also send the same messages as DMs, one to each other member of their room "
        "(a burst of M-1 DMs per message; the window counts bursts, so as many deliveries "
        "are in flight as with the room): the same deliveries to the same recipients. The "
        "order of the two phases alternates between runs. One sender per room by default "
        "because that isolates fan-out: every send is one stored message fanned out to "
        "M-1 members, the other members only receive, and the deliveries in flight stay "
        "bounded (senders x window x (M-1), about 6,000 with the defaults at either size) "
        "instead of growing as M^2 as when every member sends, which measures queueing. "
        "Reports, for each phase: send requests/s, deliveries/s counted at the recipients, "
        "latency p50/p99 from send to delivery, the server's CPU (from /proc) per delivery "
        "and per send request, and the same-run ratio of the server CPU of one room "
        "message to that of the M-1 DMs that reach the same recipients (the median of the "
        "runs' own ratios). Default -m: about 500,000 deliveries per phase. The server must "
        "speak protocol 2 (rooms)."),
    "compare": (
        "compare: parallel-chat against other servers on this machine, in the same run "
        "(issue 10): the same pairs workload, the same load generator, for ratios. Targets "
        "(--targets, default all that are available): parallel-chat (this project's server, "
        "durability on, " + " ".join(SERVER_FLAGS) + "); asyncio-relay "
        "(scripts/asyncio_relay.py: a plain asyncio relay speaking just enough of this "
        "protocol, no disk); miniircd (the PyPI package, a Python select-loop IRC server, no "
        "disk; driven over IRC: NICK/USER, then PRIVMSG to the partner; skipped when not "
        "installed: pip install miniircd). For each -n N (default 2 and 100): N clients in "
        "pairs, both members of a pair in one --workers process, each sending -m messages "
        "to its partner (default about 40,000 in all) with at most --window (default 64) "
        "in flight, a message being in flight until the partner has received it (the same "
        "rule for every target: IRC has no acknowledgements). --repeat rounds (default 3), "
        "interleaved: round 1 runs the targets in order, round 2 starts from the second, and "
        "so on; every target gets a fresh server subprocess for every round (the same start "
        "each time: parallel-chat's database does not grow from round to round). Reports "
        "per target the medians of: msg/s counted at the recipients, latency p50/p99 from "
        "send to receipt, the server's CPU (from /proc/PID/stat) as a share of the wall "
        "time and in µs per delivered message, the generator's CPU; and each target's msg/s "
        "over parallel-chat's, computed per round, then the median of the rounds' ratios."),
}


def parse_args(argv: Optional[List[str]] = None):
    argv = sys.argv[1:] if argv is None else list(argv)
    named = next((a for a in argv if a in WORKLOADS), None)
    parser = argparse.ArgumentParser(
        prog="chat-bench",
        description=WORKLOAD_DESCRIPTIONS.get(named or "", SUITE_DESCRIPTION))
    parser.add_argument("workload", nargs="?", default="suite", choices=WORKLOADS,
                        help="pairs: windowed DMs between pairs of clients; open: a fixed "
                             "offered rate, for latency; idle: logged-in connections doing "
                             "nothing, for memory; history: preload messages, then start time, "
                             "history latency and send rate; growth: sign-up, login and read "
                             "cost with many accounts; rss: server memory and start time with "
                             "many stored messages; rooms: room fan-out against the same "
                             "deliveries as DMs; compare: the pairs workload against an "
                             "asyncio relay and miniircd in the same run, for ratios")
    parser.add_argument("-n", "--clients", type=int, nargs="+", default=None,
                        help="client counts (pairs: one run per count; default 2 100)")
    parser.add_argument("-m", "--messages", type=int, default=None,
                        help="messages each client sends (default: 40000 in all, at least "
                             "100 each: 20000 for 2 clients, 400 for 100, 100 for 1000); "
                             "rooms: messages each sender sends, as room messages and then as "
                             "bursts of DMs (default: about 500,000 deliveries per phase)")
    parser.add_argument("--window", type=int, default=64,
                        help="unacknowledged sends allowed per client (default 64; rooms: "
                             "per sender, a burst of DMs counting as one; compare: messages "
                             "in flight until the partner has received them)")
    parser.add_argument("--size", type=int, default=None,
                        help="message text characters (default 100; rss: 200)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="open: offered messages/s in all (default: half of a measured max)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="open: how long to offer load (default 5)")
    parser.add_argument("--preload", type=int, nargs="+", default=None,
                        help="history, rss: stored message counts, one row each (default: "
                             "history 10000 100000; rss 1000000)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs per figure; the median is reported (default 1; compare: "
                             "rounds, default 3, or 1 with --quick)")
    parser.add_argument("--workers", type=int, default=2,
                        help="load generator processes (default 2)")
    parser.add_argument("--host", help="benchmark a running server instead of starting one "
                                       f"(it must run with {' '.join(SERVER_FLAGS)}, and "
                                       "--signup-rate 0 --read-rate 0 if it has them; not for "
                                       "history, growth, rss, which start their own)")
    parser.add_argument("--port", type=int, default=p.DEFAULT_PORT)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, for a smoke test (a few seconds)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar on stderr")
    store = parser.add_argument_group("growth and rss options")
    store.add_argument("--accounts", type=int, nargs="+", default=[1_000, 100_000],
                       metavar="N",
                       help="growth: existing account counts, one row each; the first is "
                            "the base of the 'vs first' ratios (default 1000 100000)")
    store.add_argument("--samples", type=int, default=200,
                       help="growth: sign-ups, logins and read-marker moves timed per run; "
                            "rss: history requests timed per run (default 200)")
    store.add_argument("--users", type=int, default=100,
                       help="rss: accounts the preloaded messages go between (default 100)")
    rooms = parser.add_argument_group("rooms options")
    rooms.add_argument("--members", type=int, nargs="+", default=[10, 100], metavar="M",
                       help="rooms: members per room, one row each (default 10 100)")
    rooms.add_argument("--rooms", type=int, default=0, metavar="R",
                       help="rooms: rooms of each size (default: 100 clients in all, "
                            "100/M rounded, at least 1)")
    rooms.add_argument("--senders", type=int, default=1, metavar="S",
                       help="rooms: members of each room who send (default 1; see above)")
    compare = parser.add_argument_group("compare options")
    compare.add_argument("--targets", nargs="+", choices=COMPARE_TARGETS, default=None,
                         metavar="TARGET",
                         help="compare: the servers to run, of " + ", ".join(COMPARE_TARGETS)
                              + " (default: all that are available)")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 3 if args.workload == "compare" and not args.quick else 1
    if args.clients is None:
        args.clients = [1000] if args.workload == "idle" else [2, 100]
    if args.preload is None:
        args.preload = [1_000_000] if args.workload == "rss" else [10_000, 100_000]
    if args.size is None:
        args.size = 200 if args.workload == "rss" else 100
    if args.quick:
        args.clients = [min(c, 4) for c in args.clients]
        args.messages = args.messages or (10 if args.workload == "rooms" else 50)
        args.preload = [min(c, 500) for c in args.preload]
        args.seconds = min(args.seconds, 1.0)
        # 1000 100000 -> 10 200: still two sizes apart; counts up to 200 stay as asked
        args.accounts = [c if c <= 200 else max(10, min(200, c // 500)) for c in args.accounts]
        args.samples = min(args.samples, 20)
        args.users = min(args.users, 10)
        args.members = list(dict.fromkeys(min(m, 4) for m in args.members))
        args.rooms = args.rooms or 2
    if min(args.accounts) < 2:
        parser.error("--accounts: at least 2 (a0 and a1 exchange the messages to mark read)")
    if min(args.members) < 2 or args.rooms < 0 or args.senders < 1:
        parser.error("--members: at least 2; --rooms: 0 (automatic) or more; "
                     "--senders: at least 1")
    if args.users < 2 or args.samples < 1 or args.repeat < 1:
        parser.error("--users must be at least 2, --samples and --repeat at least 1")
    if args.workload == "compare" and args.host:
        parser.error("compare starts its own servers: no --host")
    if args.workload == "compare" and not 20 <= args.size <= IRC_MAX_SIZE:
        parser.error(f"--size: from 20 to {IRC_MAX_SIZE} for compare (an IRC line's limit)")
    if args.workload == "rss" and not 10 <= args.size <= p.MAX_TEXT_CHARS:
        parser.error(f"--size: from 10 to {p.MAX_TEXT_CHARS} for rss")
    args.messages_unloaded = 200 if args.quick else 2000
    if not sys.stderr.isatty():
        args.progress = args.progress and False
    return args


def run(args) -> Dict[str, Any]:
    report: Dict[str, Any] = {"machine": machine(), "settings": settings_note(),
                              "loopback_rtt_us": round(loopback_rtt_us(), 1), "results": []}
    if args.workload == "history":
        report["results"] = workload_history(args, None)
        return report
    if args.workload == "growth":
        report["results"] = workload_growth(args)
        return report
    if args.workload == "rss":
        report["results"] = workload_rss(args)
        return report
    if args.workload == "compare":
        report["results"] = workload_compare(args)
        return report
    server = Server(host=args.host or "", port=args.port)
    try:
        if args.workload in ("pairs", "suite"):
            report["results"] += workload_pairs(args, server)
        if args.workload == "suite":
            report["results"] += workload_unloaded(args, server)
            maxima = [(r["clients"], r["msgs_per_s"]) for r in report["results"]
                      if r["workload"] == "pairs"]
            for clients, best in maxima:   # open loop at half of each measured maximum
                args.rate, args.clients = round(best / 2), [clients]
                report["results"] += workload_open(args, server)
            args.clients = [40 if args.quick else 1000]
            server.stop()
            server = Server(host=args.host or "", port=args.port)  # idle memory from a fresh start
            report["results"] += workload_idle(args, server)
        elif args.workload == "open":
            if not args.rate:
                probe = run_load(server, args.clients[0], default_messages(args.clients[0]),
                                 args.window, args.size, workers=args.workers,
                                 label="probe max rate", show=args.progress, prefix="probe")
                args.rate = round(probe["msgs_per_s"] / 2)
            report["results"] += workload_open(args, server)
        elif args.workload == "idle":
            report["results"] += workload_idle(args, server)
        elif args.workload == "rooms":
            report["results"] += workload_rooms(args, server)
    finally:
        server.stop()
    return report


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except (ConnectionError, RuntimeError, OSError) as exc:
        print(f"chat-bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
