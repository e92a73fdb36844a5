"""3. Change latency: from `kv put` to the child restarted with the new value, and to
the file rewritten, for inject and bao agent at the same poll interval.

Four processes run side by side against one secret: `inject -- child`, `inject watch`,
bao agent in exec mode (env_template) and bao agent with a template (the agent refuses
`template` and `env_template` in one config).
"""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench import (
    TOOLS,
    Bench,
    sleep_checked,
    wait_outputs,
)
from procs import ensure_running
from report import Row, percentile
from tools import (
    KEY,
    AgentExec,
    TemplateSet,
    child_command,
    kv_path,
)

CHANGE_TIMEOUT_S = 20.0


@dataclass
class _LatencySetup:
    child_logs: dict[str, Path]
    files: dict[str, Path]
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]


def change_latency(bench: Bench) -> None:
    """From ``kv put`` to the child restarted with the new value, and to the file rewritten."""
    name = "lat"
    bench.seed([name])
    setup = _start_latency_tools(bench, name)
    series: dict[str, list[float]] = {
        key: [] for key in ("inject-child", "agent-child", "inject-file", "agent-file")
    }
    misses = 0
    try:
        wait_outputs(
            bench, setup.procs, setup.logs, lambda: _latency_ready(bench, setup, name), "all four ready"
        )
        for index in range(bench.profile.changes):
            sleep_checked(bench.rng.uniform(0, bench.profile.poll_interval_s), setup.procs, setup.logs)
            misses += _one_change(bench, setup, name, index, series)
    finally:
        for proc in setup.procs:
            bench.registry.stop(proc)
        _forget_children(bench, setup)
    _latency_rows(bench, series, misses)


def _start_latency_tools(bench: Bench, name: str) -> _LatencySetup:
    root = bench.work / "latency"
    templates = TemplateSet(root, [[name]]).write()
    child_logs = {tool: root / f"child-{tool}.log" for tool in TOOLS}
    exec_cfg = bench.inject_config(root / "inject-exec.toml", [], poll=True)
    argv = {
        "inject-child": [
            *bench.inject_cmd,
            "-c",
            str(exec_cfg),
            "-e",
            f"X=vault:{kv_path(name)}#{KEY}",
            "--",
            *child_command(child_logs["inject"], "X"),
        ],
        "inject-file": [
            *bench.inject_cmd,
            "watch",
            "-c",
            str(bench.inject_config(root / "inject-watch.toml", templates.inject_pairs, poll=True)),
        ],
        "agent-child": bench.agent_argv(
            bench.agent_config(
                root / "agent-exec.hcl",
                render_interval=bench.profile.poll,
                exec_mode=AgentExec({"X": name}, child_command(child_logs["agent"], "X")),
            )
        ),
        "agent-file": bench.agent_argv(
            bench.agent_config(
                root / "agent-file.hcl", templates=templates.agent_pairs, render_interval=bench.profile.poll
            )
        ),
    }
    logs = [bench.log(f"latency-{key}") for key in argv]
    procs = [
        bench.registry.start(a, env=bench.env, cwd=root, log=log)
        for a, log in zip(argv.values(), logs, strict=True)
    ]
    files = {"inject": templates.inject_pairs[0][1], "agent": templates.agent_pairs[0][1]}
    return _LatencySetup(child_logs, files, procs, logs)


def _child_starts(path: Path) -> list[tuple[float, int, str]]:
    """(start time, pid, value) per line the child wrote."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        parts = line.split(" ", 2)
        if len(parts) == 3:
            out.append((float(parts[0]), int(parts[1]), parts[2]))
    return out


def _child_started(bench: Bench, setup: _LatencySetup, tool: str, value: str) -> float | None:
    for started, pid, seen in _child_starts(setup.child_logs[tool]):
        bench.registry.extra_pids.add(pid)
        if seen == value:
            return started
    return None


def _file_written(setup: _LatencySetup, tool: str, value: str) -> float | None:
    try:
        if setup.files[tool].read_text() == value + "\n":
            return setup.files[tool].stat().st_mtime
    except FileNotFoundError:
        return None
    return None


def _latency_ready(bench: Bench, setup: _LatencySetup, name: str) -> bool:
    value = bench.values[name]
    return all(
        _child_started(bench, setup, tool, value) is not None
        and _file_written(setup, tool, value) is not None
        for tool in TOOLS
    )


def _one_change(
    bench: Bench, setup: _LatencySetup, name: str, index: int, series: dict[str, list[float]]
) -> int:
    """One new version; record each tool's latency. Returns how many of the four missed it."""
    value = f"v{index + 2}-{secrets.token_hex(4)}"
    bench.values[name] = value
    put_at = time.time()
    bench.server.kv_put(kv_path(name), {KEY: value})
    seen: dict[str, float] = {}
    deadline = time.monotonic() + CHANGE_TIMEOUT_S
    while len(seen) < len(series) and time.monotonic() < deadline:
        ensure_running(setup.procs, setup.logs)
        for tool in TOOLS:
            for kind, probe in (
                ("child", _child_started(bench, setup, tool, value)),
                ("file", _file_written(setup, tool, value)),
            ):
                if probe is not None:
                    seen.setdefault(f"{tool}-{kind}", probe - put_at)
        time.sleep(0.01)
    for key, latency in seen.items():
        series[key].append(latency)
    return len(series) - len(seen)


def _forget_children(bench: Bench, setup: _LatencySetup) -> None:
    for tool in TOOLS:
        for _, pid, _ in _child_starts(setup.child_logs[tool]):
            bench.registry.extra_pids.add(pid)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _latency_rows(bench: Bench, series: dict[str, list[float]], misses: int) -> None:
    poll = bench.profile.poll
    for kind, what in (
        ("child", "change-to-child (restarted with new value)"),
        ("file", "change-to-file (rewritten)"),
    ):
        for q in (50, 95):
            row = Row(
                "3",
                f"{what} at {poll} poll: p{q}",
                "s",
                percentile(series[f"inject-{kind}"], q),
                percentile(series[f"agent-{kind}"], q),
                digits=2,
                short=f"{kind} latency p{q}",
            )
            row.target, row.met = "ratio ≤ 1", row.ratio <= 1
            bench.rows.append(row)
        bench.rows.append(
            Row(
                "3",
                f"{what} at {poll} poll: mean",
                "s",
                _mean(series[f"inject-{kind}"]),
                _mean(series[f"agent-{kind}"]),
                digits=2,
                chart=False,
            )
        )
    counts = ", ".join(f"{key} {len(values)}" for key, values in series.items())
    bench.notes.append(
        f"Latency: {bench.profile.changes} changes, each after a random pause of up to one poll interval "
        f"so the change lands at a random point of each tool's poll cycle; all four processes "
        f"(inject -- child, inject watch, bao agent exec mode, bao agent template) run side by side "
        f"against the same secret. Samples: {counts}; "
        f"missed (no reaction within {CHANGE_TIMEOUT_S:g} s): {misses}."
    )
    for key, values in series.items():
        samples = " ".join(f"{v:.2f}" for v in sorted(values))
        bench.notes.append(f"Latency samples, {key} (s, sorted): {samples}")
