"""The benchmark command: inject vs bao agent side by side on one audited dev server, issue 13's
start-up targets and issue 10's signal latency, written to one results file.

    python benchmarks/run.py [--quick | --smoke] [--only NAME[,NAME]] [--out DIR] [--note TEXT]

NAMEs: render, watch, fleet, plain, refs, floor, signal-startup, signal-idle, signal-check,
signal-trickle, signal-commands. See README.md for what each measures.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import signals
import versus
from harness import TIME_BIN, Bench, BenchError, Profile, Row, Server, SignalRow, percentile, stop

from vault_inject.cli.devserver import find_bao

HERE = Path(__file__).resolve().parent
INJECT = str(Path(sys.executable).parent / "inject")  # the installed inject, beside this Python
PROFILES = {
    "full": Profile(reps=5, sizes=(10, 50, 500), watch_paths=50, window_s=20, changes=15, fleet=50,
                    sessions=3, usr1_per_session=3, busy_s=8),
    "quick": Profile(reps=3, sizes=(10, 50, 500), watch_paths=50, window_s=8, changes=5, fleet=10,
                     sessions=2, usr1_per_session=2, busy_s=2, cap_s=5),
    "smoke": Profile(reps=1, sizes=(2,), watch_paths=2, window_s=1, changes=1, fleet=2,
                     sessions=1, usr1_per_session=1, busy_s=0.5, cap_s=3),
}  # fmt: skip
HEAD = """# Benchmark results

Written by `python benchmarks/run.py` (profile `{profile}`) on {date} in {took_s:.0f} s. Ratios are
inject / reference from one run; values are medians of runs that alternate which command goes
first, or of both tools running side by side. A target's result is pass or **FAIL**.

| machine | |
|---|---|
"""
ROWS_HEAD = """
## inject vs bao agent, and start-up (issue 13)

The reference is bao agent unless the row names another.

| measurement | unit | inject | reference | ratio | target | result |
|---|---|---:|---:|---:|---|---|
"""
SIGNALS_HEAD = """
## Signal latency (issue 10): from the signal sent to inject (PID 1) to the child receiving it

At start-up (server unreachable, no child yet): from SIGTERM until inject has exited.
Lost: not delivered within {cap_s:g} s, counted as {cap_s:g} s.

| situation | signal | trials | p50 ms | p99 ms | lost | target | result |
|---|---|---:|---:|---:|---:|---|---|
"""
VERDICT = {None: "", True: "pass", False: "**FAIL**"}
MEASUREMENTS: dict[str, Callable[[Bench], None]] = {
    "render": versus.render_once,
    "watch": versus.watching,
    "fleet": versus.fleet,
    "plain": versus.plain_pid1,
    "refs": versus.env_refs,
    "floor": versus.floor,
    **{f"signal-{s}": partial(signals.signal_latency, which=s) for s in signals.PREPARE},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: profile, selection, output directory, a note for the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer repetitions and trials (~5 min)")
    size.add_argument("--smoke", action="store_true", help="tiny counts, seconds (what the test runs)")
    parser.add_argument("--only", default="", help="comma-separated measurement names (default: all)")
    parser.add_argument("--out", type=Path, default=HERE, help="directory for RESULTS.md (default: here)")
    parser.add_argument("--note", action="append", default=[], help="a line for RESULTS.md's notes")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    args = parser.parse_args(argv)
    chosen = {name for name in args.only.split(",") if name} or set(MEASUREMENTS)
    if unknown := chosen - set(MEASUREMENTS):
        parser.error(f"unknown measurement(s) {sorted(unknown)}; choose from {', '.join(MEASUREMENTS)}")
    args.names = [name for name in MEASUREMENTS if name in chosen]  # render before floor (its reference)
    args.profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    return args


def run(args: argparse.Namespace, work: Path) -> Bench:
    """Start the server, run the chosen measurements, stop the server; the filled ``Bench``."""
    if not os.access(TIME_BIN, os.X_OK):
        raise BenchError(f"{TIME_BIN} (GNU time) is needed for peak RSS: apt-get install time")
    server = Server(find_bao(), work)
    try:
        tokens = {tool: server.token_file(tool) for tool in ("inject", "agent", "fleet")}
        bench = Bench(PROFILES[args.profile], server, work, [INJECT], tokens)
        _empty_cache(work)
        for name in args.names:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            MEASUREMENTS[name](bench)
    finally:
        stop([server.process])
    return bench


def _empty_cache(home: Path) -> None:
    """The cache directory as the project's image ships it: there, empty and private
    (0700), so the first render fills it with compiled templates, as in a container."""
    (home / ".cache" / "vault-inject").mkdir(mode=0o700, parents=True, exist_ok=True)


def machine(bao: str) -> dict[str, str]:
    """Where and with what the numbers were measured."""
    memory_gib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    return {
        "CPUs": f"{os.cpu_count()} x {model}",
        "memory": f"{memory_gib:.1f} GiB",
        "kernel": platform.release(),
        "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "Python": platform.python_version(),
        "bao": _output([bao, "version"]),
        "inject": _output([INJECT, "--version"]),
        "source": "git " + _output(["git", "-C", str(HERE), "describe", "--always", "--dirty"]),
    }


def _output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    except OSError:
        return "?"


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |\n"


def _number(value: float, digits: int) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def row_line(row: Row) -> str:
    """One comparison row as a Markdown table line."""
    ratio = row.inject / row.reference if row.reference else math.nan
    cells = [row.label, row.unit, _number(row.inject, row.digits), _number(row.reference, row.digits)]
    return _line([*cells, _number(ratio, 2), row.target, VERDICT[row.passed]])


def signal_line(row: SignalRow, cap_s: float) -> str:
    """One situation and signal as a Markdown table line (milliseconds)."""
    p50, p99 = (percentile(row.samples, q) * 1000 for q in (50, 99))
    worst = f"≥ {cap_s * 1000:.0f}" if row.lost else f"{p99:.1f}"
    passed = not row.lost and p99 < signals.TARGET_P99_S * 1000
    cells = [row.situation, row.signal, str(len(row.samples)), f"{p50:.1f}", worst, str(row.lost)]
    return _line([*cells, f"p99 < {signals.TARGET_P99_S * 1000:g} ms", VERDICT[passed]])


def markdown(bench: Bench, args: argparse.Namespace, info: dict[str, str], date: str, took_s: float) -> str:
    """The whole results file."""
    out = HEAD.format(profile=args.profile, date=date, took_s=took_s)
    out += "".join(_line([key, value]) for key, value in info.items())
    if bench.rows:
        out += ROWS_HEAD + "".join(map(row_line, bench.rows))
    if bench.signals:
        out += SIGNALS_HEAD.format(cap_s=bench.profile.cap_s)
        out += "".join(signal_line(row, bench.profile.cap_s) for row in bench.signals)
    notes = list(dict.fromkeys([*args.note, *bench.notes]))  # each signal situation may add the same
    return out + ("\n## Notes\n\n" + "".join(f"- {note}\n" for note in notes) if notes else "")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write RESULTS.md; 0 on success, 1 when a measurement failed."""
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="inject-bench-"))
    date, started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), time.monotonic()
    try:
        info = machine(find_bao())
        bench = run(args, work)
    except BenchError as exc:
        print(f"benchmark failed: {exc}\nlogs kept in {work}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text(markdown(bench, args, info, date, time.monotonic() - started))
    if args.keep:
        print(f"work directory kept: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out / 'RESULTS.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
