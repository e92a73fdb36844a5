"""2 and 4. Steady state and server load: both tools watch the same paths at the same
poll interval, side by side, through one measured window.

RSS and CPU from /proc; requests per poll cycle from the audit log, told apart by token.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import audit
from bench import (
    KB_PER_MB,
    TOOLS,
    Bench,
    names,
    outputs_ok,
    sleep_checked,
    wait_outputs,
)
from procs import cpu_s, ensure_running, memory_kb
from report import Row, median
from tools import (
    TemplateSet,
)


def steady_state(bench: Bench) -> None:
    """Both tools watch the same paths at the same poll interval, side by side, for one window."""
    pool = names(bench.profile.steady_paths)
    templates = TemplateSet(bench.work / "steady", [[n] for n in pool]).write()
    argv = {
        "inject": [
            *bench.inject_cmd,
            "watch",
            "-c",
            str(bench.inject_config(templates.root / "inject.toml", templates.inject_pairs, poll=True)),
        ],
        "agent": bench.agent_argv(
            bench.agent_config(
                templates.root / "agent.hcl",
                templates=templates.agent_pairs,
                render_interval=bench.profile.poll,
            )
        ),
    }
    logs = [bench.log(f"steady-{tool}") for tool in TOOLS]
    procs = [
        bench.registry.start(argv[t], env=bench.env, cwd=templates.root, log=log)
        for t, log in zip(TOOLS, logs, strict=True)
    ]
    try:
        wait_outputs(
            bench,
            procs,
            logs,
            lambda: (
                outputs_ok(bench, templates.inject_pairs, templates.groups)
                and outputs_ok(bench, templates.agent_pairs, templates.groups)
            ),
            "the first render of both",
        )
        sleep_checked(bench.profile.settle_s, procs, logs)
        sample = _steady_window(bench, procs, logs)
    finally:
        for proc in procs:
            bench.registry.stop(proc)
    _steady_rows(bench, sample, len(pool))


@dataclass
class _Window:
    seconds: float
    cpu_s: dict[str, float]
    rss_mb: dict[str, float]
    hwm_mb: dict[str, float]
    requests: dict[str, list[audit.Request]]


def _steady_window(bench: Bench, procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> _Window:
    pids = {tool: proc.pid for tool, proc in zip(TOOLS, procs, strict=True)}
    log_path = str(bench.server.audit_log)
    cpu0 = {tool: cpu_s(pid) for tool, pid in pids.items()}
    start, t0 = audit.offset(log_path), time.monotonic()
    rss: dict[str, list[int]] = {tool: [] for tool in TOOLS}
    while time.monotonic() - t0 < bench.profile.steady_window_s:
        ensure_running(procs, logs)
        for tool, pid in pids.items():
            rss[tool].append(memory_kb(pid)[0])
        time.sleep(min(1.0, bench.profile.steady_window_s / 4))
    seconds = time.monotonic() - t0
    cpu = {tool: cpu_s(pid) - cpu0[tool] for tool, pid in pids.items()}
    hwm = {tool: memory_kb(pid)[1] / KB_PER_MB for tool, pid in pids.items()}
    requests = audit.read(log_path, start, audit.offset(log_path))
    return _Window(
        seconds=seconds,
        cpu_s=cpu,
        rss_mb={tool: (median(rss[tool]) or 0) / KB_PER_MB for tool in TOOLS},
        hwm_mb=hwm,
        requests={tool: audit.by_accessor(requests, bench.accessors[tool]) for tool in TOOLS},
    )


def _steady_rows(bench: Bench, window: _Window, paths: int) -> None:
    what = f"steady state, {paths} paths at {bench.profile.poll} poll"

    def both(values: dict[str, float]) -> tuple[float, float]:
        return values["inject"], values["agent"]

    per_min = {tool: window.cpu_s[tool] / window.seconds * 60 for tool in TOOLS}
    rps = {tool: len(window.requests[tool]) / window.seconds for tool in TOOLS}
    cycles = {tool: audit.cycles(window.requests[tool]) for tool in TOOLS}
    per_cycle = {tool: len(window.requests[tool]) / max(1, cycles[tool]) for tool in TOOLS}
    reads = {
        tool: sum(r.is_secret_read for r in window.requests[tool]) / max(1, cycles[tool]) for tool in TOOLS
    }
    distinct = {
        tool: float(len({r.path for r in window.requests[tool] if r.is_secret_read})) for tool in TOOLS
    }
    requests_row = Row(
        "4",
        f"server load, {paths} paths: requests per poll cycle",
        "requests",
        *both(per_cycle),
        1,
        short="load: requests/cycle",
    )
    requests_row.target = f"inject = {paths} (distinct paths)"
    requests_row.met = round(per_cycle["inject"], 1) == paths
    bench.rows += [
        Row("2", f"{what}: RSS (median)", "MB", *both(window.rss_mb), 1, short=f"watch {paths}: rss"),
        Row(
            "2", f"{what}: peak RSS (VmHWM)", "MB", *both(window.hwm_mb), 1, short=f"watch {paths}: peak rss"
        ),
        Row("2", f"{what}: CPU", "s/min", *both(per_min), 2, short=f"watch {paths}: cpu/min"),
        Row(
            "4",
            f"server load, {paths} paths: requests per second",
            "req/s",
            *both(rps),
            1,
            short="load: requests/s",
        ),
        requests_row,
        Row(
            "4",
            f"server load, {paths} paths: secret reads per poll cycle",
            "requests",
            *both(reads),
            1,
            short="load: reads/cycle",
        ),
        Row(
            "4",
            f"server load, {paths} paths: poll cycles in the window",
            "cycles",
            float(cycles["inject"]),
            float(cycles["agent"]),
            digits=0,
            chart=False,
        ),
        Row(
            "4",
            f"server load, {paths} paths: effective poll period (window / cycles)",
            "s",
            window.seconds / max(1, cycles["inject"]),
            window.seconds / max(1, cycles["agent"]),
            digits=2,
            chart=False,
        ),
        Row(
            "4",
            f"server load, {paths} paths: distinct secret paths read",
            "paths",
            *both(distinct),
            digits=0,
            chart=False,
        ),
    ]
    bench.notes.append(
        f"Steady state and server load come from one {window.seconds:.0f} s window with both tools "
        f"running side by side, after {bench.profile.settle_s:g} s of settling. A poll cycle is one read "
        "of each watched secret (the mean per-path read count in the window); requests per cycle "
        "counts every request the tool's token made (reads, token lookups, mount lookups)."
    )
