"""The only module that spawns, signals and reaps processes.

The child runs in its own process group (so a stop reaches the whole group, e.g. a
shell and its app) and, when inject owns the terminal's foreground, it is given the
foreground so Ctrl-C and job control reach the app directly, as under tini. Signal
dispositions and the signal mask are reset before ``exec``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import grp
import logging
import os
import pwd
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence

from ..errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_SIGNAL_BASE, CommandError, UsageError
from ..identity import Identity

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
WAIT_STEP_S = 0.02
EXIT_TIMEOUT = 124  # as timeout(1)
MAX_ID = 2**32 - 1  # uid_t/gid_t; (uid_t)-1 means "unchanged" to setuid


def resolve_user(spec: str) -> Identity:
    """``USER[:GROUP]`` (names or numbers) -> uid/gid; UsageError when unknown."""
    if not spec:
        return Identity()
    try:
        return _resolve_user(spec)
    except (ValueError, OverflowError) as exc:  # NUL bytes, non-ASCII digits, ids beyond uid_t
        raise UsageError(f"--user: {spec[:40]!r} is not a user name or id") from exc


def _resolve_user(spec: str) -> Identity:
    user, _, group = spec.partition(":")
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        uid, gid, name, home = entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir
    except KeyError as exc:
        if not user.isdigit():
            raise UsageError(f"--user: no user named '{user}'") from exc
        uid, gid, name, home = int(user), int(user), "", ""
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError as exc:
            raise UsageError(f"--user: no group named '{group}'") from exc
    if not (0 <= uid < MAX_ID and 0 <= gid < MAX_ID):
        raise ValueError("id out of range")
    if (uid, gid) == (os.getuid(), os.getgid()):
        return Identity()  # already that user: nothing to switch
    if os.geteuid() != 0:
        raise UsageError(
            f"--user {spec}: switching user needs inject to run as root (it runs as uid {os.geteuid()})"
        )
    groups = tuple(os.getgrouplist(name, gid)) if name else ()
    return Identity(uid=uid, gid=gid, name=name, home=home, groups=groups)


def exit_code_from_status(status: int) -> int:
    """A wait status -> the shell's exit code (128+N for a death by signal N)."""
    if os.WIFSIGNALED(status):
        return EXIT_SIGNAL_BASE + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 1


def make_undumpable() -> bool:
    """Keep inject's memory and environment (its token) from other processes of its user.

    A non-dumpable process writes no core dump, and its ``/proc/PID/environ``, ``mem`` and
    ``fd`` belong to root, so the app it starts (same uid, no CAP_SYS_PTRACE) cannot read
    VAULT_TOKEN from its parent. ``execve`` resets the flag, so the child is unaffected."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Ask Linux to reparent orphaned descendants to us (unneeded when we are PID 1)."""
    if os.getpid() == 1 or not sys.platform.startswith("linux"):
        return os.getpid() == 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def exec_in_place(argv: Sequence[str], env: Mapping[str, str], identity: Identity) -> None:
    """Replace inject with the command (``--no-watch``); only returns by raising."""
    _drop_privileges(identity)
    try:
        os.execvpe(argv[0], list(argv), dict(env))  # noqa: S606 - running the command is the job
    except OSError as exc:
        raise _command_error(argv[0], exc.errno or 0) from exc


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    identity: Identity,
    *,
    take_terminal: bool = True,
    output: tuple[int, int] | None = None,
) -> int:
    """Start the command in its own process group; return its pid or raise CommandError.
    With ``output`` (two fds: ``relay.OutputRelay``'s pipes), those are its stdout and stderr."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    take_tty = take_terminal and _owns_foreground()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        _child_after_fork(argv, env, identity, write_fd, take_tty, output)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        failure = pipe.read()
    if failure:
        os.waitpid(pid, 0)
        raise _command_error(argv[0], int(failure.decode() or 0))
    log.debug("started %s as pid %d", argv[0], pid)
    return pid


def _child_after_fork(
    argv: Sequence[str],
    env: Mapping[str, str],
    identity: Identity,
    write_fd: int,
    take_tty: bool,
    output: tuple[int, int] | None,
) -> None:  # pragma: no cover - runs in the child
    code = 0
    try:
        os.setpgid(0, 0)
        if output is not None:  # dup2 leaves fds 1 and 2 inheritable; the pipes' own fds close at exec
            os.dup2(output[0], 1)
            os.dup2(output[1], 2)
        if take_tty:
            signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            with contextlib.suppress(OSError):
                os.tcsetpgrp(sys.stdin.fileno(), os.getpgrp())
        _reset_signals()
        _drop_privileges(identity)
        os.execvpe(argv[0], list(argv), dict(env))  # noqa: S606
    except OSError as exc:
        code = exc.errno or errno.ENOENT
    except BaseException:
        code = errno.EINVAL
    with contextlib.suppress(OSError):
        os.write(write_fd, str(code).encode())
    os._exit(EXIT_NOT_FOUND)


def _reset_signals() -> None:
    for number in range(1, signal.NSIG):
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _drop_privileges(identity: Identity) -> None:
    if identity.uid == -1:
        return
    # The group list was looked up in the parent: no name-service lookups after fork.
    os.setgroups(list(identity.groups or (identity.gid,)))
    os.setgid(identity.gid)
    os.setuid(identity.uid)


def _owns_foreground() -> bool:
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _command_error(command: str, code: int) -> CommandError:
    if code in (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR):
        return CommandError(f"command '{command}' is not executable", exit_code=EXIT_NOT_EXECUTABLE)
    if code == errno.ENOENT:
        return CommandError(f"command '{command}' not found", exit_code=EXIT_NOT_FOUND)
    if code == errno.E2BIG:
        return CommandError(
            f"cannot run '{command}': its arguments and environment (the rendered env vars) "
            "exceed the kernel's limit; render large values to files instead",
            exit_code=EXIT_NOT_EXECUTABLE,
        )
    return CommandError(f"cannot run '{command}': {os.strerror(code)}", exit_code=EXIT_NOT_EXECUTABLE)


def signal_group(pid: int, signum: int) -> None:
    """Send ``signum`` to the child's process group (falls back to the pid alone)."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    except PermissionError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


