"""Results: rows of inject value / agent value / ratio, the machine they came from,
rendered as ``RESULTS.md`` and as bars for the chart."""

from __future__ import annotations

import hashlib
import math
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

VERSION_TIMEOUT_S = 30.0


@dataclass
class Row:
    """One measurement for both tools (``agent`` is None when only inject is measured)."""

    section: str
    label: str
    unit: str
    inject: float | None
    agent: float | None = None
    digits: int = 2
    target: str = ""
    met: bool | None = None
    chart: bool = True
    short: str = ""  # chart label

    @property
    def ratio(self) -> float:
        """inject / agent (NaN when either is missing or the agent's value is 0)."""
        if self.inject is None or not self.agent:
            return math.nan
        return self.inject / self.agent


@dataclass
class Results:
    """Everything one run produced."""

    profile: str
    date: str
    machine: dict[str, str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- machine ------------------------------------------------------------------------


def machine_info(bao: str, inject_cmd: Sequence[str], python: str, repo: Path) -> dict[str, str]:
    """nproc, memory, CPU model, Python, bao and inject versions (and source state), kernel, load."""
    load = os.getloadavg()
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory": f"{_meminfo_kb('MemTotal') / 1024 / 1024:.1f} GiB",
        "CPU": _cpu_model(),
        "kernel": platform.release(),
        "Python": _first_line([python, "-VV"]),
        "bao": _first_line([bao, "version"]),
        "inject": _first_line([*inject_cmd, "--version"]),
        "inject source": _source_state(repo),
        "load average at start (1/5/15 min)": f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
    }


def _meminfo_kb(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def source_fingerprint(repo: Path) -> str:
    """HEAD plus a digest of uncommitted changes under src/: equal before and after a run
    when the code under test did not change during it."""
    head = _first_line(["git", "-C", str(repo), "rev-parse", "HEAD"])
    try:
        diff = subprocess.run(
            ["git", "-C", str(repo), "diff", "HEAD", "--", "src"],
            capture_output=True,
            timeout=VERSION_TIMEOUT_S,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        diff = b""
    return f"{head}:{hashlib.sha256(diff).hexdigest()[:12]}"


def _source_state(repo: Path) -> str:
    commit = _first_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(repo), "status", "--porcelain", "--", "src"])
    return f"git {commit}" + (" + uncommitted changes in src/" if dirty not in ("?", "") else "")


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=VERSION_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({type(exc).__name__})"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"


# --- markdown -----------------------------------------------------------------------


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ratio(row: Row) -> str:
    return "—" if math.isnan(row.ratio) else f"{row.ratio:.2f}"


def _met(row: Row) -> str:
    if row.met is None:
        return ""
    return "yes" if row.met else "**no**"


def results_table(rows: Sequence[Row]) -> list[str]:
    """The measurement table as Markdown lines."""
    lines = [
        "| # | measurement | unit | inject | bao agent | inject / agent | SPEC §11 target | met |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.section} | {row.label} | {row.unit} | {_fmt(row.inject, row.digits)} "
            f"| {_fmt(row.agent, row.digits)} | {_ratio(row)} | {row.target} | {_met(row)} |"
        )
    return lines


def markdown(results: Results, chart_name: str | None) -> str:
    """RESULTS.md: machine, the table, the chart, notes."""
    lines = [
        "# vault-inject vs OpenBao Agent: benchmark results",
        "",
        f"Written by `python benchmarks/run.py{_flag(results.profile)}` on {results.date} "
        f"(profile `{results.profile}`, {results.duration_s:.0f} s). Lower is better everywhere; "
        "a ratio below 1 means inject used less than `bao agent`. Medians of alternating runs; "
        "the machine was shared with other workloads, so single numbers are noisy: compare ratios.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in results.machine.items()),
        "",
        "## Results",
        "",
        *results_table(by_section(results.rows)),
        "",
    ]
    if chart_name:
        lines += [f"![inject / agent ratios]({chart_name})", ""]
    if results.notes:
        lines += ["## Notes", "", *(f"* {note}" for note in results.notes), ""]
    return "\n".join(lines)


def _flag(profile: str) -> str:
    return "" if profile == "full" else f" --{profile}"


def chart_bars(rows: Sequence[Row]) -> list[tuple[str, float]]:
    """(label, ratio) for every row that compares both tools."""
    return [
        (row.short or row.label, row.ratio) for row in by_section(rows) if row.chart and row.agent is not None
    ]


def by_section(rows: Sequence[Row]) -> list[Row]:
    """Rows ordered by measurement number (stable within one)."""
    return sorted(rows, key=lambda row: row.section)
