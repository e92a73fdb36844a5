"""inject as the app's parent and as PID 1: run under `unshare --pid --fork --mount-proc
--kill-child` (inject is the namespace's init, signalled by its host pid), it forwards
every signal to the child, reaps orphaned grandchildren, and exits with the child's code;
outside a namespace it is a child subreaper and never leaves its child behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import closed_port
from tests.e2e.supervise_helpers import SignalChild, children, host_pid_of, status_field
from tests.support import (
    Bao,
    alive,
    inject_argv,
    inject_env,
    proc_state,
    record_output,
    secret_value,
    supervise,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("unshare") is None, reason="Linux with unshare"
)

UNSHARE = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")
QUIET = ("--poll-interval", "1h")


@dataclass
class Namespace:
    """An inject running as PID 1 of its own PID namespace."""

    unshare: subprocess.Popen[bytes]
    inject_pid: int  # host pid of the namespace's PID 1
    stderr_path: Path

    def stderr(self) -> str:
        """What inject logged so far."""
        return self.stderr_path.read_text(errors="replace")

    def kill(self, signum: int) -> None:
        """Signal inject by its host pid (unshare itself forwards nothing)."""
        os.kill(self.inject_pid, signum)

    def wait(self, *, timeout_s: float = 5.0) -> int:
        """Wait for the namespace to end; inject's exit code (unshare passes it on)."""
        return self.unshare.wait(timeout=timeout_s)


def _is_python(pid: int) -> bool:
    try:
        return b"vault_inject" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False


