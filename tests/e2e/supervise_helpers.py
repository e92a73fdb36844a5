"""Helpers for the supervisor end-to-end tests: a child script that records every signal
it receives, and /proc readers. (Running inject is ``tests.support``; outages are
``tests.e2e.fault_proxy``.)"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import alive, kill_quietly, proc_state, wait_for  # noqa: F401 (re-exported)

# The signal-recording child. argv: RECORD_DIR [--ignore-term] [--env NAME]...
# [--orphans N] [--orphan-s SECONDS]. After its handlers are installed it appends one
# JSON line {"pid", "env"} to RECORD_DIR/starts (so a start line means "ready for
# signals"); each signal appends "PID NAME" to RECORD_DIR/signals. TERM ends it with 0
# unless --ignore-term. --orphans forks N grandchildren whose parent exits at once (so
# they are orphaned); each writes its pid to RECORD_DIR/orphans and lives --orphan-s.
# Values go to files only, never to stderr.
CHILD_SCRIPT = r"""
import json, os, signal, sys, time

args = sys.argv[1:]
record = args.pop(0)
ignore_term = "--ignore-term" in args
names = [args[i + 1] for i, a in enumerate(args) if a == "--env"]
orphans = int(args[args.index("--orphans") + 1]) if "--orphans" in args else 0
orphan_s = float(args[args.index("--orphan-s") + 1]) if "--orphan-s" in args else 0.3


def append(name, line):
    fd = os.open(os.path.join(record, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def on_signal(signum, _frame):
    append("signals", f"{os.getpid()} {signal.Signals(signum).name[3:]}")
    if signum == signal.SIGTERM and not ignore_term:
        sys.exit(0)


for name in ("HUP", "INT", "QUIT", "USR1", "USR2", "TERM", "WINCH", "CONT"):
    signal.signal(getattr(signal, "SIG" + name), on_signal)

for _ in range(orphans):
    middle = os.fork()
    if middle == 0:
        if os.fork() == 0:
            append("orphans", str(os.getpid()))
            time.sleep(orphan_s)
        os._exit(0)
    os.waitpid(middle, 0)

append("starts", json.dumps({"pid": os.getpid(), "env": {n: os.environ.get(n) for n in names}}))
while True:
    signal.pause()
"""


@dataclass
class SignalChild:
    """The signal-recording child script in ``tmp_path`` and what it recorded."""

    directory: Path

    @classmethod
    def create(cls, tmp_path: Path) -> SignalChild:
        """Write the script and an empty record directory under ``tmp_path``."""
        directory = tmp_path / "child-record"
        directory.mkdir()
        (directory / "child.py").write_text(CHILD_SCRIPT)
        return cls(directory)

    def argv(
        self, *env_names: str, ignore_term: bool = False, orphans: int = 0, orphan_s: float = 0.3
    ) -> list[str]:
        """The command line that runs the child with these options."""
        argv = [sys.executable, str(self.directory / "child.py"), str(self.directory)]
        if ignore_term:
            argv.append("--ignore-term")
        for name in env_names:
            argv += ["--env", name]
        if orphans:
            argv += ["--orphans", str(orphans), "--orphan-s", str(orphan_s)]
        return argv

    def _lines(self, name: str) -> list[str]:
        try:
            return (self.directory / name).read_text().splitlines()
        except FileNotFoundError:
            return []

    def starts(self) -> list[dict[str, Any]]:
        """One entry per child start: its pid and the recorded env values."""
        return [json.loads(line) for line in self._lines("starts")]

    def pids(self) -> list[int]:
        """The pid of every child start, in order."""
        return [int(entry["pid"]) for entry in self.starts()]

    def signals(self, pid: int | None = None) -> list[str]:
        """Names of the signals received (by ``pid`` only, when given), in order."""
        pairs = [line.split() for line in self._lines("signals")]
        return [name for who, name in pairs if pid is None or int(who) == pid]

    def orphans(self) -> list[int]:
        """Pids of the orphaned grandchildren, as the grandchildren saw them."""
        return [int(line) for line in self._lines("orphans")]

    def wait_starts(self, count: int, *, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Wait until the child has started ``count`` times; return the starts."""
        wait_for(lambda: len(self.starts()) >= count, timeout_s=timeout_s, what=f"{count} child start(s)")
        return self.starts()

    def wait_signal(self, pid: int, name: str, *, timeout_s: float = 5.0) -> None:
        """Wait until child ``pid`` recorded signal ``name``."""
        wait_for(lambda: name in self.signals(pid), timeout_s=timeout_s, what=f"{name} in child {pid}")


# --- /proc ------------------------------------------------------------------------------


def status_field(pid: int, name: str) -> str:
    """A field of ``/proc/PID/status`` (``PPid``, ``NSpid``, ``Uid``...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    raise KeyError(name)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's list), or [] once it is gone."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    for task in tasks:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return sorted(set(found))


def host_pid_of(ns_pid: int, candidates: Sequence[int]) -> int | None:
    """Which of ``candidates`` (host pids) has ``ns_pid`` as its innermost namespace pid."""
    for pid in candidates:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, KeyError):
            if int(status_field(pid, "NSpid").split()[-1]) == ns_pid:
                return pid
    return None


def port_of(address: str) -> int:
    """The port of ``http://host:port``."""
    return int(address.rsplit(":", 1)[1])
