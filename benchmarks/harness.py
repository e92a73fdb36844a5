"""The benchmark's plumbing: its own audited OpenBao dev server (its audit log is the request
auditor), starting, measuring and stopping processes by pid, small statistics, the shared state.

Everything listens on 127.0.0.1 only; every wait has a deadline; every process started
here runs in its own session and is stopped by its pid (TERM, grace, KILL to the group).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import secrets
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from vault_inject.cli.devserver import free_port_pair

START_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 120.0  # a first render (plus a second per process started)
STOP_GRACE_S = 5.0
RUN_TIMEOUT_S = 300.0
HTTP_TIMEOUT_S = 30.0
SAMPLE_EVERY_S = 0.5
TIME_BIN = "/usr/bin/time"  # GNU time: a small parent, so the child's peak RSS is its own
T = TypeVar("T")


class BenchError(Exception):
    """The benchmark cannot go on (a tool failed, a deadline passed)."""


def text(path: Path) -> str:
    """A file's text, or "" while it does not exist."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def wait_for(condition: Callable[[], T], *, timeout_s: float, step_s: float = 0.01) -> T | None:
    """Poll ``condition`` until it returns something true; that value, or None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(step_s)
    return None


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str, step_s: float = 0.01) -> None:
    """Poll ``condition`` until it holds; BenchError naming ``what`` after ``timeout_s``."""
    if not wait_for(condition, timeout_s=timeout_s, step_s=step_s):
        raise BenchError(f"timed out after {timeout_s:g}s waiting for {what}")


def start(argv: Sequence[str], *, home: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session in ``home``, stdout and stderr appended to ``log``, with our
    environment minus VAULT_*/BAO_*/INJECT_* and HOME=``home`` (bao writes ~/.vault-token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))}
    env["HOME"] = str(home)
    with open(log, "ab") as out:
        quiet, merged = subprocess.DEVNULL, subprocess.STDOUT
        return subprocess.Popen(
            argv, stdin=quiet, stdout=out, stderr=merged, env=env, cwd=home, start_new_session=True
        )


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """TERM every process's group, one shared grace period, then KILL the groups left."""
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.05, deadline - time.monotonic()))
        _signal_group(proc, signal.SIGKILL)  # also the group's leftovers (a child of inject)
        proc.wait(timeout=STOP_GRACE_S)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # start() made pid the group id


