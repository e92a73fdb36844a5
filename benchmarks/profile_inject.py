"""Where ``inject render`` spends its time and memory, with the standard library only.

    python benchmarks/profile_inject.py [--templates 50 [500 ...]] [--out PROFILE.md]

Starts its own dev server, seeds N secrets, and reports in Markdown:

* ``-X importtime``: cumulative import time of the heavy packages and of inject's modules;
* peak RSS of a bare interpreter and after importing each dependency on its own;
* ``cProfile`` of one ``inject render`` of N templates: time by phase (imports, config and
  template compilation, HTTP reads, rendering, writing files) and the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from baoserver import Server, clean_env
from procs import run_measured
from tools import KEY, TemplateSet, inject_toml, kv_path

from vault_inject.devserver import find_bao, free_port_pair

PROFILE_TIMEOUT_S = 120.0
HEAVY = (
    "click",
    "jinja2",
    "markupsafe",
    "requests",
    "urllib3",
    "charset_normalizer",
    "idna",
    "certifi",
    "hvac",
    "psutil",
    "watchfiles",
    "http.client",
    "ssl",
    "json",
    "logging",
    "tomllib",
)
RSS_MODULES = ("click", "jinja2", "requests", "hvac", "psutil", "watchfiles", "vault_inject.cli")
RSS_WITH = (
    ("inject render's imports", ("vault_inject.cli", "vault_inject.app", "vault_inject.vault")),
    (
        "inject watch's imports",
        ("vault_inject.cli", "vault_inject.app", "vault_inject.supervisor", "watchfiles"),
    ),
)
# cProfile phases: (label, function-name pattern matched against "file:line(function)")
PHASES = (
    ("imports (all modules)", r"<frozen importlib._bootstrap>.*\(_find_and_load\)"),
    ("config + compile templates (app.prepare)", r"vault_inject/app.py:\d+\(prepare\)"),
    ("log in (app.login)", r"vault_inject/app.py:\d+\(login\)"),
    (
        "concurrent prefetch (VaultClient.read_many; its reads run in worker threads, unseen by cProfile)",
        r"vault_inject/vault.py:\d+\(read_many\)",
    ),
    ("render all templates (Renderer.render_all)", r"vault_inject/render.py:\d+\(render_all\)"),
    (
        "HTTP requests made in the main thread (VaultClient._attempt: token lookup, mount lookup)",
        r"vault_inject/vault.py:\d+\(_attempt\)",
    ),
    ("write files (files.write_all)", r"vault_inject/files.py:\d+\(write_all\)"),
)


def _import_times(
    python: str, argv: Sequence[str], env: dict[str, str], cwd: Path
) -> tuple[dict[str, int], int]:
    """Cumulative import time (us) per module from one ``-X importtime`` run of ``argv``,
    and the sum over top-level imports (all import time)."""
    done = subprocess.run(
        [python, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=PROFILE_TIMEOUT_S,
        check=False,
    )
    times: dict[str, int] = {}
    total = 0
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            times.setdefault(match.group(3), int(match.group(1)))
            total += int(match.group(1)) if len(match.group(2)) == 1 else 0
    return times, total


def _rss_after_import(python: str, modules: Sequence[str]) -> float:
    """Peak RSS (MB) of a fresh interpreter after importing ``modules``.

    VmHWM, not ru_maxrss: ru_maxrss would include this (bigger) parent's size at fork."""
    code = (
        "import importlib, sys\n"
        "for m in sys.argv[1:]: importlib.import_module(m)\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
    )
    done = subprocess.run(
        [python, "-c", code, *modules], capture_output=True, text=True, timeout=PROFILE_TIMEOUT_S, check=True
    )
    return int(done.stdout.strip()) / 1024


def _phases(stats: pstats.Stats) -> list[tuple[str, float]]:
    entries = stats.stats  # type: ignore[attr-defined]
    out = []
    for label, pattern in PHASES:
        cumulative = 0.0
        for (filename, line, name), (_, _, _, ct, _) in entries.items():
            if re.search(pattern, f"{filename}:{line}({name})"):
                cumulative = max(cumulative, ct)
        out.append((label, cumulative))
    return out


def _top(stats: pstats.Stats, sort: str, count: int) -> str:
    buffer = io.StringIO()
    stats.stream = buffer  # type: ignore[attr-defined]
    stats.sort_stats(sort).print_stats(count)
    text = buffer.getvalue()
    return text[text.find("   ncalls") :].rstrip()


