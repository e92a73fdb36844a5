"""inject as a systemd ``Type=notify`` service, against a real AF_UNIX datagram socket the
test binds (as systemd does) and real OpenBao: READY=1 once the child runs, RELOADING=1
(with MONOTONIC_USEC) and READY=1 around a re-render, STOPPING=1 on SIGTERM, WATCHDOG=1
every half WATCHDOG_USEC, each sent by inject's own pid (what NotifyAccess=main accepts);
the child never sees NOTIFY_SOCKET. ``systemd-notify`` itself, when installed, is the
reference for the datagram's format."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import secret_template, write
from tests.e2e.supervise_helpers import SignalChild
from tests.support import Bao, holds_for, inject_argv, inject_env, secret_value, supervise, wait_for

POLL = ("--poll-interval", "300ms")
UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass
class Datagram:
    """One notification: when it arrived, who sent it (SCM_CREDENTIALS), its fields, and
    what ``seen`` returned at that instant."""

    at: float
    pid: int
    fields: dict[str, str]
    raw: bytes
    seen: object = None


@dataclass
class NotifySocket:
    """A bound AF_UNIX datagram socket with SO_PASSCRED, read by a thread, like systemd's."""

    sock: socket.socket
    value: str  # what NOTIFY_SOCKET says
    seen: Callable[[], object] = lambda: None
    got: list[Datagram] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        space = socket.CMSG_SPACE(UCRED.size)
        while not self._stop.is_set():
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, space)
            except TimeoutError:
                continue
            except OSError:
                return
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = UCRED.unpack(payload[: UCRED.size])[0]
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.got.append(Datagram(time.monotonic(), pid, fields, data, self.seen()))

    def close(self) -> None:
        self._stop.set()
        self.sock.close()

    def said(self) -> list[str]:
        """The first line of every datagram but WATCHDOG=1, in order."""
        return [d.raw.decode().split("\n")[0] for d in self.got if d.raw != b"WATCHDOG=1"]

    def wait(self, first_line: str, *, count: int = 1, timeout_s: float = 10.0) -> Datagram:
        """The ``count``-th datagram whose first line is ``first_line``."""

        def found() -> list[Datagram]:
            return [d for d in self.got if d.raw.decode().split("\n")[0] == first_line]

        wait_for(lambda: len(found()) >= count, timeout_s=timeout_s, what=f"{count} x {first_line}")
        return found()[count - 1]

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.value, **extra}


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    """A socket bound to a short path (sun_path holds 108 bytes; tmp_path can be longer)."""
    directory = tempfile.mkdtemp(prefix="notify-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    listener = NotifySocket(sock, path)
    listener.start()
    try:
        yield listener
    finally:
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def abstract_socket() -> Iterator[NotifySocket]:
    """A socket in the abstract namespace (``@name``), as systemd's own ``/run/systemd/notify``
    may be reached through ``@/org/freedesktop/systemd1/notify``."""
    name = f"inject-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    listener = NotifySocket(sock, "@" + name)
    listener.start()
    try:
        yield listener
    finally:
        listener.close()


def test_run_tells_ready_reloading_ready_stopping_and_pets_the_watchdog(
    bao: Bao, prefix: str, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """`inject -- child` under a notify socket: READY=1 once the child runs its program (exec
    done), RELOADING=1 with MONOTONIC_USEC and READY=1 around a re-render, WATCHDOG=1 about every 0.5 s with
    WATCHDOG_USEC=1000000, STOPPING=1 on SIGTERM; all from inject's pid; the child gets no
    NOTIFY_SOCKET or WATCHDOG_*."""
    path = f"{prefix}/app"
    secret_template(bao, path, tmp_path)
    out = tmp_path / "out.txt"
    child = SignalChild.create(tmp_path)
    script = str(child.directory / "child.py")
    notify_socket.seen = lambda: (running(script), out.read_text() if out.exists() else None)
    argv = inject_argv(*POLL, "-t", "a.j2:out.txt", "--", *child.argv("NOTIFY_SOCKET", "WATCHDOG_USEC"))
    env = inject_env(bao, notify_socket.env(WATCHDOG_USEC="1000000"))
    with supervise(argv, env=env, cwd=tmp_path, stray=child.pids) as inject:
        ready = notify_socket.wait("READY=1")
        assert ready.seen[0] == child.wait_starts(1)[0]["pid"]  # the child ran its program before READY
        assert ready.pid == inject.pid
        assert ready.fields["STATUS"] == f"1 output(s) rendered; child pid {child.pids()[0]} running"
        assert child.starts()[0]["env"] == {"NOTIFY_SOCKET": None, "WATCHDOG_USEC": None}

        new = secret_value()
        bao.kv_put(path, v=new)
        reloading = notify_socket.wait("RELOADING=1")
        monotonic_us = int(reloading.fields["MONOTONIC_USEC"])
        assert abs(monotonic_us / 1e6 - reloading.at) < 5.0  # CLOCK_MONOTONIC, in µs
        assert reloading.pid == inject.pid
        again = notify_socket.wait("READY=1", count=2)
        assert again.seen[1] == new  # the file was written when READY=1 came back
        assert again.at >= reloading.at

        wait_for(lambda: len(beats(notify_socket)) >= 6, timeout_s=10, what="6 watchdog beats")
        inject.send_signal(signal.SIGTERM)
        assert inject.wait(timeout_s=10) == 0
    stopping = notify_socket.wait("STOPPING=1")
    assert stopping.pid == inject.pid
    assert notify_socket.said()[-1] == "STOPPING=1"
    times = [d.at for d in beats(notify_socket) if d.at < stopping.at]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert 0.3 < sorted(gaps)[len(gaps) // 2] < 0.8  # about every half second
    assert all(d.pid == inject.pid for d in beats(notify_socket))


def running(script: str) -> int | None:
    """The pid of a process running ``script`` as ``python SCRIPT ...`` (a child past its
    exec; inject's own command line names it later, after ``--``)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes().split(b"\0")[1:2] == [script.encode()]:
                    return int(entry.name)
    return None


def beats(listener: NotifySocket) -> list[Datagram]:
    """The WATCHDOG=1 datagrams so far."""
    return [d for d in listener.got if d.raw == b"WATCHDOG=1"]


def test_watch_on_an_abstract_socket_is_ready_after_the_first_render(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """`inject watch` with NOTIFY_SOCKET=@name: READY=1 once the file is written, STOPPING=1
    on SIGTERM; no WATCHDOG=1 when WATCHDOG_PID names another process."""
    value = secret_template(bao, f"{prefix}/app", tmp_path)
    out = tmp_path / "out.txt"
    with abstract_socket() as listener:
        listener.seen = lambda: out.read_text() if out.exists() else None
        argv = inject_argv("watch", *POLL, "-t", "a.j2:out.txt")
        env = inject_env(bao, listener.env(WATCHDOG_USEC="200000", WATCHDOG_PID="1"))
        with supervise(argv, env=env, cwd=tmp_path, ready=None) as inject:
            ready = listener.wait("READY=1")
            assert ready.seen == value
            assert ready.pid == inject.pid
            holds_for(lambda: beats(listener) == [], duration_s=0.5, what="no watchdog beat")
            inject.send_signal(signal.SIGTERM)
            assert inject.wait(timeout_s=10) == 0
        assert listener.said() == ["READY=1", "STOPPING=1"]
        assert beats(listener) == []


def test_no_watch_says_ready_then_the_app_replaces_inject(
    bao: Bao, prefix: str, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """`--no-watch`: READY=1 from the pid that then becomes the app (exec), and the app's
    environment holds no NOTIFY_SOCKET."""
    secret_template(bao, f"{prefix}/app", tmp_path)
    script = write(
        tmp_path / "app.py",
        "import os, sys\nopen(sys.argv[1], 'w').write(f\"{os.getpid()} {os.environ.get('NOTIFY_SOCKET')}\")\n",
    )
    record = tmp_path / "app.out"
    argv = inject_argv("--no-watch", "-t", "a.j2:out.txt", "--", "python3", str(script), str(record))
    result = subprocess.run(
        argv,
        env=inject_env(bao, notify_socket.env()),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    ready = notify_socket.wait("READY=1")
    pid, seen = record.read_text().split()
    assert ready.pid == int(pid)
    assert seen == "None"


@pytest.mark.skipif(shutil.which("systemd-notify") is None, reason="systemd-notify is not installed")
def test_ready_parses_like_systemd_notify_s_own(
    bao: Bao, prefix: str, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """inject's READY=1 datagram is byte for byte what `systemd-notify --ready --status=...`
    sends for the same status (newline-separated KEY=value fields, no trailing newline)."""
    reference = subprocess.run(  # --no-block: no BARRIER=1 round trip, which needs systemd
        ["systemd-notify", "--no-block", "--ready", "--status=1 output(s) rendered"],
        env={**os.environ, "NOTIFY_SOCKET": notify_socket.value},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert reference.returncode == 0, reference.stderr
    theirs = notify_socket.wait("READY=1")
    secret_template(bao, f"{prefix}/app", tmp_path)
    argv = inject_argv("watch", "-t", "a.j2:out.txt")
    with supervise(argv, env=inject_env(bao, notify_socket.env()), cwd=tmp_path, ready=None) as inject:
        ours = notify_socket.wait("READY=1", count=2)
        inject.send_signal(signal.SIGTERM)
        assert inject.wait(timeout_s=10) == 0
    assert theirs.raw == b"READY=1\nSTATUS=1 output(s) rendered"
    assert ours.raw == theirs.raw
    assert ours.pid == inject.pid


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_example_unit_file_is_valid(tmp_path: Path) -> None:
    """examples/systemd/inject.service passes `systemd-analyze verify` (with the installed inject)."""
    example = Path(__file__).parents[2] / "examples" / "systemd" / "inject.service"
    text = example.read_text()
    assert "Type=notify" in text
    assert "WatchdogSec=" in text
    inject = Path(sys.executable).parent / "inject"
    unit = write(tmp_path / "inject.service", text.replace("/usr/local/bin/inject", str(inject)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_a_full_or_missing_socket_never_blocks_and_is_logged_once(
    caplog: pytest.LogCaptureFixture, notify_socket: NotifySocket
) -> None:
    """Datagrams to a socket nobody reads (its queue full: EAGAIN) or to no socket at all
    (ENOENT) are dropped at once, with one debug line each, never an exception."""
    from vault_inject.observe.notifysocket import DatagramSender

    notify_socket.close()  # stop reading: the kernel queue fills up
    unread = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unread.bind(b"\0" + f"inject-unread-{os.getpid()}-{time.monotonic_ns()}".encode())
    try:
        caplog.set_level("DEBUG", logger="vault_inject.observe.notifysocket")
        full = DatagramSender(unread.getsockname())
        started = time.monotonic()
        for _ in range(5000):
            full(b"WATCHDOG=1")
        assert time.monotonic() - started < 5.0
        missing = DatagramSender("/nonexistent/notify")
        missing(b"READY=1")
        missing(b"STOPPING=1")
        full.close()
        missing.close()
    finally:
        unread.close()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "Resource temporarily unavailable" in lines[0]
    assert "No such file or directory" in lines[1]
