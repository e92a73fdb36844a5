"""Starting, measuring and stopping the processes under test, always by pid.

``Registry`` remembers every long-running process it started and stops each one
(TERM, grace, KILL) on the way out. ``run_measured`` runs a short command to its end
and reads its wall time, CPU (``os.wait4`` rusage) and peak RSS (from a small wrapper).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from baoserver import BenchError

STOP_GRACE_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measured:
    """One finished run: wall time, peak resident memory, CPU seconds, exit code."""

    wall_s: float
    max_rss_kb: int
    cpu_s: float
    code: int


# Peak RSS must come from a *small* parent: on exec, Linux keeps the pre-exec memory's
# high-water mark in ru_maxrss, and subprocess forks (vforks) from this ~30 MB Python, so
# os.wait4 on our own child would report at least our size. GNU time is a few MB; the
# fallback launcher is a bare Python (about 10 MB floor).
TIME_BIN = "/usr/bin/time"
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def rss_wrapper(rss_file: Path) -> list[str]:
    """The argv prefix that runs a command and writes its peak RSS (KiB) to ``rss_file``."""
    if os.access(TIME_BIN, os.X_OK):
        return [TIME_BIN, "-f", "%M", "-o", str(rss_file)]
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(rss_file)]


def run_measured(
    argv: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path, timeout_s: float
) -> Measured:
    """Run ``argv`` to completion under the RSS wrapper; KILL it (and fail) after ``timeout_s``.

    CPU comes from our wait4 on the wrapper (it includes the reaped command)."""
    rss_file = log.with_suffix(".rss")
    rss_file.unlink(missing_ok=True)
    with open(log, "ab") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*rss_wrapper(rss_file), *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    timer = threading.Timer(timeout_s, _kill_group_quietly, args=(proc.pid,))
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall_s = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
    if proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL):
        raise BenchError(f"{argv[0]} did not finish within {timeout_s:g}s; see {log}")
    return Measured(wall_s, _read_rss_kb(rss_file), usage.ru_utime + usage.ru_stime, proc.returncode)


def _read_rss_kb(rss_file: Path) -> int:
    try:
        lines = rss_file.read_text().split()
    except FileNotFoundError:
        return 0
    return int(lines[-1]) if lines and lines[-1].isdigit() else 0


def _kill_group_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class Registry:
    """Every long-running process the benchmark started, stopped by pid at the end."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra_pids: set[int] = field(default_factory=set)  # grandchildren seen in child logs

    def start(
        self, argv: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own session, output to ``log``."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """TERM, wait, KILL if needed; forget the process."""
        stop_all([proc])
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_many(self, procs: Sequence[subprocess.Popen[bytes]]) -> None:
        """Stop several processes at once (shared grace period); forget them."""
        stop_all(procs)
        self.procs = [p for p in self.procs if p not in procs]

    def stop_all(self) -> None:
        """Stop every process still running, then any grandchild left behind."""
        stop_all(self.procs)
        self.procs.clear()
        for pid in sorted(self.extra_pids):
            if _is_our_sleeper(pid):
                _kill_quietly(pid)
        self.extra_pids.clear()


def stop_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """TERM all of ``procs`` at once, give them a shared grace period, KILL the rest."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_GRACE_S)


def _is_our_sleeper(pid: int) -> bool:
    """True when ``pid`` is still the ``sleep`` our child command exec'd into."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\x00")
    except OSError:
        return False


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a live process in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str, step_s: float = 0.02) -> None:
    """Poll ``condition`` until true; BenchError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step_s)
    raise BenchError(f"timed out after {timeout_s:g}s waiting for {what}")


def ensure_running(procs: Sequence[subprocess.Popen[bytes]], logs: Sequence[Path]) -> None:
    """BenchError (with the log's tail) when a process under test has exited."""
    for proc, log in zip(procs, logs, strict=True):
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise BenchError(f"{proc.args!r} exited with {proc.returncode}:\n{tail}")
