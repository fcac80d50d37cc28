"""The benchmark at tiny size, to keep it working (no figure is asserted: speed is no test)."""
from __future__ import annotations

import json
import subprocess
import sys

from chat import bench
from tests.support import ROOT


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