def profile(templates: int) -> str:
    """Run every profile against a fresh server; return the Markdown report."""
    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="inject-profile-"))
    server = Server(find_bao(), free_port_pair(), "prof-" + secrets.token_hex(12), work, work / "audit.log")
    try:
        server.start()
        token_file = work / "token"
        token_file.write_text(server.token + "\n")
        token_file.chmod(0o600)
        names = [f"p{i}" for i in range(templates)]
        for name in names:
            server.kv_put(kv_path(name), {KEY: f"v1-{name}"})
        tset = TemplateSet(work / "t", [[n] for n in names]).write()
        config = work / "inject.toml"
        config.write_text(
            inject_toml(address=server.address, token_file=token_file, templates=tset.inject_pairs)
        )
        env = clean_env(work)
        argv = ["-m", "vault_inject", "render", "-c", str(config)]
        return _report(python, argv, env, work, tset, templates) + _poll_report(server, names)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _report(python: str, argv: list[str], env: dict[str, str], work: Path, tset: TemplateSet, n: int) -> str:
    lines = [f"# Where `inject render` of {n} templates spends time and memory", ""]
    tset.clear_outputs()
    run = run_measured([python, *argv], env=env, cwd=work, log=work / "run.log", timeout_s=PROFILE_TIMEOUT_S)
    lines += [
        f"One plain run: wall {run.wall_s:.3f} s, CPU {run.cpu_s:.3f} s, "
        f"peak RSS {run.max_rss_kb / 1024:.1f} MB, exit {run.code}.",
        "",
        "## Import time (`-X importtime`, cumulative, ms)",
        "",
    ]
    tset.clear_outputs()
    times, total = _import_times(python, argv, env, work)
    lines += ["| module | ms |", "|---|---:|", f"| **all imports** | {total / 1000:.1f} |"]
    for module in HEAVY:
        if module in times:
            lines.append(f"| {module} | {times[module] / 1000:.1f} |")
    ours = sorted(((t, m) for m, t in times.items() if m.startswith("vault_inject")), reverse=True)
    lines += [f"| {m} | {t / 1000:.1f} |" for t, m in ours[:10]]
    lines += ["", "## Peak RSS after importing (fresh interpreter, MB)", "", "| imports | MB |", "|---|---:|"]
    lines.append(f"| nothing (bare `python -c`) | {_rss_after_import(python, []):.1f} |")
    for module in RSS_MODULES:
        lines.append(f"| {module} | {_rss_after_import(python, [module]):.1f} |")
    for label, modules in RSS_WITH:
        lines.append(f"| {label} | {_rss_after_import(python, modules):.1f} |")
    tset.clear_outputs()
    prof = work / "render.prof"
    started = time.perf_counter()
    subprocess.run(
        [python, "-m", "cProfile", "-o", str(prof), *argv],
        env=env,
        cwd=work,
        capture_output=True,
        timeout=PROFILE_TIMEOUT_S,
        check=False,
    )
    elapsed = time.perf_counter() - started
    stats = pstats.Stats(str(prof))
    lines += [
        "",
        f"## cProfile of one render ({elapsed:.2f} s wall under the profiler; profiler overhead inflates "
        "Python-heavy parts)",
        "",
        "| phase | cumulative s |",
        "|---|---:|",
        *(f"| {label} | {seconds:.3f} |" for label, seconds in _phases(stats)),
        "",
        "Top functions by internal time:",
        "",
        "```",
        _top(stats, "tottime", 20),
        "```",
    ]
    return "\n".join(lines) + "\n"


POLL_ROUNDS = 20
POLL_PHASES = (
    (
        "requests: proxies from the environment (merge_environment_settings)",
        "merge_environment_settings",
    ),
    ("requests: prepare_request", "prepare_request"),
    ("urllib3: urlopen (send + wait + parse headers)", "urlopen"),
    ("requests: Response.json", "json"),
)


def _poll_report(server: Server, names: Sequence[str]) -> str:
    """What one steady-state poll costs: the poll thread's work (VaultClient.read per path),
    run in this process, timed without and then with cProfile."""
    from vault_inject.vault import ServerSettings, VaultClient

    client = VaultClient(ServerSettings(address=server.address), server.token, retry_timeout_s=0)
    try:
        for name in names:  # mount lookup and connection set up, as after inject's first render
            client.read(kv_path(name))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(POLL_ROUNDS):
            for name in names:
                client.read(kv_path(name))
        reads = POLL_ROUNDS * len(names)
        cpu_ms = (time.process_time() - cpu0) / reads * 1000
        wall_ms = (time.perf_counter() - wall0) / reads * 1000
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(POLL_ROUNDS):
            for name in names:
                client.read(kv_path(name))
        profiler.disable()
    finally:
        client.close()
    stats = pstats.Stats(profiler)
    total = max(ct for (_, _, _, ct, _) in stats.stats.values())  # type: ignore[attr-defined]
    lines = [
        "",
        f"## One poll of {len(names)} paths (what the poll thread does), {reads} reads",
        "",
        f"Unprofiled: {cpu_ms:.2f} ms CPU and {wall_ms:.2f} ms wall per read, read one after another "
        f"(a poll of {len(names)} paths: {cpu_ms * len(names):.0f} ms CPU, "
        f"{wall_ms * len(names):.0f} ms wall).",
        "",
        "| part of VaultClient.read (profiled) | share of read time |",
        "|---|---:|",
    ]
    for label, name in POLL_PHASES:
        cumulative = max(
            (ct for (_, _, func), (_, _, _, ct, _) in stats.stats.items() if func == name),  # type: ignore[attr-defined]
            default=0.0,
        )
        lines.append(f"| {label} | {cumulative / total:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print (or write) the profile report."""
    parser = argparse.ArgumentParser(description="Profile inject render (stdlib tools only).")
    parser.add_argument("--templates", type=int, nargs="+", default=[50], help="sizes to profile")
    parser.add_argument("--out", type=Path, default=None, help="write the report here instead of stdout")
    args = parser.parse_args(argv)
    text = "\n".join(profile(size) for size in args.templates)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
