"""The benchmark at tiny size, to keep it working (no figure is asserted: speed is no test)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chat import bench
from chat import protocol as p
from tests.support import ROOT

#: Rooms are protocol 2: until the server says so in its hello, it has none to measure.
needs_rooms = pytest.mark.skipif(p.PROTOCOL_VERSION < 2,
                                 reason="the server speaks protocol 1: no rooms yet")


def test_quick_suite_reports_every_workload(capsys):
    assert bench.main(["--quick", "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "hash cost is lowered" in report["settings"] and report["loopback_rtt_us"] > 0
    kinds = [r["workload"] for r in report["results"]]
    assert kinds == ["pairs", "pairs", "unloaded (window 1)", "open", "open", "idle"]
    for row in report["results"]:
        if row["workload"] == "idle":
            assert row["clients"] == 40 and row["server_rss_mb"] > 0
            continue
        sent = row["clients"] * row["messages_per_client"]
        assert row["delivered"] == sent == row["acked"] and row["errors"] == 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["msgs_per_s"] > 0


def test_history_workload_and_the_script():
    out = subprocess.run([str(ROOT / "scripts" / "bench"), "history", "--quick", "--preload",
                          "300", "--no-progress"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "stored" in out.stdout and "300" in out.stdout
    assert "loopback TCP round trip" in out.stdout


def test_help_explains_the_options():
    out = subprocess.run([sys.executable, "-m", "chat.bench", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "--window" in out.stdout and "durab" in out.stdout


def test_growth_workload_at_tiny_size(capsys):
    assert bench.main(["growth", "--accounts", "20", "60", "--samples", "5", "--json",
                       "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["results"]
    assert [(r["workload"], r["accounts"]) for r in rows] == [("growth", 20), ("growth", 60)]
    for row in rows:
        assert row["samples"] == 5 and row["start_s"] > 0 and row["rss_mb"] > 0
        for op in ("signup", "login", "read"):
            assert 0 < row[f"{op}_p50_ms"] <= row[f"{op}_p90_ms"]
            assert row[f"{op}_vs_first"] > 0
    assert rows[0]["signup_vs_first"] == 1.0


def test_growth_table_and_the_script():
    out = subprocess.run([str(ROOT / "scripts" / "bench"), "growth", "--quick", "--accounts",
                          "10", "30", "--no-progress"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "accounts" in out.stdout and "signup p50" in out.stdout
    assert "sign-up median with 30 accounts / with 10" in out.stdout


def test_accounts_preload_through_add_user_too(tmp_path):
    """The path a store without the whole-document fast path takes."""
    from chat.store import Store
    method = bench.preload_accounts(tmp_path / "db", 40, 3, False, bulk=False)
    assert "add_user" in method
    store = Store(tmp_path / "db")
    try:
        assert store.canonical_name("a0") == "a0" and store.canonical_name("a39") == "a39"
        assert store.get_user("a39") is not None and store.last_id == 3
    finally:
        store.close()


def test_rss_workload_at_tiny_size(capsys):
    assert bench.main(["rss", "--preload", "400", "--users", "4", "--samples", "10",
                       "--repeat", "2", "--json", "--no-progress"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert len(rows) == 1
    row = rows[0]
    assert row["workload"] == "rss" and row["stored"] == 400 and row["size"] == 200
    assert len(row["runs_rss_mb"]) == 2
    assert 0 < row["rss_mb"] <= row["hwm_mb"] and row["start_s"] > 0
    assert 0 < row["history100_p50_ms"] <= row["history100_p99_ms"]


def test_rss_table():
    out = subprocess.run([sys.executable, "-m", "chat.bench", "rss", "--quick", "--preload",
                          "300", "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "VmRSS" in out.stdout and "300" in out.stdout


def test_workload_help_explains_its_options():
    for workload, words in (("growth", ["--accounts", "--samples", "sign-up", "hash cost"]),
                            ("rss", ["--preload", "--users", "--size", "VmRSS"]),
                            ("rooms", ["--members", "--rooms", "--senders", "--window",
                                       "fan-out", "DMs", "same run", "CPU"]),
                            ("compare", ["--targets", "--repeat", "--window", "asyncio-relay",
                                         "miniircd", "same run", "interleaved", "µs"])):
        out = subprocess.run([str(ROOT / "scripts" / "bench"), workload, "--help"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split("\n\n")[1].startswith(workload + ":")  # its own description
        for word in words:
            assert word in out.stdout, (workload, word)


@needs_rooms
def test_rooms_workload_at_tiny_size(capsys):
    """Two rooms of 3, one sender each, 5 messages: as room messages and as DMs."""
    assert bench.main(["rooms", "--members", "3", "--rooms", "2", "-m", "5", "--repeat", "2",
                       "--window", "4", "--json", "--no-progress"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert [(r["workload"], r["members"], r["rooms"], r["clients"]) for r in rows] == [
        ("rooms", 3, 2, 6)]
    row = rows[0]
    assert row["deliveries_per_message"] == 2 and row["senders_per_room"] == 1
    for kind, sent in (("room", 2 * 5), ("dm", 2 * 5 * 2)):   # a DM per other member
        figures = row[kind]
        assert figures["kind"] == kind and figures["sent"] == sent
        assert figures["messages"] == 10
        assert figures["deliveries"] == figures["expected_deliveries"] == 2 * 5 * 2
        assert figures["unexpected_deliveries"] == 0
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert figures["deliveries_per_s"] > 0 and figures["server_cpu_s"] is not None
    assert len(row["runs_room_vs_dm_cpu"]) == 2   # each run's own ratio (None if too quick)
    assert row["room_vs_dm_cpu"] is None or row["room_vs_dm_cpu"] > 0


@needs_rooms
def test_rooms_table_and_the_script():
    out = subprocess.run([str(ROOT / "scripts" / "bench"), "rooms", "--quick", "--members", "3",
                          "--no-progress"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "2 room(s) of 3 members" in out.stdout
    assert "room messages" in out.stdout and "DMs (2 each)" in out.stdout
    assert "note:" not in out.stdout   # every member got what it expected, nothing more


def test_rooms_needs_a_server_with_rooms(monkeypatch):
    """Against a server without rooms, a clear error, not a hang."""
    class Protocol1Line:
        hello = {"event": "hello", "server": "parallel-chat", "protocol": 1}

        def __init__(self, address):
            pass

        def call(self, op, **fields):
            return {"id": "b", "ok": False, "error": {"code": "unknown_op", "message": op}}

        def close(self):
            pass

    monkeypatch.setattr(bench, "Line", Protocol1Line)
    monkeypatch.setattr(bench, "sign_up", lambda address, names: None)
    with pytest.raises(RuntimeError, match="protocol 1.*unknown_op"):
        bench.rooms_setup(("127.0.0.1", 1), [("#r", ["a", "b"])])


def test_compare_workload_at_tiny_size(capsys):
    """Every target (parallel-chat, the asyncio relay, miniircd over IRC) delivers every
    message of two pairs in each of two interleaved rounds, and has its ratio."""
    assert bench.main(["compare", "-n", "4", "-m", "30", "--repeat", "2", "--window", "8",
                       "--json", "--no-progress"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert [(r["workload"], r["clients"]) for r in rows] == [("compare", 4)]
    row = rows[0]
    assert row["skipped"] == {}, row["skipped"]   # miniircd is in the test extra
    targets = list(bench.COMPARE_TARGETS)
    assert list(row["targets"]) == targets
    assert row["orders"] == [targets, targets[1:] + targets[:1]]   # rounds interleaved
    for name, figures in row["targets"].items():
        assert figures["target"] == name
        assert figures["delivered"] == figures["expected"] == 4 * 30, name
        assert len(figures["runs_msgs_per_s"]) == 2 and figures["msgs_per_s"] > 0
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert figures["server_cpu_us_per_msg"] is not None
        assert figures["acks"] == (None if name == "miniircd" else 4 * 30)
        assert row["ratio_to_parallel_chat"][name] > 0
        assert len(row["runs_ratio_to_parallel_chat"][name]) == 2
    assert row["ratio_to_parallel_chat"]["parallel-chat"] == 1.0


def test_compare_table_and_a_missing_target(monkeypatch, capsys):
    """The table has every target and its ratio; a target that is not there is named."""
    real = bench.compare_targets

    def without_miniircd(requested):
        targets, skipped = real([t for t in bench.COMPARE_TARGETS if t != "miniircd"])
        return targets, dict(skipped, miniircd="not installed (pip install miniircd)")

    monkeypatch.setattr(bench, "compare_targets", without_miniircd)
    assert bench.main(["compare", "--quick", "-n", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "vs parallel-chat" in out and "srv µs/msg" in out
    assert "  parallel-chat " in out and "  asyncio-relay " in out
    assert "miniircd: not installed (pip install miniircd)" in out


def test_pairs_report_server_cpu_per_message(capsys):
    assert bench.main(["pairs", "-n", "2", "-m", "200", "--json", "--no-progress"]) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    assert row["delivered"] == 400 and row["server_cpu_us_per_msg"] is not None
