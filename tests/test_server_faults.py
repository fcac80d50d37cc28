"""The server when the disk or the operator fails it: a full disk, a second server on
the same database folder. Nothing acknowledged may be lost, and the server keeps
serving (or refuses to start) with a reason in words."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Dict

from chat import protocol as p
from chat.server import ChatServer
from chat.store import Store
from tests.support import ROOT, TEST_HASH_COST, RawConn, ServerProcess, make_config
from tests.test_store_faults import FullDisk


def test_a_full_disk_answers_server_error_and_recovers_by_itself(tmp_path):
    files = FullDisk()
    db = tmp_path / "db"
    server = ChatServer(make_config(db), store=Store(db, files=files))
    server.serve_in_thread()
    try:
        alice, bob = RawConn(server.address), RawConn(server.address)
        alice.login("alice")
        bob.login("bob")
        kept = alice.ok("send", to="bob", text="before")["message"]["id"]
        files.full = True
        reply = alice.request("send", to="bob", text="into a full disk")
        assert reply["ok"] is False and reply["error"]["code"] == p.SERVER_ERROR, reply
        assert "disk" in reply["error"]["message"]
        alice.ok("ping")                        # the connection stays open
        files.full = False
        deadline = time.monotonic() + 10        # the store backs off, then tries again
        while True:
            reply = alice.request("send", to="bob", text="after")
            if reply["ok"]:
                break
            assert reply["error"]["code"] == p.SERVER_ERROR
            assert time.monotonic() < deadline, "the server never recovered"
            time.sleep(0.1)
        texts = [m["text"] for m in bob.all_history(with_="alice")]
        assert texts == ["before", "after"]
        assert [e["message"]["text"] for e in (bob.event("message"), bob.event("message"))] \
            == ["before", "after"]               # no event for the message that was lost
        assert reply["message"]["id"] > kept
        alice.close()
        bob.close()
    finally:
        server.stop()
    with Store(db) as store:                     # and nothing lost comes back at a restart
        assert [m for m in store.history("bob") if "full disk" in m] == []


def start_second(db, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chat.server", "--db", str(db), "--port", str(port),
         "--hash-cost", str(TEST_HASH_COST)],
        cwd=ROOT, capture_output=True, text=True, timeout=20)


def test_a_second_server_on_the_same_database_is_refused_and_loses_nothing(tmp_path):
    db = tmp_path / "db"
    first = ServerProcess(db)
    setup = RawConn(first.address)
    for name in ("w0", "w1", "sink"):
        setup.ok("signup", username=name, password="password1")
    setup.close()
    acked: Dict[int, str] = {}
    stop = threading.Event()

    def sender(name: str) -> None:
        conn = RawConn(first.address)
        conn.ok("login", username=name, password="password1")
        i = 0
        try:
            while not stop.is_set():
                text = f"{name}:{i}"
                acked[conn.ok("send", to="sink", text=text)["message"]["id"]] = text
                i += 1
        except (AssertionError, OSError):
            pass
        conn.close()

    threads = [threading.Thread(target=sender, args=(n,)) for n in ("w0", "w1")]
    for t in threads:
        t.start()
    try:
        for attempt in range(5):
            port = first.address[1] if attempt % 2 else 0   # the same port, and another
            started = time.monotonic()
            second = start_second(db, port)
            assert second.returncode != 0, second.stderr
            assert time.monotonic() - started < 10
            if port == 0:
                assert "in use by process" in second.stderr, second.stderr
            assert "cannot start" in second.stderr, second.stderr
        count = len(acked)
        time.sleep(0.3)
        assert len(acked) > count, "the first server stopped serving"
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        first.kill()   # also when an assertion failed: never leave a server behind
    again = ServerProcess(db)
    sink = RawConn(again.address)
    sink.ok("login", username="sink", password="password1")
    stored = {m["id"]: m["text"] for m in sink.all_history()}
    sink.close()
    again.terminate()
    missing = {i: t for i, t in acked.items() if stored.get(i) != t}
    assert not missing, f"acknowledged but lost: {list(missing)[:5]}"
    assert len(acked) > 50
