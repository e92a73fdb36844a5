"""5. Scale: many `inject watch` processes against one server, before and after a
server restart: requests per second and how evenly the polls spread (100 ms buckets).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import audit
from bench import (
    KB_PER_MB,
    READY_TIMEOUT_S,
    Bench,
    names,
    outputs_ok,
    sleep_checked,
    wait_outputs,
)
from procs import cpu_s, memory_kb
from report import Row, median
from tools import (
    inject_toml,
    jinja_line,
)

BUCKET_S = 0.1


def scale(bench: Bench) -> None:
    """Many ``inject watch`` processes on one server: load, spread, and a server restart."""
    profile = bench.profile
    pool = names(profile.steady_paths)
    root = bench.work / "scale"
    (root / "out").mkdir(parents=True, exist_ok=True)
    groups = [
        [pool[(i * profile.watcher_paths + j) % len(pool)] for j in range(profile.watcher_paths)]
        for i in range(profile.watchers)
    ]
    outputs = [root / "out" / f"w{i}.txt" for i in range(profile.watchers)]
    procs, logs = [], []
    try:
        for index, group in enumerate(groups):
            procs.append(_start_watcher(bench, root, index, group, outputs[index]))
            logs.append(bench.log(f"scale-w{index}"))
            time.sleep(0.02)
        pairs = [(Path(), out) for out in outputs]
        wait_outputs(
            bench,
            procs,
            logs,
            lambda: outputs_ok(bench, pairs, groups),
            f"{profile.watchers} watchers' first render",
            READY_TIMEOUT_S + 1.5 * profile.watchers,
        )
        sleep_checked(profile.settle_s, procs, logs)
        log_path = str(bench.server.audit_log)
        before = _scale_window(bench, procs, "before restart", time.time(), audit.offset(log_path))
        offset = audit.offset(log_path)
        restart_at = _restart_server(bench, pool)
        after = _scale_window(bench, procs, "after restart", restart_at, offset)
        alive = sum(p.poll() is None for p in procs)
    finally:
        bench.registry.stop_many(procs)
    _scale_rows(bench, before, after, alive)


def _start_watcher(
    bench: Bench, root: Path, index: int, group: Sequence[str], output: Path
) -> subprocess.Popen[bytes]:
    template = root / f"w{index}.j2"
    template.write_text("".join(jinja_line(n) + "\n" for n in group))
    config = root / f"w{index}.toml"
    config.write_text(
        inject_toml(
            address=bench.server.address,
            token_file=bench.token_files["root"],  # survives the restart (same root token id)
            templates=[(template, output)],
            poll_interval=bench.profile.poll,
        )
    )
    return bench.registry.start(
        [*bench.inject_cmd, "watch", "-c", str(config)],
        env=bench.env,
        cwd=root,
        log=bench.log(f"scale-w{index}"),
    )


@dataclass
class _ScaleWindow:
    label: str
    seconds: float
    reads: list[float]  # secret read times
    buckets: list[int]
    cpu_s: float
    rss_mb: float

    @property
    def rps(self) -> float:
        return len(self.reads) / self.seconds

    @property
    def spread(self) -> float:
        """Busiest 100 ms bucket / mean bucket (1 = perfectly even)."""
        mean = sum(self.buckets) / len(self.buckets)
        return max(self.buckets) / mean if mean else float("nan")


def _scale_window(
    bench: Bench, procs: list[subprocess.Popen[bytes]], label: str, begin: float, offset: int
) -> _ScaleWindow:
    """Reads from audit offset ``offset`` that happened in [begin, begin + window)."""
    log_path = str(bench.server.audit_log)
    live = [p for p in procs if p.poll() is None]
    cpu0 = sum(_safe_cpu(p.pid) for p in live)
    sleep_checked(bench.profile.scale_window_s - (time.time() - begin), [], [])
    end = time.time()
    cpu = sum(_safe_cpu(p.pid) for p in live) - cpu0
    rss = [memory_kb(p.pid)[0] for p in live if p.poll() is None]
    reads = [r.time_s for r in audit.read(log_path, offset) if r.is_secret_read and begin <= r.time_s < end]
    return _ScaleWindow(
        label=label,
        seconds=end - begin,
        reads=reads,
        buckets=audit.histogram(reads, begin, end, BUCKET_S),
        cpu_s=cpu,
        rss_mb=(median(rss) or 0) / KB_PER_MB,
    )


def random_spread(bench: Bench, window: _ScaleWindow, trials: int = 300) -> float:
    """The busiest/mean bucket ratio the same polls would give if each landed at a uniformly
    random time (the mean over ``trials`` simulations): what good jitter can achieve."""
    polls = round(len(window.reads) / bench.profile.watcher_paths)
    buckets = len(window.buckets)
    if not polls:
        return float("nan")
    total = 0.0
    for _ in range(trials):
        counts = [0] * buckets
        for _ in range(polls):
            counts[bench.rng.randrange(buckets)] += 1
        total += max(counts) / (polls / buckets)
    return total / trials


def _safe_cpu(pid: int) -> float:
    try:
        return cpu_s(pid)
    except OSError:
        return 0.0


def _restart_server(bench: Bench, pool: Sequence[str]) -> float:
    """Stop the server, wait out the outage, start a new one on the same port, re-seed."""
    bench.server.stop()
    time.sleep(bench.profile.outage_s)
    bench.server.start()
    ready = time.time()
    bench.seed(pool)
    return ready


def _scale_rows(bench: Bench, before: _ScaleWindow, after: _ScaleWindow, alive: int) -> None:
    watchers = bench.profile.watchers
    what = f"scale, {watchers} inject watch x {bench.profile.watcher_paths} paths at {bench.profile.poll}"
    bench.rows += [
        Row("5", f"{what}: server requests per second", "req/s", before.rps, digits=1),
        Row("5", f"{what}: busiest 100 ms / mean, steady", "ratio", before.spread, digits=2),
        Row("5", f"{what}: server requests per second after restart", "req/s", after.rps, digits=1),
        Row("5", f"{what}: busiest 100 ms / mean, after restart", "ratio", after.spread, digits=2),
        Row(
            "5",
            f"{what}: busiest 100 ms / mean if polls were uniformly random (reference)",
            "ratio",
            random_spread(bench, before),
            digits=2,
        ),
        Row("5", f"{what}: RSS per watcher (median)", "MB", before.rss_mb, digits=1),
        Row(
            "5", f"{what}: CPU per watcher", "s/min", before.cpu_s / watchers / before.seconds * 60, digits=3
        ),
        Row("5", f"{what}: watchers alive after restart", "processes", float(alive), digits=0),
    ]
    ideal = watchers * bench.profile.watcher_paths / bench.profile.poll_interval_s
    herd = 1 / BUCKET_S * bench.profile.poll_interval_s
    bench.notes.append(
        f"Scale: {watchers} `inject watch` processes, each reading {bench.profile.watcher_paths} secrets "
        f"every {bench.profile.poll} (expected ≈ {ideal:.0f} reads/s). "
        f"Spread = busiest {BUCKET_S * 1000:.0f} ms bucket / mean bucket: 1.0 is perfectly even, "
        f"{herd:.0f} would be every poll in the same bucket, and the reference row is what independent, "
        "uniformly random poll times would give for the same number of polls (simulated). "
        f"The server was stopped, left down for {bench.profile.outage_s:g} s, and a new one started on the "
        "same port with the same root token and re-seeded; the second window starts when it answered."
    )
    unwatched = sum("file watching stopped" in bench.log(f"scale-w{i}").read_text() for i in range(watchers))
    if unwatched:
        bench.notes.append(
            f"{unwatched} watcher(s) logged 'file watching stopped' (inotify instance limit); "
            "polling was not affected."
        )
    for window in (before, after):
        head = " ".join(str(n) for n in window.buckets[:50])
        bench.notes.append(f"Reads per 100 ms, {window.label} (first 5 s): {head}")
