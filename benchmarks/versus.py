"""inject against bao agent (and issue 13's start-up references), same work, one server:
render once, steady state with requests per poll and change latency, a fleet, start-up.

Each template prints one KV v2 secret's ``password``; both tools must write identical files.
Short runs alternate which command goes first (one unmeasured warm-up round); rows hold medians.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from harness import (
    Bench,
    BenchError,
    Measured,
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
TOOLS = ("inject", "agent")
Pairs = list[tuple[Path, Path]]  # (template source, destination)
LINE = {
    "inject": "{{{{ secret('secret/bench/{0}').password }}}}\n",
    "agent": '{{{{ with secret "secret/data/bench/{0}" }}}}{{{{ .Data.data.password }}}}{{{{ end }}}}\n',
}


def text(path: Path) -> str:
    """A file's text, or "" while it does not exist."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def seed(bench: Bench, names: Sequence[str], tag: str = "v1") -> dict[str, str]:
    """Write a version of each named secret; the values written."""
    values = {name: f"{tag}-{name}" for name in names}
    for name, value in values.items():
        bench.server.kv_put(name, value)
    return values


def write_templates(root: Path, groups: Sequence[Sequence[str]], tool: str) -> Pairs:
    """One template per group of secret names in ``tool``'s syntax; (source, destination) each."""
    (root / tool).mkdir(parents=True, exist_ok=True)
    pairs = [(root / tool / f"t{i}.tpl", root / tool / f"t{i}.out") for i in range(len(groups))]
    for (source, _), group in zip(pairs, groups, strict=True):
        source.write_text("".join(LINE[tool].format(name) for name in group))
    return pairs


def rendered(pairs: Pairs, groups: Sequence[Sequence[str]], values: dict[str, str]) -> bool:
    """Every destination holds exactly its group's current values."""
    want = ("".join(values[name] + "\n" for name in group) for group in groups)
    return all(text(dest) == wanted for (_, dest), wanted in zip(pairs, want, strict=True))


def command(
    bench: Bench, tool: str, root: Path, pairs: Pairs, *, watch: bool, as_tool: str = ""
) -> list[str]:
    """``inject render|watch -c FILE`` or ``bao agent -config=FILE`` for these templates."""
    token_file, address = json.dumps(str(bench.tokens[as_tool or tool][0])), json.dumps(bench.server.address)
    poll = f'"{bench.profile.poll_s:g}s"'
    if tool == "agent":
        lines = [f"vault {{ address = {address} }}", "template_config {"]
        lines += [f"  static_secret_render_interval = {poll}", "}" if watch else "}\nexit_after_auth = true"]
        lines += [f'auto_auth {{ method "token_file" {{ config = {{ token_file_path = {token_file} }} }} }}']
        lines += [f'template {{ source = "{s}"\n destination = "{d}" }}' for s, d in pairs]
        config = root / f"{pairs[0][0].stem}.hcl"
        config.write_text("\n".join(lines) + "\n")
        return [bench.bao, "agent", f"-config={config}"]
    lines = ["[vault]", f"address = {address}", "[auth]", f"token_file = {token_file}"]
    lines += ["[watch]", f"poll_interval = {poll}"]
    lines += [f'[[template]]\nsource = "{s}"\ndestination = "{d}"' for s, d in pairs]
    config = root / f"{pairs[0][0].stem}.toml"
    config.write_text("\n".join(lines) + "\n")
    return [*bench.inject, "watch" if watch else "render", "-c", str(config)]


def alternate(
    bench: Bench, argv: dict[str, list[str]], name: str, check: Callable[[str], bool] = lambda _: True
) -> dict[str, Measured]:
    """Run each command ``reps`` times, alternating which goes first, after one warm-up round;
    the median wall time and peak RSS of each."""
    runs: dict[str, list[Measured]] = {key: [] for key in argv}
    for rep in range(bench.profile.reps + 1):
        for key in list(argv) if rep % 2 else reversed(list(argv)):
            run = run_measured(argv[key], env=bench.env, cwd=bench.work, log=bench.log(f"{name}-{key}"))
            if run.code != 0 or not check(key):
                raise BenchError(f"{key} exited {run.code} or wrote wrong files; see {name}-{key}.log")
            runs[key] += [run] if rep else []
    return {
        k: Measured(median([r.wall_s for r in v]), median([r.rss_mb for r in v]), 0) for k, v in runs.items()
    }


# --- render once ----------------------------------------------------------------------


