"""The terminal client's benchmark at tiny size, to keep it working (no figure is asserted:
speed is no test)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import ROOT

pytest.importorskip("pexpect")
pytest.importorskip("pyte")

SCRIPT = ROOT / "scripts" / "tui_bench.py"


def test_quick_run_reports_every_measure():
    out = subprocess.run([sys.executable, str(SCRIPT), "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr + out.stdout
    for measure in ("paste", "open", "scroll to first", "search (library, rare word)",
                    "search (client, /search)"):
        assert measure in out.stdout
    assert " ms" in out.stdout


def test_help_explains_what_is_measured():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "--quick" in out.stdout and "--repeat" in out.stdout and "PgUp" in out.stdout
