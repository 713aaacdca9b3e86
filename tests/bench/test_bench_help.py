"""Every bench prints its --help and exits 0: a user's first look at a bench must not be a traceback (a stray
"%" in an argparse help string is one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = sorted(p.name for p in (ROOT / "bench").glob("*.py")
                 if not p.name.startswith("_") and "ArgumentParser(" in p.read_text())


def test_the_benches_with_a_command_line_are_found():
    assert {"seed_spread.py", "no_config.py", "speedrun.py", "time_to_accuracy.py"} <= set(BENCHES)


@pytest.mark.parametrize("bench", BENCHES)
def test_each_bench_prints_its_help(bench):
    p = subprocess.run([sys.executable, str(ROOT / "bench" / bench), "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.startswith("usage:") and "Traceback" not in p.stderr