def wait_exit(pid: int, timeout_s: float) -> float | None:
    """Block until process ``pid`` (not necessarily our child) exits; its monotonic exit time."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return time.monotonic()
    ready, now = select.select([fd], [], [], timeout_s)[0], time.monotonic()
    os.close(fd)
    return now if ready else None


class Measured(NamedTuple):
    """One finished run (or the medians of several): wall seconds, peak RSS in MB."""

    wall_s: float
    rss_mb: float


def run_measured(argv: Sequence[str], *, home: Path, log: Path) -> Measured:
    """Run ``argv`` to its end under GNU time (BenchError if it fails): wall time around it, peak RSS.
    The exit is seen at once through a pidfd (``Popen.wait(timeout)`` polls, in steps up to 50 ms)."""
    rss_file, started = log.with_suffix(".rss"), time.monotonic()
    proc = start([TIME_BIN, "-f", "%M", "-o", str(rss_file), *argv], home=home, log=log)
    if (ended := wait_exit(proc.pid, RUN_TIMEOUT_S)) is None:
        stop([proc])
        raise BenchError(f"{argv[0]} still ran after {RUN_TIMEOUT_S:g}s; see {log}")
    if (code := proc.wait()) != 0:
        raise BenchError(f"{argv[0]} exited with {code}; see {log}")
    words = rss_file.read_text().split()
    return Measured(ended - started, int(words[-1]) / 1024 if words and words[-1].isdigit() else 0)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a live process in MB."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def alternate(
    bench: Bench, argv: dict[str, list[str]], name: str, check: Callable[[str], bool] = lambda _: True
) -> dict[str, Measured]:
    """Run each command ``reps`` times, alternating which goes first, after one warm-up round;
    the median wall time and peak RSS of each."""
    runs: dict[str, list[Measured]] = {key: [] for key in argv}
    for rep in range(bench.profile.reps + 1):
        for key in list(argv) if rep % 2 else reversed(list(argv)):
            run = run_measured(argv[key], home=bench.work, log=bench.log(f"{name}-{key}"))
            if not check(key):
                raise BenchError(f"{key} wrote wrong files; see {name}-{key}.log")
            runs[key] += [run] if rep else []
    return {key: Measured(*map(median, zip(*done, strict=True))) for key, done in runs.items()}  # per field


@contextlib.contextmanager
def watchers(bench: Bench, argv: dict[str, list[str]], ready: Callable[[], bool]) -> Iterator[list[int]]:
    """Start each watching command (key: its log's name), wait until ``ready`` and two polls more;
    yield their pids; check that none has exited, then stop them all."""
    logs = [bench.log(name) for name in argv]
    procs = [start(a, home=bench.work, log=log) for a, log in zip(argv.values(), logs, strict=True)]

    def running() -> bool:  # or BenchError with the log's tail when one has exited
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                raise BenchError(f"{proc.args!r} exited with {proc.returncode}:\n{text(log)[-1500:]}")
        return True

    try:
        first = lambda: running() and ready()  # noqa: E731
        wait_until(first, timeout_s=READY_TIMEOUT_S + len(procs), what="the first render", step_s=0.05)
        time.sleep(2 * bench.profile.poll_s)  # settle past the first poll
        yield [p.pid for p in procs]
        running()
    finally:
        stop(procs)


def sample(pids: list[int], window_s: float) -> tuple[list[float], list[list[float]]]:
    """Watch the processes for ``window_s``: each one's CPU (s/min) and RSS samples (MB)."""
    cpu0, t0 = [cpu_s(p) for p in pids], time.monotonic()
    rss: list[list[float]] = [[] for _ in pids]
    while (left_s := window_s - (time.monotonic() - t0)) > 0:
        for samples, pid in zip(rss, pids, strict=True):
            samples.append(rss_mb(pid))
        time.sleep(min(SAMPLE_EVERY_S, left_s))
    seconds = time.monotonic() - t0
    return [(cpu_s(p) - c) / seconds * 60 for p, c in zip(pids, cpu0, strict=True)], rss


class Request(NamedTuple):
    """One request the server audited."""

    time_s: float  # Unix time
    path: str
    operation: str
    accessor: str


class Server:
    """``bao server -dev`` on a free 127.0.0.1 port with a file audit device declared in a config
    file (OpenBao 2.7 refuses API-enabled audit devices) that keeps accessors plain, to tell the
    tools apart; answering once constructed."""

    def __init__(self, bao: str, work: Path) -> None:
        self.bao, self.work, self.port = bao, work, free_port_pair()
        self.token, self.address = "bench-" + secrets.token_hex(16), f"http://127.0.0.1:{self.port}"
        self.audit_log, config = work / "audit.log", work / "server.hcl"
        options = f'file_path = "{self.audit_log}", hmac_accessor = "false"'
        config.write_text(f'audit "file" "bench" {{\n  options = {{ {options} }}\n}}\n')
        argv = [bao, "server", "-dev", f"-dev-root-token-id={self.token}"]
        argv += [f"-dev-listen-address=127.0.0.1:{self.port}", f"-config={config}"]
        self.process = start(argv, home=work, log=work / "server.log")
        try:
            wait_until(self._healthy, timeout_s=START_TIMEOUT_S, what="bao server -dev", step_s=0.05)
        except BenchError:
            stop([self.process])
            raise

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise BenchError(f"bao server exited with {self.process.returncode}; see server.log")
        try:
            return bool(self.api("GET", "sys/health"))
        except (OSError, http.client.HTTPException, BenchError):
            return False

    def api(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """Call the API with the root token (a new loopback connection each time: no stale keep-alive)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S)
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, "/v1/" + path, body=payload, headers={"X-Vault-Token": self.token})
        response = conn.getresponse()
        status, data = response.status, response.read()
        conn.close()
        if status >= 400:
            raise BenchError(f"{method} {path}: HTTP {status}")
        return dict(json.loads(data)) if data else {}

    def kv_put(self, name: str, value: str) -> None:
        """Write ``secret/bench/<name>`` with one key, ``password``."""
        self.api("POST", f"secret/data/bench/{name}", {"data": {"password": value}})

    def token_file(self, name: str) -> tuple[Path, str]:
        """A child token of root written to a private file; returns (file, accessor)."""
        auth = self.api("POST", "auth/token/create", {"display_name": name, "ttl": "24h"})["auth"]
        path = self.work / f"{name}.token"
        path.touch(mode=0o600)
        path.write_text(auth["client_token"] + "\n")
        return path, str(auth["accessor"])

    def audited(self, offset: int, accessor: str = "") -> list[Request]:
        """The requests logged after ``offset`` (the audit log's size before them), made with
        ``accessor`` when given."""
        with open(self.audit_log, "rb") as handle:
            handle.seek(offset)
            requests = [r for line in handle.read().splitlines() if (r := _request(line)) is not None]
        return [r for r in requests if not accessor or r.accessor == accessor]


def _request(line: bytes) -> Request | None:
    try:
        entry = json.loads(line)
    except ValueError:  # a line still being written
        return None
    if entry.get("type") != "request":
        return None
    request, auth = entry.get("request") or {}, entry.get("auth") or {}
    stamp = datetime.fromisoformat(entry["time"]).timestamp()  # nanoseconds are cut to micro
    return Request(stamp, request.get("path", ""), request.get("operation", ""), auth.get("accessor", ""))


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return percentile(values, 50)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile by linear interpolation (NaN for no values)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Profile:
    """How big and how long each measurement is."""

    reps: int  # alternating runs per tool (render once, startup)
    sizes: tuple[int, ...]  # templates rendered once
    watch_paths: int  # paths both tools watch in the steady state
    window_s: float  # steady-state and fleet measuring window
    changes: int  # KV writes for the change latency
    fleet: int  # inject watch processes against one server
    sessions: int  # signal latency: inject runs per situation (one SIGTERM each)
    usr1_per_session: int  # signal latency: forwarded SIGUSR1 trials per run
    busy_s: float  # how long the check / template command runs
    cap_s: float = 10.0  # a signal not delivered within this is counted as lost
    poll_s: float = 1.0


@dataclass
class Row:
    """One measured value against its reference (bao agent unless the label says otherwise)."""

    label: str
    unit: str
    inject: float
    reference: float = math.nan
    target: str = ""
    passed: bool | None = None
    digits: int = 3


@dataclass
class SignalRow:
    """Signal latencies (seconds) of one signal in one situation; lost = not delivered within the cap."""

    situation: str
    signal: str
    samples: list[float] = field(default_factory=list)
    lost: int = 0


@dataclass
class Bench:
    """One run's shared state: the server, the tools' tokens, the rows measured so far."""

    profile: Profile
    server: Server
    work: Path
    inject: list[str]  # argv prefix that runs the installed inject
    tokens: dict[str, tuple[Path, str]]  # tool -> (token file, accessor)
    rows: list[Row] = field(default_factory=list)
    signals: list[SignalRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, unit: str, inject: float, reference: float = math.nan, **how: Any) -> None:
        """Append a result row (``how``: target, passed, digits)."""
        self.rows.append(Row(label, unit, inject, reference, **how))

    def log(self, name: str) -> Path:
        """A log file for one process under test."""
        (self.work / "logs").mkdir(exist_ok=True)
        return self.work / "logs" / f"{name}.log"
