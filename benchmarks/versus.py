"""inject against bao agent (and issue 13's start-up references), same work, one server:
render once, steady state with requests per poll and change latency, a fleet, start-up.

Each template prints one KV v2 secret's ``password``; both tools must write identical files.
Render-once and start-up runs alternate which tool goes first; rows hold the medians.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from harness import (
    Bench,
    BenchError,
    Row,
    audit_offset,
    audited,
    cpu_s,
    median,
    percentile,
    rss_mb,
    run_measured,
    running,
    start,
    stop,
    wait_until,
)

READY_TIMEOUT_S = 120.0
CHANGE_TIMEOUT_S = 15.0
Pairs = list[tuple[Path, Path]]  # (template source, destination)


def jinja(name: str) -> str:
    """inject's syntax for one secret's password."""
    return f"{{{{ secret('secret/bench/{name}').password }}}}\n"


def gotmpl(name: str) -> str:
    """bao agent's (consul-template) syntax for the same value."""
    return f'{{{{ with secret "secret/data/bench/{name}" }}}}{{{{ .Data.data.password }}}}{{{{ end }}}}\n'


def write_templates(root: Path, groups: Sequence[Sequence[str]]) -> dict[str, Pairs]:
    """One template per group of secret names, in both syntaxes; (source, destination) per tool."""
    pairs: dict[str, Pairs] = {"inject": [], "agent": []}
    for tool, line in (("inject", jinja), ("agent", gotmpl)):
        (root / tool).mkdir(parents=True, exist_ok=True)
        for index, group in enumerate(groups):
            source = root / tool / f"t{index}.tpl"
            source.write_text("".join(line(name) for name in group))
            pairs[tool].append((source, root / tool / f"t{index}.out"))
    return pairs