class Reaper:
    """The one reaper loop: ``waitpid(-1)`` until nothing is left, recording the status of
    the processes we started (zombies of orphans are reaped and forgotten).

    Thread-safe: the loop reaps on SIGCHLD while a worker waits for a command it started."""

    def __init__(self) -> None:
        self.tracked: set[int] = set()
        self.exited: dict[int, int] = {}
        self._lock = threading.Lock()

    def track(self, pid: int) -> int:
        """Remember ``pid`` so its exit code is kept; return it."""
        with self._lock:
            self.tracked.add(pid)
        return pid

    def reap(self) -> None:
        """Reap every exited child without blocking."""
        with self._lock:
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid == 0:
                    return
                if pid in self.tracked:
                    self.tracked.discard(pid)
                    self.exited[pid] = exit_code_from_status(status)
                else:
                    log.debug("reaped orphan pid %d", pid)

    def pop(self, pid: int) -> int | None:
        """The exit code of ``pid`` if it has exited (reaping first), else None."""
        self.reap()
        with self._lock:
            return self.exited.pop(pid, None)

    def wait(self, pid: int, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for ``pid``; its exit code, or None on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.pop(pid)
            if code is not None or time.monotonic() >= deadline:
                return code
            time.sleep(WAIT_STEP_S)


class Commands:
    """The shell commands inject runs (check, template commands), each in its own process
    group, so that an exiting inject can stop those still running."""

    def __init__(self, reaper: Reaper, identity: Identity | None = None) -> None:
        self.reaper = reaper
        self.identity = identity or Identity()
        self._running: set[int] = set()
        self._lock = threading.Lock()

    def run(self, command: str, *, env: Mapping[str, str], timeout_s: float, what: str) -> int:
        """Run ``sh -c command`` as the ``--user`` (no terminal takeover); its exit code, 124 on
        timeout."""
        try:
            pid = spawn(["/bin/sh", "-c", command], env, self.identity, take_terminal=False)
        except CommandError as exc:
            log.error("%s: %s", what, exc)
            return EXIT_NOT_FOUND
        self.reaper.track(pid)
        with self._lock:
            self._running.add(pid)
        try:
            return self._wait(pid, timeout_s, what)
        finally:
            with self._lock:
                self._running.discard(pid)

    def _wait(self, pid: int, timeout_s: float, what: str) -> int:
        code = self.reaper.wait(pid, timeout_s)
        if code is None:
            log.error("%s timed out after %.3gs; killing it", what, timeout_s)
            signal_group(pid, signal.SIGKILL)
            self.reaper.wait(pid, 5.0)
            return EXIT_TIMEOUT
        return code

    def run_all(self, commands: Sequence[tuple[str, str, float]], *, env: Mapping[str, str]) -> None:
        """Run ``(what, shell command, timeout)`` in order, logging how each ended."""
        for what, command, timeout_s in commands:
            code = self.run(command, env=env, timeout_s=timeout_s, what=what)
            if code == 0:
                log.info("%s succeeded", what)
            else:
                log.error("%s exited with code %d", what, code)

    def kill_all(self) -> None:
        """SIGKILL every command still running (inject is exiting)."""
        with self._lock:
            running = list(self._running)
        for pid in running:
            signal_group(pid, signal.SIGKILL)


class Processes:
    """The real processes behind the child controller (see ``controller.ProcessPort``)."""

    def __init__(self, reaper: Reaper, output: tuple[int, int] | None = None) -> None:
        self.reaper = reaper
        self.output = output  # the child's stdout and stderr when its output is masked

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], identity: Identity) -> int:
        """Start the child in its own process group and track its exit code."""
        return self.reaper.track(spawn(argv, env, identity, output=self.output))

    def signal_group(self, pgid: int, signum: int) -> None:
        """Send ``signum`` to a process group."""
        signal_group(pgid, signum)

    def signal_pid(self, pid: int, signum: int) -> None:
        """Send ``signum`` to one process (gone already is fine)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)

    def descendants(self, pid: int) -> frozenset[int]:
        """The live descendants of ``pid`` that left its process group (psutil): a signal to
        the group does not reach them."""
        import psutil

        try:
            found = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            return frozenset()
        return frozenset(p.pid for p in found if _pgid_of(p.pid) not in (pid, -1))

    def alive(self, pgid: int, pids: frozenset[int]) -> bool:
        """True while the process group or any of ``pids`` still has a running process."""
        self.reaper.reap()  # orphans reparented to inject would otherwise linger as zombies
        return _group_alive(pgid) or any(_running(pid) for pid in pids)

    def exited(self, pid: int) -> int | None:
        """The exit code of our child ``pid`` once it has exited."""
        return self.reaper.pop(pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member switched user: still there
        return True
    return True


def _running(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _pgid_of(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -1