@contextlib.contextmanager
def as_pid1(args: Sequence[str], *, bao: Bao, cwd: Path) -> Iterator[Namespace]:
    """Start inject with ``args`` as PID 1 of a new PID namespace; on exit end the
    namespace and record inject's stderr for the secrecy check."""
    stderr_path = cwd / "inject-pid1.err"
    with stderr_path.open("wb") as err:
        unshare = subprocess.Popen(
            [*UNSHARE, sys.executable, "-m", "vault_inject", *args],
            env=inject_env(bao),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        inject_pid = wait_for(
            lambda: next((p for p in children(unshare.pid) if _is_python(p)), None),
            timeout_s=5,
            what="inject inside the namespace",
        )
        yield Namespace(unshare, inject_pid, stderr_path)
    finally:
        if unshare.poll() is None:
            unshare.kill()  # --kill-child: the namespace's init and everything in it die too
            unshare.wait(timeout=5)
        record_output(stderr_path.read_text(errors="replace"))


# --- PID 1 ---------------------------------------------------------------------------------


def test_pid1_forwards_every_signal_to_child(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """As a namespace's PID 1, inject forwards HUP, USR1, USR2, WINCH, CONT and TERM to the child and exits with its code."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/app"
    value = secret_value()
    bao.kv_put(path, v=value)
    args = [*QUIET, "-e", f"APP_V=vault:{path}#v", "--", *child.argv("APP_V")]
    with as_pid1(args, bao=bao, cwd=tmp_path) as ns:
        assert status_field(ns.inject_pid, "NSpid").split()[-1] == "1"
        start = child.wait_starts(1)[0]
        assert start["env"]["APP_V"] == value
        names = ["HUP", "USR1", "USR2", "WINCH", "CONT", "TERM"]
        for name in names:
            ns.kill(getattr(signal, "SIG" + name))
            child.wait_signal(start["pid"], name)
        assert ns.wait() == 0
        assert child.signals(start["pid"]) == names


def test_pid1_reaps_orphaned_grandchildren(bao: Bao, tmp_path: Path) -> None:
    """As PID 1, inject adopts the child's orphaned grandchildren and reaps them: no zombie remains."""
    child = SignalChild.create(tmp_path)
    args = [*QUIET, "--", *child.argv(orphans=3, orphan_s=1.0)]
    with as_pid1(args, bao=bao, cwd=tmp_path) as ns:
        child.wait_starts(1)
        assert len(child.orphans()) == 3
        # The orphans' parent is gone: the kernel hands them to the namespace's init.
        wait_for(lambda: len(children(ns.inject_pid)) == 4, timeout_s=2, what="orphans adopted by PID 1")
        main_child = wait_for(
            lambda: host_pid_of(child.starts()[0]["pid"], children(ns.inject_pid)), what="child host pid"
        )
        wait_for(
            lambda: children(ns.inject_pid) == [main_child], timeout_s=5, what="orphans exited and reaped"
        )
        zombies = [p for p in children(ns.inject_pid) if proc_state(p) == "Z"]
        assert zombies == []
        ns.kill(signal.SIGTERM)
        assert ns.wait() == 0


@pytest.mark.parametrize(
    ("script", "code"),
    [("exit 3", 3), ("kill -KILL $$", 128 + 9), ("kill -TERM $$", 128 + 15)],
    ids=["exit-3", "SIGKILL", "SIGTERM"],
)
def test_pid1_exits_with_childs_code(bao: Bao, tmp_path: Path, script: str, code: int) -> None:
    """As PID 1, inject exits with the child's exit code, and 128+N when the child died of signal N.
    (Run to its end, not through ``as_pid1``: the whole namespace can be gone before a poll
    would find inject in it; the child says who its parent was.)"""
    argv = [
        *UNSHARE,
        sys.executable,
        "-m",
        "vault_inject",
        *QUIET,
        "--",
        "sh",
        "-c",
        f"echo $PPID > ppid; {script}",
    ]
    done = subprocess.run(
        argv,
        env=inject_env(bao),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    stderr = done.stderr.decode(errors="replace")
    record_output(stderr)
    assert done.returncode == code, stderr
    assert (tmp_path / "ppid").read_text().strip() == "1"  # the child's parent: inject, PID 1


# --- the child and its descendants when inject is not PID 1 ---------------------------------


def test_subreaper_adopts_and_reaps_orphans(bao: Bao, tmp_path: Path) -> None:
    """Not being PID 1, inject registers as child subreaper: the child's orphans get inject as parent and are reaped."""
    child = SignalChild.create(tmp_path)
    argv = inject_argv(*QUIET, "--", *child.argv(orphans=2, orphan_s=1.0))
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.orphans) as inject:
        child.wait_starts(1)
        orphans = child.orphans()
        assert len(orphans) == 2
        for orphan in orphans:
            assert int(status_field(orphan, "PPid")) == inject.pid
        wait_for(lambda: all(proc_state(p) is None for p in orphans), timeout_s=3, what="orphans reaped")
        assert children(inject.pid) == [child.pids()[0]]


def test_child_starts_with_default_signal_dispositions_and_empty_mask(bao: Bao, tmp_path: Path) -> None:
    """The child runs with no ignored and no blocked signals, whatever inject itself ignores."""
    argv = inject_argv(*QUIET, "--", "sleep", "30")
    with supervise(argv, env=inject_env(bao), cwd=tmp_path) as inject:
        pid = wait_for(lambda: children(inject.pid), what="the child")[0]
        assert int(status_field(inject.pid, "SigIgn"), 16) != 0, "inject itself ignores some signals"
        assert int(status_field(pid, "SigIgn"), 16) == 0
        assert int(status_field(pid, "SigBlk"), 16) == 0


def test_child_is_gone_when_inject_exits_on_term(bao: Bao, tmp_path: Path) -> None:
    """On TERM inject stops the child before it exits: the child's pid no longer exists."""
    child = SignalChild.create(tmp_path)
    argv = inject_argv(*QUIET, "--", *child.argv())
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        pid = child.wait_starts(1)[0]["pid"]
        assert inject.stop(signal.SIGTERM) == 0
        assert child.signals(pid) == ["TERM"]
        assert proc_state(pid) is None


@pytest.mark.parametrize("name", ["TERM", "INT"])
def test_child_ignoring_stop_signal_is_killed_and_inject_exits_137(
    bao: Bao, tmp_path: Path, name: str
) -> None:
    """On TERM or INT with a child that ignores it, inject SIGKILLs the child after `--kill-timeout` and exits 137."""
    child = SignalChild.create(tmp_path)  # its INT handler only records, so INT is ignored too
    argv = inject_argv(*QUIET, "--kill-timeout", "300ms", "--", *child.argv(ignore_term=True))
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        pid = child.wait_starts(1)[0]["pid"]
        assert inject.stop(getattr(signal, "SIG" + name)) == 137
        assert child.signals(pid) == [name]
        assert not alive(pid)
        assert inject.lines(f"child pid {pid} still running after 0.3s; sending SIGKILL")


@pytest.mark.parametrize(("name", "code"), [("TERM", 143), ("INT", 130), ("QUIT", 131)])
def test_pid1_stop_signal_during_startup_retries_exits_at_once(
    bao: Bao, tmp_path: Path, name: str, code: int
) -> None:
    """As PID 1, a TERM/INT/QUIT while inject still retries an unreachable server (60 s budget)
    ends it at once with 128+N: `docker stop` never needs its SIGKILL."""
    args = ["-v", "--address", f"http://127.0.0.1:{closed_port()}", "--retry-timeout", "60s"]
    args += ["-e", "X=vault:secret/x#k", "--", "sleep", "60"]
    with as_pid1(args, bao=bao, cwd=tmp_path) as ns:
        wait_for(lambda: "retrying " in ns.stderr(), timeout_s=10, what="inside the retry loop")
        sent = time.monotonic()
        ns.kill(getattr(signal, "SIG" + name))
        assert ns.wait(timeout_s=5) == code
        assert time.monotonic() - sent < 1.0
        assert f"received SIG{name} during startup" in ns.stderr()
