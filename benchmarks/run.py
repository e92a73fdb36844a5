"""vault-inject vs OpenBao Agent, side by side against one server, in one run.

    python benchmarks/run.py            # full: ~5-10 minutes on 2 cores
    python benchmarks/run.py --quick    # fewer repetitions, 10 watchers
    python benchmarks/run.py --smoke --out /tmp/x   # tiny sizes, seconds (used by the tests)

Starts its own ``bao server -dev`` on a free loopback port (with a file audit device),
seeds KV secrets, runs the five measurements (see scenarios.py and README.md), and
writes RESULTS.md and results.png to --out (default: this directory). Every process
it starts is stopped by pid on the way out, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from baoserver import BenchError, Server, clean_env
from bench import Bench, Profile, names
from measure_latency import change_latency
from measure_render import render_once
from measure_scale import scale
from measure_watch import steady_state
from pngchart import write_chart
from procs import Registry
from report import (
    Results,
    by_section,
    chart_bars,
    machine_info,
    markdown,
    results_table,
    source_fingerprint,
)
from tools import inject_command

from vault_inject.devserver import find_bao, free_port_pair

HERE = Path(__file__).resolve().parent
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"

PROFILES = {
    "full": Profile(
        name="full",
        sizes=(10, 50, 500),
        reps=7,
        warmup=True,
        steady_paths=50,
        settle_s=3.0,
        steady_window_s=20.0,
        changes=20,
        watchers=100,
        watcher_paths=3,
        scale_window_s=10.0,
        outage_s=3.0,
    ),
    "quick": Profile(
        name="quick",
        sizes=(10, 50, 500),
        reps=3,
        warmup=True,
        steady_paths=50,
        settle_s=2.0,
        steady_window_s=10.0,
        changes=5,
        watchers=10,
        watcher_paths=3,
        scale_window_s=5.0,
        outage_s=2.0,
    ),
    "smoke": Profile(
        name="smoke",
        sizes=(2,),
        reps=1,
        warmup=False,
        steady_paths=2,
        settle_s=0.5,
        steady_window_s=2.0,
        changes=1,
        watchers=2,
        watcher_paths=1,
        scale_window_s=2.0,
        outage_s=0.5,
    ),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """``--quick`` / ``--smoke`` pick a profile; ``--out`` where the results go."""
    parser = argparse.ArgumentParser(description="Benchmark inject against bao agent.")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer repetitions, 10 watchers (~3 min)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds (for tests)")
    parser.add_argument("--out", type=Path, default=HERE, help="directory for RESULTS.md and results.png")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    return parser.parse_args(argv)


def _write_private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def run(profile: Profile, work: Path) -> Results:
    """Start the server, run every measurement, return the results (server stopped)."""
    bao = find_bao()
    inject_cmd = inject_command()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    results = Results(
        profile=profile.name,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine_info(bao, inject_cmd, sys.executable, HERE.parent),
    )
    source_at_start = source_fingerprint(HERE.parent)
    root_token = "bench-" + secrets.token_hex(16)
    server = Server(bao, free_port_pair(), root_token, work, work / "audit.log")
    registry = Registry()
    started = time.monotonic()
    try:
        server.start()
        bench = _bench(profile, server, registry, work, bao, inject_cmd)
        bench.seed(names(max(*profile.sizes, profile.steady_paths)))
        for step in (render_once, steady_state, change_latency, scale):
            print(f"[bench] {step.__name__} ...", file=sys.stderr, flush=True)
            step(bench)
    finally:
        registry.stop_all()
        server.stop()
    results.rows, results.notes = bench.rows, bench.notes
    results.duration_s = time.monotonic() - started
    if source_fingerprint(HERE.parent) != source_at_start:
        results.notes.insert(
            0,
            "**inject's source under src/ changed during this run**: its rows may mix two versions; "
            "run again for clean numbers.",
        )
    return results


def _bench(
    profile: Profile, server: Server, registry: Registry, work: Path, bao: str, inject_cmd: list[str]
) -> Bench:
    tokens, accessors = {}, {}
    for tool in ("inject", "agent"):
        token, accessors[tool] = server.create_token(f"bench-{tool}")
        tokens[tool] = _write_private(work / f"{tool}.token", token + "\n")
    tokens["root"] = _write_private(work / "root.token", server.token + "\n")
    accessors["root"] = server.root_accessor()
    return Bench(
        profile=profile,
        server=server,
        registry=registry,
        work=work,
        bao=bao,
        inject_cmd=inject_cmd,
        env=clean_env(work),
        token_files=tokens,
        accessors=accessors,
    )


def write_results(results: Results, out: Path) -> None:
    """RESULTS.md and results.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    chart = "results.png"
    write_chart(
        str(out / chart),
        chart_bars(results.rows),
        "inject / bao agent  (lower is better, 1 = same)",
        f"{results.date}, {results.machine['nproc']} cpu, profile {results.profile}",
    )
    (out / "RESULTS.md").write_text(markdown(results, chart))
    if out.resolve() == HERE:
        update_readme(HERE / "README.md", results)


def update_readme(readme: Path, results: Results) -> None:
    """Put the latest table between the README's results markers (when both are there)."""
    if not readme.exists():
        return
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return
    table = "\n".join(
        [
            f"Latest full table ({results.date}, profile `{results.profile}`, "
            f"{results.machine['nproc']} CPUs, {results.machine['CPU']}); details in RESULTS.md:",
            "",
            *results_table(by_section(results.rows)),
        ]
    )
    readme.write_text(text[: start + len(README_START)] + "\n" + table + "\n" + text[end:])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 when a measurement could not be made."""
    args = parse_args(argv)
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    work = Path(tempfile.mkdtemp(prefix="inject-bench-"))
    try:
        results = run(profile, work)
        write_results(results, args.out)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        print(f"logs kept in {work}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.keep:
        print(f"work directory kept: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out / 'RESULTS.md'} ({results.duration_s:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
