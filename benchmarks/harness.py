"""The benchmark's plumbing: its own audited OpenBao dev server, starting, measuring and
stopping processes by pid, reading the audit log, and small statistics.

Everything listens on 127.0.0.1 only; every wait has a deadline; every process started
here runs in its own session and is stopped by its pid (TERM, grace, KILL to the group).
"""

from __future__ import annotations

import calendar
import contextlib
import http.client
import json
import math
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
HTTP_TIMEOUT_S = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
TIME_BIN = "/usr/bin/time"  # GNU time: a small parent, so the child's peak RSS is its own


class BenchError(Exception):
    """The benchmark cannot go on (a tool failed, a deadline passed)."""


def clean_env(home: Path) -> dict[str, str]:
    """Our environment minus VAULT_*/BAO_*/INJECT_*, with a private HOME (bao writes ~/.vault-token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))}
    env["HOME"] = str(home)
    return env


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str, step_s: float = 0.01) -> None:
    """Poll ``condition`` until it holds; BenchError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step_s)
    raise BenchError(f"timed out after {timeout_s:g}s waiting for {what}")


# --- processes ----------------------------------------------------------------------


def start(argv: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, stdout and stderr appended to ``log``."""
    with open(log, "ab") as out:
        quiet, merged = subprocess.DEVNULL, subprocess.STDOUT
        return subprocess.Popen(
            argv, stdin=quiet, stdout=out, stderr=merged, env=env, cwd=cwd, start_new_session=True
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
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        return time.monotonic() if ready else None
    finally:
        os.close(fd)


def running(procs: Sequence[subprocess.Popen[bytes]], logs: Sequence[Path]) -> bool:
    """True, or BenchError with the log's tail when a process under test has exited."""
    for proc, log in zip(procs, logs, strict=True):
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise BenchError(f"{proc.args!r} exited with {proc.returncode}:\n{tail}")
    return True


@dataclass(frozen=True)
class Measured:
    """One finished run: wall seconds, peak RSS in MB, exit code."""

    wall_s: float
    rss_mb: float
    code: int


def run_measured(argv: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path) -> Measured:
    """Run ``argv`` to its end under GNU time; wall time around the process, peak RSS from time."""
    rss_file = log.with_suffix(".rss")
    started = time.perf_counter()
    proc = start([TIME_BIN, "-f", "%M", "-o", str(rss_file), *argv], env=env, cwd=cwd, log=log)
    # A blocking wait, bounded by a timer: Popen.wait(timeout) polls with sleeps of up to 50 ms,
    # which rounded every wall time up to the next poll (64 ms, 114 ms, 164 ms, ...).
    guard = threading.Timer(300, proc.kill)
    guard.start()
    code = proc.wait()
    wall_s = time.perf_counter() - started
    guard.cancel()
    words = rss_file.read_text().split()
    rss_kb = int(words[-1]) if words and words[-1].isdigit() else 0
    return Measured(wall_s, rss_kb / 1024, code)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """Resident memory of a live process in MB."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES / 2**20


# --- the server ---------------------------------------------------------------------


@dataclass
class Server:
    """``bao server -dev`` on 127.0.0.1:port with a file audit device declared in a config file
    (OpenBao 2.7 refuses API-enabled audit devices); accessors are kept plain to tell tools apart."""

    bao: str
    port: int
    token: str
    work: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The server's URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def audit_log(self) -> Path:
        """The file the audit device appends one JSON line per request and response to."""
        return self.work / "audit.log"

    def start(self) -> None:
        """Start the server and wait until it answers as active."""
        config = self.work / "server.hcl"
        options = f'file_path = "{self.audit_log}", hmac_accessor = "false"'
        config.write_text(f'audit "file" "bench" {{\n  options = {{ {options} }}\n}}\n')
        argv = [self.bao, "server", "-dev", f"-dev-root-token-id={self.token}"]
        argv += [f"-dev-listen-address=127.0.0.1:{self.port}", f"-config={config}"]
        self.process = start(argv, env=clean_env(self.work), cwd=self.work, log=self.work / "server.log")
        wait_until(self._healthy, timeout_s=START_TIMEOUT_S, what="bao server -dev", step_s=0.05)

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"bao server exited with {self.process.returncode}; see server.log")
        try:
            return self.api("GET", "sys/health") is not None
        except (OSError, http.client.HTTPException, BenchError):
            return False

    def stop(self) -> None:
        """Stop the server by pid."""
        if self.process is not None:
            stop([self.process])

    def api(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """Call the API with the root token (a new loopback connection each time: no stale keep-alive)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, "/v1/" + path, body=payload, headers={"X-Vault-Token": self.token})
            response = conn.getresponse()
            status, data = response.status, response.read()
        finally:
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
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(auth["client_token"] + "\n")
        return path, str(auth["accessor"])


# --- the audit log ------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request the server audited."""

    time_s: float  # Unix time
    path: str
    operation: str
    accessor: str


def audit_offset(server: Server) -> int:
    """The audit log's size now: pass it to ``audited`` to see only later requests."""
    with contextlib.suppress(FileNotFoundError):
        return server.audit_log.stat().st_size
    return 0


def audited(server: Server, start_offset: int, accessor: str = "") -> list[Request]:
    """The requests logged after ``start_offset`` (made with ``accessor`` when given)."""
    with open(server.audit_log, "rb") as handle:
        handle.seek(start_offset)
        lines = handle.read().splitlines()
    requests = [r for line in lines if (r := _parse(line)) is not None]
    return [r for r in requests if not accessor or r.accessor == accessor]


def _parse(line: bytes) -> Request | None:
    try:
        entry = json.loads(line)
    except ValueError:  # a line still being written
        return None
    if entry.get("type") != "request":
        return None
    request, auth = entry.get("request") or {}, entry.get("auth") or {}
    stamp = str(entry.get("time", "")).rstrip("Z")
    whole, _, fraction = stamp.partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + (fraction or "0"))
    return Request(seconds, request.get("path", ""), request.get("operation", ""), auth.get("accessor", ""))


# --- statistics ---------------------------------------------------------------------


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


# --- what every measurement shares ---------------------------------------------------


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

    @property
    def ratio(self) -> float:
        """inject / reference (NaN without a reference)."""
        return self.inject / self.reference if self.reference else math.nan


@dataclass
class Bench:
    """One run's shared state: the server, the tools' tokens, the rows measured so far."""

    profile: Profile
    server: Server
    work: Path
    env: dict[str, str]
    bao: str
    inject: list[str]  # argv prefix that runs the installed inject
    tokens: dict[str, tuple[Path, str]]  # tool -> (token file, accessor)
    rows: list[Row] = field(default_factory=list)
    signals: list[SignalRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, unit: str, inject: float, reference: float = math.nan, **how: Any) -> Row:
        """Append a result row (``how``: target, passed, digits) and return it."""
        self.rows.append(Row(label, unit, inject, reference, **how))
        return self.rows[-1]

    def log(self, name: str) -> Path:
        """A log file for one process under test."""
        (self.work / "logs").mkdir(exist_ok=True)
        return self.work / "logs" / f"{name}.log"


@dataclass
class SignalRow:
    """Signal latencies (seconds) of one signal in one situation; lost = not delivered within the cap."""

    situation: str
    signal: str
    samples: list[float] = field(default_factory=list)
    lost: int = 0