def render_once(bench: Bench) -> None:
    """``inject render`` vs ``bao agent`` with exit_after_auth: wall time and peak RSS per size."""
    for size in bench.profile.sizes:
        groups = [[f"p{i}"] for i in range(size)]
        values, root = seed(bench, [g[0] for g in groups]), bench.work / f"render-{size}"
        pairs = {tool: write_templates(root, groups, tool) for tool in TOOLS}
        argv = {tool: command(bench, tool, root, pairs[tool], watch=False) for tool in TOOLS}

        check = partial(_rendered_then_cleared, pairs, groups, values)
        inject, agent = alternate(bench, argv, f"render-{size}", check).values()
        row = bench.add(f"render once, {size} templates: wall", "s", inject.wall_s, agent.wall_s)
        row.target, row.passed = "ratio < 1.0", row.ratio < 1.0
        row = bench.add(
            f"render once, {size} templates: peak RSS", "MB", inject.rss_mb, agent.rss_mb, digits=1
        )
        row.target, row.passed = "ratio ≤ 0.5", row.ratio <= 0.5


def _rendered_then_cleared(
    pairs: dict[str, Pairs], groups: list[list[str]], values: dict[str, str], tool: str
) -> bool:
    ok = rendered(pairs[tool], groups, values)
    for _, dest in pairs[tool]:
        dest.unlink(missing_ok=True)  # so that the next run writes every file again
    return ok


# --- steady state, requests per poll, change latency ------------------------------------


def watching(bench: Bench) -> None:
    """Both tools watch the same paths side by side: CPU, RSS, requests per poll, change latency."""
    groups = [[f"w{i}"] for i in range(bench.profile.watch_paths)]
    values, root = seed(bench, [g[0] for g in groups]), bench.work / "watch"
    pairs = {tool: write_templates(root, groups, tool) for tool in TOOLS}
    logs = [bench.log(f"watch-{tool}") for tool in TOOLS]
    procs = [start(command(bench, t, root, pairs[t], watch=True), env=bench.env, cwd=root, log=log)
             for t, log in zip(TOOLS, logs, strict=True)]  # fmt: skip
    try:
        both = lambda: running(procs, logs) and all(rendered(pairs[t], groups, values) for t in TOOLS)  # noqa: E731
        wait_until(both, timeout_s=READY_TIMEOUT_S, what="both tools' first render")
        time.sleep(2 * bench.profile.poll_s)  # settle past the first poll
        _steady_window(bench, [p.pid for p in procs], len(groups))
        _change_latency(bench, groups[0][0], {tool: pairs[tool][0][1] for tool in TOOLS})
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
    bench.add(f"{what}: CPU", "s/min", cpu[0], cpu[1], digits=2)
    bench.add(f"{what}: RSS", "MB", median(rss[0]), median(rss[1]), digits=1)
    per_poll = [_requests_per_poll(bench, offset, tool) for tool in TOOLS]
    row = bench.add(f"{what}: requests per poll", "requests", *per_poll, digits=1)
    row.target, row.passed = f"= {paths} (paths)", round(row.inject) == paths


def _requests_per_poll(bench: Bench, offset: int, tool: str) -> float:
    """Every request the tool's token made in the window / poll cycles (mean reads per path)."""
    requests = audited(bench.server, offset, bench.tokens[tool][1])
    reads = Counter(r.path for r in requests if r.path.startswith("secret/data/bench/"))
    cycles = sum(reads.values()) / len(reads) if reads else 0
    return len(requests) / cycles if cycles else float("nan")


def _change_latency(bench: Bench, name: str, dests: dict[str, Path]) -> None:
    """KV write -> destination holds the new value (its mtime), per tool; a random phase per change."""
    latency: dict[str, list[float]] = {tool: [] for tool in TOOLS}
    rng = random.Random(10)  # noqa: S311 - a phase, not a secret
    for index in range(bench.profile.changes):
        time.sleep(rng.uniform(0, bench.profile.poll_s))
        written, value = time.time(), seed(bench, [name], tag=f"v{index + 2}")[name]
        for tool, dest in dests.items():
            new = lambda d=dest, v=value: text(d) == v + "\n"  # noqa: E731
            wait_until(new, timeout_s=CHANGE_TIMEOUT_S, what=f"{tool}'s file to change")
            latency[tool].append(dest.stat().st_mtime - written)
    for q in (50, 95):
        p = [percentile(latency[tool], q) for tool in TOOLS]
        bench.add(f"change latency (KV write -> file written), p{q}", "s", *p, digits=2)


# --- a fleet ----------------------------------------------------------------------------


