"""1. Render once: `inject render` vs `bao agent` with `exit_after_auth`, per size.

Wall time, peak RSS and CPU from `os.wait4`, server requests from the audit log;
medians of runs that alternate which tool goes first.
"""

from __future__ import annotations

from pathlib import Path

import audit
from baoserver import BenchError
from bench import (
    KB_PER_MB,
    TOOLS,
    Bench,
    names,
    outputs_ok,
)
from procs import run_measured
from report import Row, median
from tools import (
    TemplateSet,
)

RENDER_TIMEOUT_S = 300.0


def render_once(bench: Bench) -> None:
    """Wall time, peak RSS, CPU and server requests of one complete render, per size."""
    for size in bench.profile.sizes:
        _render_size(bench, size)


def _render_size(bench: Bench, size: int) -> None:
    templates = TemplateSet(bench.work / f"render-{size}", [[n] for n in names(size)]).write()
    argv = {
        "inject": [
            *bench.inject_cmd,
            "render",
            "-c",
            str(bench.inject_config(templates.root / "inject.toml", templates.inject_pairs, poll=False)),
        ],
        "agent": bench.agent_argv(
            bench.agent_config(
                templates.root / "agent.hcl", templates=templates.agent_pairs, exit_after_auth=True
            )
        ),
    }
    pairs = {"inject": templates.inject_pairs, "agent": templates.agent_pairs}
    runs: dict[str, list[tuple[float, float, float, int]]] = {tool: [] for tool in TOOLS}
    if bench.profile.warmup:  # page cache and first-exec costs, not counted
        for tool in TOOLS:
            _render_run(bench, templates, tool, argv[tool], pairs[tool])
    for rep in range(bench.profile.reps):
        for tool in TOOLS if rep % 2 == 0 else reversed(TOOLS):
            runs[tool].append(_render_run(bench, templates, tool, argv[tool], pairs[tool]))
    _render_rows(bench, size, runs)


def _render_run(
    bench: Bench, templates: TemplateSet, tool: str, argv: list[str], pairs: list[tuple[Path, Path]]
) -> tuple[float, float, float, int]:
    templates.clear_outputs()
    start = audit.offset(str(bench.server.audit_log))
    run = run_measured(
        argv, env=bench.env, cwd=templates.root, log=bench.log(f"render-{tool}"), timeout_s=RENDER_TIMEOUT_S
    )
    if run.code != 0:
        raise BenchError(f"{tool} render exited with {run.code}; see {bench.log(f'render-{tool}')}")
    if not outputs_ok(bench, pairs, templates.groups):
        raise BenchError(f"{tool} render exited 0 but its files are missing or wrong")
    requests = audit.by_accessor(audit.read(str(bench.server.audit_log), start), bench.accessors[tool])
    return run.wall_s, run.max_rss_kb / KB_PER_MB, run.cpu_s, len(requests)


def _render_rows(bench: Bench, size: int, runs: dict[str, list[tuple[float, float, float, int]]]) -> None:
    def med(tool: str, index: int) -> float | None:
        return median([run[index] for run in runs[tool]])

    what = f"render once, {size} templates"
    wall = Row(
        "1", f"{what}: wall time", "s", med("inject", 0), med("agent", 0), 3, short=f"render {size}: wall"
    )
    rss = Row(
        "1", f"{what}: peak RSS", "MB", med("inject", 1), med("agent", 1), 1, short=f"render {size}: peak rss"
    )
    if size == 50:
        wall.target, wall.met = "ratio < 1", wall.ratio < 1
    rss.target, rss.met = "ratio ≤ 0.5", rss.ratio <= 0.5
    bench.rows += [
        wall,
        rss,
        Row(
            "1",
            f"{what}: CPU time (user+sys)",
            "s",
            med("inject", 2),
            med("agent", 2),
            3,
            short=f"render {size}: cpu",
        ),
        Row(
            "1",
            f"{what}: server requests",
            "requests",
            med("inject", 3),
            med("agent", 3),
            0,
            short=f"render {size}: requests",
        ),
    ]
