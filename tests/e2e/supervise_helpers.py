"""Helpers for the supervisor end-to-end tests: a long-running inject started with Popen,
a child script that records every signal it receives, /proc readers, and a small TCP
proxy between inject and OpenBao that a test can stop and restart (an outage)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import record_output, wait_for

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


def proc_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (``Z`` for a zombie), or None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    return proc_state(pid) not in (None, "Z")


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


def kill_quietly(pid: int, signum: int = signal.SIGKILL) -> None:
    """Send ``signum`` to ``pid``'s group and to ``pid``; ignore processes already gone."""
    for send in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send(pid, signum)


# --- a long-running inject ------------------------------------------------------------


@dataclass
class Running:
    """An inject started with Popen; its stderr goes to a file the test can read any time."""

    process: subprocess.Popen[bytes]
    stderr_path: Path
    stdout_path: Path

    @property
    def pid(self) -> int:
        """inject's pid."""
        return self.process.pid

    def stderr(self) -> str:
        """Everything inject logged so far."""
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        """Everything inject and its child printed on stdout so far."""
        return self.stdout_path.read_text(errors="replace")

    def lines(self, needle: str) -> list[str]:
        """Log lines that contain ``needle``."""
        return [line for line in self.stderr().splitlines() if needle in line]

    def wait_log(self, needle: str, *, count: int = 1, timeout_s: float = 5.0) -> list[str]:
        """Wait until ``needle`` was logged ``count`` times; return those lines."""
        wait_for(
            lambda: len(self.lines(needle)) >= count or self._died(),
            timeout_s=timeout_s,
            what=f"{count}x {needle!r} in inject's log",
        )
        found = self.lines(needle)
        assert len(found) >= count, f"inject exited early (code {self.process.returncode}):\n{self.stderr()}"
        return found

    def _died(self) -> bool:
        return self.process.poll() is not None

    def wait(self, *, timeout_s: float = 5.0) -> int:
        """Wait for inject to exit; its exit code."""
        return self.process.wait(timeout=timeout_s)

    def stop(self, signum: int = signal.SIGTERM, *, timeout_s: float = 5.0) -> int:
        """Send ``signum`` and wait for inject to exit; its exit code."""
        self.process.send_signal(signum)
        return self.wait(timeout_s=timeout_s)


@contextlib.contextmanager
def supervise(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stray: Callable[[], Sequence[int]] = list,
    ready: str | None = "started ",
) -> Iterator[Running]:
    """Start ``argv`` (an inject command line); on exit stop it, kill any ``stray`` pids
    still around, and record its stderr for the session-wide secrecy check.

    With ``ready`` (default: the "started" line of a run with a child), wait for that log
    line before handing over, so every test begins with a running child.
    """
    name = f"inject-{time.monotonic_ns()}"
    stderr_path, stdout_path = cwd / f"{name}.err", cwd / f"{name}.out"
    with stderr_path.open("wb") as err, stdout_path.open("wb") as out:
        process = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    running = Running(process, stderr_path, stdout_path)
    try:
        if ready:
            running.wait_log(ready)
        yield running
    finally:
        _shut_down(process)
        for pid in stray():
            if alive(pid):
                kill_quietly(pid)
        record_output(running.stderr())


def _shut_down(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def inject_cmd(*args: str) -> list[str]:
    """The argv of the real inject under this interpreter."""
    return [sys.executable, "-m", "vault_inject", *args]


# --- an outage on demand --------------------------------------------------------------


@dataclass
class TcpProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``, one thread per direction.

    ``stop`` closes the listener and every live connection (the server looks gone);
    ``start`` listens again on the same port.
    """

    target_port: int
    port: int = 0
    _listener: socket.socket | None = None
    _conns: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _running: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> str:
        """The proxy's URL, for VAULT_ADDR."""
        return f"http://127.0.0.1:{self.port}"

    def reserve(self) -> None:
        """Pick the port now without listening (for a start that happens later)."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])

    def start(self) -> None:
        """Listen (on the same port as before, if there was one) and forward."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        self._running.set()
        self._spawn(self._accept_loop, listener)

    def stop(self) -> None:
        """Close the listener and every live connection; wait for the threads to end."""
        self._running.clear()
        if self._threads:
            self._threads[0].join(timeout=5)  # the accept loop: no new connections after this
        if self._listener is not None:
            _close(self._listener)
            self._listener = None
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            _close(conn)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        client.settimeout(None)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            _close(client)
            return
        with self._lock:
            if not self._running.is_set():
                _close(client)
                _close(upstream)
                return
            self._conns |= {client, upstream}
        self._spawn(self._pump, client, upstream)
        self._spawn(self._pump, upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def port_of(address: str) -> int:
    """The port of ``http://host:port``."""
    return int(address.rsplit(":", 1)[1])