def fleet(bench: Bench) -> None:
    """N ``inject watch`` against one server, 3 paths each: load, spread, per-process cost, fan-out."""
    count, names, root = bench.profile.fleet, ["f0", "f1", "f2"], bench.work / "fleet"
    values, groups = seed(bench, names), [names] * count
    pairs = write_templates(root, groups, "inject")
    argv = [command(bench, "inject", root, [pair], watch=True, as_tool="fleet") for pair in pairs]
    logs = [bench.log(f"fleet-{i}") for i in range(count)]
    procs = [start(a, env=bench.env, cwd=root, log=log) for a, log in zip(argv, logs, strict=True)]
    try:
        done = lambda: running(procs, logs) and rendered(pairs, groups, values)  # noqa: E731
        wait_until(done, timeout_s=READY_TIMEOUT_S + count, what="the fleet's first render", step_s=0.1)
        time.sleep(2 * bench.profile.poll_s)
        _fleet_window(bench, [p.pid for p in procs])
        written = time.time()
        values.update(seed(bench, names[:1], tag="v2"))
        wait_until(done, timeout_s=CHANGE_TIMEOUT_S + count / 10, what="the fleet's re-render", step_s=0.05)
        latest = max(dest.stat().st_mtime for _, dest in pairs) - written
        bench.add(f"fleet of {count}: KV write -> every file rewritten", "s", latest, digits=2)
    finally:
        stop(procs)


def _fleet_window(bench: Bench, pids: list[int]) -> None:
    count, window_s = len(pids), bench.profile.window_s
    offset, cpu0, begin = audit_offset(bench.server), sum(cpu_s(p) for p in pids), time.time()
    time.sleep(window_s)
    cpu, rss = sum(cpu_s(p) for p in pids) - cpu0, median([rss_mb(p) for p in pids])
    requests = [r for r in audited(bench.server, offset, bench.tokens["fleet"][1]) if begin <= r.time_s]
    polls = [r.time_s - begin for r in requests if r.path.endswith("/f0") and r.time_s < begin + window_s]
    what = f"fleet of {count} x 3 paths at {bench.profile.poll_s:g}s"
    rate, ideal = len(requests) / window_s, count * 3 / bench.profile.poll_s
    bench.add(f"{what}: server requests/s (ref.: 3 reads a poll)", "req/s", rate, ideal, digits=1)
    rng = random.Random(14)  # noqa: S311 - a simulation, not a secret
    uniform = [[rng.uniform(0, window_s) for _ in polls] for _ in range(200)]
    reference = median([_busiest(times, window_s) for times in uniform])
    spread = _busiest(polls, window_s)
    bench.add(
        f"{what}: busiest 100 ms of polls / mean (ref.: random times)", "ratio", spread, reference, digits=2
    )
    bench.add(f"{what}: RSS per injector", "MB", rss, digits=1)
    bench.add(f"{what}: CPU per injector", "s/min", cpu / count / window_s * 60, digits=2)


def _busiest(times: Sequence[float], window_s: float) -> float:
    """The busiest 100 ms bucket's count over the mean bucket's (1 = perfectly even)."""
    return max(Counter(int(t * 10) for t in times).values(), default=0) * window_s * 10 / max(1, len(times))


# --- start-up (issue 13) ----------------------------------------------------------------


def plain_pid1(bench: Bench) -> None:
    """``inject -- true`` with no templates and no references, against a bare ``python -c pass``."""
    argv = {"inject": [*bench.inject, "--", "true"], "python": [sys.executable, "-c", "pass"]}
    inject, python = (run.wall_s * 1000 for run in alternate(bench, argv, "plain").values())
    row = bench.add("`inject -- true` (plain PID 1); ref. `python -c pass`", "ms", inject, python, digits=1)
    row.target, row.passed = "< 60 ms", row.inject < 60


def env_refs(bench: Bench) -> None:
    """``inject --no-watch -- true`` with 5 env references vs ``python -c`` making the same requests."""
    names = list(seed(bench, [f"e{i}" for i in range(5)]))
    token_file, accessor = bench.tokens["inject"]
    inject = [*bench.inject, "--no-watch", "--address", bench.server.address, "--token-file", str(token_file)]
    inject += [arg for name in names for arg in ("-e", f"{name.upper()}=vault:secret/bench/{name}#password")]
    offset = audit_offset(bench.server)
    run_measured([*inject, "--", "true"], env=bench.env, cwd=bench.work, log=bench.log("refs"))
    made = [(r.operation, r.path) for r in audited(bench.server, offset, accessor) if "revoke" not in r.path]
    replay = [sys.executable, "-c", REPLAY, str(bench.server.port), str(token_file), json.dumps(made)]
    ms = [
        run.wall_s * 1000
        for run in alternate(bench, {"inject": [*inject, "--", "true"], "python": replay}, "refs").values()
    ]
    row = bench.add(
        f"`inject --no-watch`, 5 env refs; ref. `python -c` + its {len(made)} requests", "ms", *ms
    )
    row.target, row.passed, row.digits = "ratio ≤ 1.2", row.ratio <= 1.2, 1


# The reference for env_refs: a bare interpreter making inject's requests over one connection.
REPLAY = """
import http.client, json, sys
token = open(sys.argv[2]).read().strip()
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for operation, path in json.loads(sys.argv[3]):
    conn.request("GET" if operation == "read" else "POST", "/v1/" + path, headers={"X-Vault-Token": token})
    conn.getresponse().read()
"""