def inject_toml(bench: Bench, path: Path, pairs: Pairs, *, poll: bool, tool: str = "inject") -> Path:
    """inject's config: token from a file, these templates, the profile's poll interval if ``poll``."""
    lines = ["[vault]", f"address = {json.dumps(bench.server.address)}", "[auth]"]
    lines.append(f"token_file = {json.dumps(str(bench.tokens[tool][0]))}")
    if poll:
        lines += ["[watch]", f'poll_interval = "{bench.profile.poll_s:g}s"']
    for source, dest in pairs:
        lines += [
            "[[template]]",
            f"source = {json.dumps(str(source))}",
            f"destination = {json.dumps(str(dest))}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def agent_hcl(bench: Bench, path: Path, pairs: Pairs, *, once: bool) -> Path:
    """bao agent's config: token_file auto-auth, these templates, exit_after_auth or the poll interval."""
    token = json.dumps(str(bench.tokens["agent"][0]))
    lines = [f"vault {{ address = {json.dumps(bench.server.address)} }}"]
    lines.append(f'auto_auth {{ method "token_file" {{ config = {{ token_file_path = {token} }} }} }}')
    if once:
        lines.append("exit_after_auth = true")
    else:
        lines.append(f'template_config {{ static_secret_render_interval = "{bench.profile.poll_s:g}s" }}')
    for source, dest in pairs:
        lines.append(
            f"template {{\n  source = {json.dumps(str(source))}\n  destination = {json.dumps(str(dest))}\n}}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def rendered(pairs: Pairs, groups: Sequence[Sequence[str]], values: dict[str, str]) -> bool:
    """Every destination holds exactly its group's current values."""
    for (_, dest), group in zip(pairs, groups, strict=True):
        try:
            if dest.read_text() != "".join(values[name] + "\n" for name in group):
                return False
        except FileNotFoundError:
            return False
    return True


def seed(bench: Bench, names: Sequence[str], values: dict[str, str], tag: str = "v1") -> None:
    """Write a version of each named secret and remember its value."""
    for name in names:
        values[name] = f"{tag}-{name}"
        bench.server.kv_put(name, values[name])


# --- 1. render once -----------------------------------------------------------------


def render_once(bench: Bench) -> None:
    """``inject render`` vs ``bao agent`` with exit_after_auth: wall time and peak RSS per size."""
    for size in bench.profile.sizes:
        names = [f"p{i}" for i in range(size)]
        values: dict[str, str] = {}
        seed(bench, names, values)
        root = bench.work / f"render-{size}"
        groups = [[name] for name in names]
        pairs = write_templates(root, groups)
        argv = {
            "inject": [
                *bench.inject,
                "render",
                "-c",
                str(inject_toml(bench, root / "i.toml", pairs["inject"], poll=False)),
            ],
            "agent": [
                bench.bao,
                "agent",
                f"-config={agent_hcl(bench, root / 'a.hcl', pairs['agent'], once=True)}",
            ],
        }
        runs: dict[str, list[tuple[float, float]]] = {"inject": [], "agent": []}
        for rep in range(bench.profile.reps + 1):  # the first round warms the page cache, not counted
            for tool in ("inject", "agent") if rep % 2 else ("agent", "inject"):
                for _, dest in pairs[tool]:
                    dest.unlink(missing_ok=True)
                run = run_measured(argv[tool], env=bench.env, cwd=root, log=bench.log(f"render-{tool}"))
                if run.code != 0 or not rendered(pairs[tool], groups, values):
                    raise BenchError(f"{tool} render of {size} exited {run.code} or wrote wrong files")
                if rep:
                    runs[tool].append((run.wall_s, run.rss_mb))
        _render_rows(bench, size, runs)


def _render_rows(bench: Bench, size: int, runs: dict[str, list[tuple[float, float]]]) -> None:
    wall, rss = ({t: median([r[i] for r in runs[t]]) for t in runs} for i in (0, 1))
    bench.rows.append(
        Row(f"render once, {size} templates: wall", "s", wall["inject"], wall["agent"], "ratio < 1.0")
    )
    bench.rows.append(
        Row(
            f"render once, {size} templates: peak RSS",
            "MB",
            rss["inject"],
            rss["agent"],
            "ratio ≤ 0.5",
            digits=1,
        )
    )
    bench.rows[-2].passed = bench.rows[-2].ratio < 1.0
    bench.rows[-1].passed = bench.rows[-1].ratio <= 0.5


# --- 2. steady state, requests per poll, change latency ------------------------------


def watching(bench: Bench) -> None:
    """Both tools watch the same paths side by side: CPU, RSS, requests per poll, change latency."""
    paths = bench.profile.watch_paths
    names = [f"w{i}" for i in range(paths)]
    values: dict[str, str] = {}
    seed(bench, names, values)
    root, groups = bench.work / "watch", [[name] for name in names]
    pairs = write_templates(root, groups)
    argv = [
        [*bench.inject, "watch", "-c", str(inject_toml(bench, root / "i.toml", pairs["inject"], poll=True))],
        [bench.bao, "agent", f"-config={agent_hcl(bench, root / 'a.hcl', pairs['agent'], once=False)}"],
    ]
    logs = [bench.log("watch-inject"), bench.log("watch-agent")]
    procs = [start(a, env=bench.env, cwd=root, log=log) for a, log in zip(argv, logs, strict=True)]
    try:
        both = lambda: running(procs, logs) and all(rendered(pairs[t], groups, values) for t in pairs)  # noqa: E731
        wait_until(both, timeout_s=READY_TIMEOUT_S, what="first renders")
        time.sleep(2 * bench.profile.poll_s)  # settle past the first poll
        _steady_window(bench, [p.pid for p in procs], paths)
        _change_latency(
            bench, names[0], values, {"inject": pairs["inject"][0][1], "agent": pairs["agent"][0][1]}
        )
        running(procs, logs)
    finally:
        stop(procs)


def _steady_window(bench: Bench, pids: list[int], paths: int) -> None:
    offset, cpu0, t0 = audit_offset(bench.server), [cpu_s(p) for p in pids], time.monotonic()
    rss: list[list[float]] = [[], []]
    while time.monotonic() - t0 < bench.profile.window_s:
        for samples, pid in zip(rss, pids, strict=True):
            samples.append(rss_mb(pid))
        time.sleep(0.5)
    seconds = time.monotonic() - t0
    cpu = [(cpu_s(p) - c) / seconds * 60 for p, c in zip(pids, cpu0, strict=True)]
    what = f"steady state, {paths} paths at {bench.profile.poll_s:g}s poll"
    bench.rows.append(Row(f"{what}: CPU", "s/min", cpu[0], cpu[1], digits=2))
    bench.rows.append(Row(f"{what}: RSS", "MB", median(rss[0]), median(rss[1]), digits=1))
    per_poll = [_requests_per_poll(bench, offset, tool) for tool in ("inject", "agent")]
    row = Row(
        f"{what}: requests per poll", "requests", per_poll[0], per_poll[1], f"= {paths} (paths)", digits=1
    )
    row.passed = round(row.inject) == paths
    bench.rows.append(row)


def _requests_per_poll(bench: Bench, offset: int, tool: str) -> float:
    """Every request the tool's token made in the window / poll cycles (mean reads per path)."""
    requests = audited(bench.server, offset, bench.tokens[tool][1])
    reads = Counter(r.path for r in requests if r.path.startswith("secret/data/bench/"))
    cycles = sum(reads.values()) / len(reads) if reads else 0
    return len(requests) / cycles if cycles else float("nan")


def _change_latency(bench: Bench, name: str, values: dict[str, str], dests: dict[str, Path]) -> None:
    """KV write -> destination holds the new value (its mtime), per tool; random phase per change."""
    latency: dict[str, list[float]] = {"inject": [], "agent": []}
    rng = random.Random(10)  # noqa: S311 - a phase, not a secret
    for index in range(bench.profile.changes):
        time.sleep(rng.uniform(0, bench.profile.poll_s))
        values[name] = value = f"v{index + 2}-{name}"
        written = time.time()
        bench.server.kv_put(name, value)
        for tool, dest in dests.items():
            wait_until(partial(_holds, dest, value), timeout_s=CHANGE_TIMEOUT_S, what=f"{tool} change")
            latency[tool].append(dest.stat().st_mtime - written)
    for q in (50, 95):
        what = f"change latency (KV write -> file), p{q}"
        bench.rows.append(
            Row(what, "s", percentile(latency["inject"], q), percentile(latency["agent"], q), digits=2)
        )


def _holds(path: Path, value: str) -> bool:
    try:
        return path.read_text() == value + "\n"
    except FileNotFoundError:
        return False


# --- 3. a fleet ---------------------------------------------------------------------


def fleet(bench: Bench) -> None:
    """N ``inject watch`` against one server, 3 paths each: load, spread, per-process cost, fan-out."""
    count, names, values = bench.profile.fleet, ["f0", "f1", "f2"], dict[str, str]()
    seed(bench, names, values)
    root = bench.work / "fleet"
    pairs = write_templates(root, [names] * count)["inject"]
    procs, logs = [], []
    for index in range(count):
        config = inject_toml(bench, root / f"w{index}.toml", [pairs[index]], poll=True, tool="fleet")
        logs.append(bench.log(f"fleet-{index}"))
        procs.append(
            start([*bench.inject, "watch", "-c", str(config)], env=bench.env, cwd=root, log=logs[-1])
        )
    try:
        done = lambda: running(procs, logs) and rendered(pairs, [names] * count, values)  # noqa: E731
        wait_until(done, timeout_s=READY_TIMEOUT_S + count, what="the fleet's first render", step_s=0.1)
        time.sleep(2 * bench.profile.poll_s)
        _fleet_window(bench, [p.pid for p in procs])
        start_s = time.time()
        seed(bench, names[:1], values, tag="v2")
        wait_until(done, timeout_s=CHANGE_TIMEOUT_S + count / 10, what="the fleet's re-render", step_s=0.05)
        fanout = [dest.stat().st_mtime - start_s for _, dest in pairs]
        bench.rows.append(
            Row(f"fleet of {count}: KV write -> all files rewritten", "s", max(fanout), digits=2)
        )
    finally:
        stop(procs)


def _fleet_window(bench: Bench, pids: list[int]) -> None:
    count, window_s = len(pids), bench.profile.window_s
    offset, cpu0, begin = audit_offset(bench.server), sum(cpu_s(p) for p in pids), time.time()
    time.sleep(window_s)
    cpu, rss = sum(cpu_s(p) for p in pids) - cpu0, median([rss_mb(p) for p in pids])
    reads = [r.time_s for r in audited(bench.server, offset, bench.tokens["fleet"][1]) if r.time_s >= begin]
    buckets = Counter(int((t - begin) * 10) for t in reads if t < begin + window_s)
    spread = max(buckets.values(), default=0) / (len(reads) / (10 * window_s)) if reads else float("nan")
    what = f"fleet of {count} x 3 paths at {bench.profile.poll_s:g}s"
    expected = count * 3 / bench.profile.poll_s
    bench.rows.append(
        Row(f"{what}: server requests/s (ideal {expected:g})", "req/s", len(reads) / window_s, digits=1)
    )
    bench.rows.append(Row(f"{what}: busiest 100 ms / mean (1 = even)", "ratio", spread, digits=2))
    bench.rows.append(Row(f"{what}: RSS per injector", "MB", rss, digits=1))
    bench.rows.append(Row(f"{what}: CPU per injector", "s/min", cpu / count / window_s * 60, digits=2))


# --- 4. start-up (issue 13) ---------------------------------------------------------


def plain_pid1(bench: Bench) -> None:
    """``inject -- true`` with no templates and no references, against a bare ``python -c pass``."""
    argv = {"inject": [*bench.inject, "--", "true"], "python": [sys.executable, "-c", "pass"]}
    wall = _alternate(bench, argv, "plain")
    row = Row(
        "`inject -- true` (plain PID 1) vs `python -c pass`",
        "ms",
        wall["inject"] * 1000,
        wall["python"] * 1000,
    )
    row.target, row.passed, row.digits = "< 60 ms", row.inject < 60, 1
    bench.rows.append(row)


def env_refs(bench: Bench) -> None:
    """``inject --no-watch -- true`` with 5 env references vs ``python -c`` making the same requests."""
    names, values = [f"e{i}" for i in range(5)], dict[str, str]()
    seed(bench, names, values)
    token_file, accessor = bench.tokens["inject"]
    refs = [arg for i, name in enumerate(names) for arg in ("-e", f"V{i}=vault:secret/bench/{name}#password")]
    inject = [*bench.inject, "--no-watch", "--address", bench.server.address, "--token-file", str(token_file)]
    offset = audit_offset(bench.server)
    run_measured([*inject, *refs, "--", "true"], env=bench.env, cwd=bench.work, log=bench.log("refs"))
    made = [(r.operation, r.path) for r in audited(bench.server, offset, accessor) if "revoke" not in r.path]
    replay = [sys.executable, "-c", _REPLAY, str(bench.server.port), str(token_file), json.dumps(made)]
    wall = _alternate(bench, {"inject": [*inject, *refs, "--", "true"], "python": replay}, "refs")
    row = Row(
        f"`inject --no-watch` 5 env refs vs `python -c` + same {len(made)} requests",
        "ms",
        wall["inject"] * 1000,
    )
    row.reference, row.target, row.digits = wall["python"] * 1000, "ratio ≤ 1.2", 1
    row.passed = row.ratio <= 1.2
    bench.rows.append(row)


# The reference for env_refs: a bare interpreter making inject's requests over one connection.
_REPLAY = """
import http.client, json, sys
token = open(sys.argv[2]).read().strip()
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for operation, path in json.loads(sys.argv[3]):
    conn.request("GET" if operation == "read" else "POST", "/v1/" + path, headers={"X-Vault-Token": token})
    conn.getresponse().read()
"""


def _alternate(bench: Bench, argv: dict[str, list[str]], name: str) -> dict[str, float]:
    """Median wall time per command over alternating runs (one unmeasured warm-up round)."""
    walls: dict[str, list[float]] = {key: [] for key in argv}
    for rep in range(bench.profile.reps * 2 + 1):
        for key in list(argv) if rep % 2 else reversed(list(argv)):
            run = run_measured(argv[key], env=bench.env, cwd=bench.work, log=bench.log(f"{name}-{key}"))
            if run.code != 0:
                raise BenchError(f"{key} exited {run.code}; see {bench.log(f'{name}-{key}')}")
            if rep:
                walls[key].append(run.wall_s)
    return {key: median(values) for key, values in walls.items()}
