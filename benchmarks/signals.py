"""Issue 10's signal latency: the time from a signal sent to inject, running as PID 1 of its
own PID namespace (as in a container), to its child receiving it; p50/p99 per situation.

The child is a small Python program that appends ``<SIGNAME> <monotonic time>`` to a file when
a signal arrives (CLOCK_MONOTONIC is one clock for every process), so the latency is the
child's own timestamp minus the moment of ``os.kill``. Situations: start-up while the server
is unreachable (SIGTERM; time until inject exits), idle, a ``check`` command running, the
server trickling its answers (through ``TrickleProxy``), a template command running.
Target: p99 < 100 ms, nothing lost (a signal not delivered within the cap is lost).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from harness import Bench, SignalRow, start, stop, wait_exit, wait_until

TARGET_P99_S = 0.1
READY_TIMEOUT_S = 60.0
TRICKLE_EVERY_S = 0.5
TRICKLE_MAX_BYTES = 600  # a stalled answer ends after 5 minutes whatever happens
CHILD = """
import os, signal, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
def note(sig, _frame):
    os.write(fd, f"{signal.Signals(sig).name} {time.monotonic():.6f}\\n".encode())
    if sig == signal.SIGTERM:
        os._exit(0)
for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
    signal.signal(sig, note)
os.write(fd, b"ready 0\\n")
signal.alarm(900)  # never outlive a broken benchmark
while True:
    signal.pause()
"""


def pid1_prefix() -> list[str]:
    """The argv prefix that makes a command PID 1 of a new PID namespace ([] when unavailable)."""
    if not shutil.which("unshare"):
        return []
    base = ["unshare", "--pid", "--fork", "--mount-proc"]
    for prefix in (base, ["unshare", "--user", "--map-root-user", *base[1:]]):
        if subprocess.call([*prefix, "true"], stderr=subprocess.DEVNULL) == 0:
            return prefix
    return []


class TrickleProxy:
    """A loopback TCP proxy to the server. While ``trickling``, each request that arrives is
    answered by the proxy itself: a 200 header, then one body byte every 0.5 s."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.calm = threading.Event()  # set: forward; clear: trickle
        self.calm.set()
        self.stalled: list[bytes] = []  # the requests being answered by a trickle right now
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def trickle(self, on: bool) -> None:
        """Start or stop trickling (stopping ends the trickled answers: their connections close)."""
        if on:
            self.calm.clear()
        else:
            self.calm.set()

    def close(self) -> None:
        """Stop accepting; trickled answers end."""
        self.calm.set()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                return
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := client.recv(65536):
                if not self.calm.is_set():
                    self._trickle(client, chunk[:300])
                    break
                upstream.sendall(chunk)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _answers(self, upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := upstream.recv(65536):
                client.sendall(chunk)

    def _trickle(self, client: socket.socket, request: bytes) -> None:
        client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n")
        with self._lock:
            self.stalled.append(request)
        try:
            for _ in range(TRICKLE_MAX_BYTES):
                if self.calm.wait(TRICKLE_EVERY_S):
                    return
                client.sendall(b" ")
        finally:
            with self._lock:
                self.stalled.remove(request)


@dataclass
class Session:
    """One inject run as PID 1: the namespace's launcher, inject's own pid, the child's record."""

    proc: subprocess.Popen[bytes]
    pid: int
    record: Path

    def received(self, name: str) -> list[float]:
        """Monotonic times at which the child received signal ``name``."""
        with contextlib.suppress(FileNotFoundError):
            lines = self.record.read_text().splitlines()
            return [float(line.split()[1]) for line in lines if line.startswith(name + " ")]
        return []


def signal_latency(bench: Bench, which: str) -> None:
    """Measure every signal trial of situation ``which`` and add its rows to ``bench.signals``."""
    root = bench.work / f"signal-{which}"
    root.mkdir(parents=True, exist_ok=True)
    bench.server.kv_put("sig", "v0")
    proxy = TrickleProxy(bench.server.port) if which == "trickle" else None
    try:
        nowhere = f"--address=http://127.0.0.1:{_closed_port()} -e A=vault:secret/bench/sig#password"
        nowhere += f" --token-file={bench.tokens['inject'][0]}"
        args = nowhere.split() if which == "startup" else ["-c", str(_config(bench, which, root, proxy))]
        prepare = partial(PREPARE[which], bench, root, proxy)
        rows = {name: SignalRow(which, name) for name in ("SIGUSR1", "SIGTERM")}
        prefix = pid1_prefix()
        for index in range(bench.profile.sessions):
            if proxy is not None:
                proxy.trickle(False)  # the last run ended stalled; this one starts normally
            # inject kills the commands it started when it exits: the last run's busy command
            # never wrote its "end", so each run starts with an empty record of them.
            (root / "busy.log").unlink(missing_ok=True)
            argv = [*prefix, *bench.inject, "run", *args, "--", sys.executable, "-c", CHILD]
            _run_session(bench, which, [*argv, str(root / f"child-{index}.rec")], bool(prefix), prepare, rows)
        bench.signals += [row for row in rows.values() if row.samples]
        if not prefix:
            bench.notes.append("unshare was not available: inject did not run as PID 1.")
    finally:
        if proxy is not None:
            proxy.close()


def _run_session(
    bench: Bench,
    which: str,
    argv: list[str],
    pid1: bool,
    prepare: Callable[[], None],
    rows: dict[str, SignalRow],
) -> None:
    """One inject run: some SIGUSR1 trials (none at start-up), then one SIGTERM trial."""
    proc = start(argv, env=bench.env, cwd=bench.work, log=bench.log(f"signal-{which}"))
    rng, cap_s = random.Random(which), bench.profile.cap_s  # noqa: S311 - timing jitter
    try:
        session = Session(proc, _inner_pid(proc, pid1), Path(argv[-1]))
        usr1_trials = 0 if which == "startup" else bench.profile.usr1_per_session
        if usr1_trials:
            wait_until(lambda: bool(session.received("ready")), timeout_s=READY_TIMEOUT_S, what="the child")
        wedged = False  # one lost SIGUSR1 says enough: go on to this run's SIGTERM
        for sig in [signal.SIGUSR1] * usr1_trials + [signal.SIGTERM]:
            if sig == signal.SIGUSR1 and wedged:
                continue
            prepare()
            time.sleep(rng.uniform(0.02, 0.1))  # a random moment inside the situation
            wedged = not _trial(session, sig, rows[sig.name], cap_s, until_exit=which == "startup")
    finally:
        stop([proc])


def _inner_pid(proc: subprocess.Popen[bytes], namespaced: bool) -> int:
    """inject's pid as seen from here: the launcher's only child when namespaced."""
    if not namespaced:
        return proc.pid
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    wait_until(lambda: bool(children.read_text().split()), timeout_s=10, what="inject under unshare")
    return int(children.read_text().split()[0])


def _trial(session: Session, sig: signal.Signals, row: SignalRow, cap_s: float, *, until_exit: bool) -> bool:
    """Send ``sig`` to inject; record the latency to the child (or to inject's exit). False if lost."""
    before = len(session.received(sig.name))
    sent = time.monotonic()
    os.kill(session.pid, sig)
    deadline = sent + cap_s
    arrived = wait_exit(session.pid, cap_s) if until_exit else _arrival(session, sig.name, before, deadline)
    if arrived is None:
        row.lost += 1
        row.samples.append(cap_s)
        return False
    row.samples.append(arrived - sent)
    return True


def _arrival(session: Session, name: str, index: int, deadline: float) -> float | None:
    while time.monotonic() < deadline:
        times = session.received(name)
        if len(times) > index:
            return times[index]
        time.sleep(0.005)
    return None


# --- the situations -----------------------------------------------------------------


def _config(bench: Bench, which: str, root: Path, proxy: TrickleProxy | None) -> Path:
    """inject's config for a situation: one template polled every second, plus what makes it busy."""
    marker = root / "busy.log"
    busy = json.dumps(f"echo start >> {marker}; sleep {bench.profile.busy_s:g}; echo end >> {marker}")
    address = f"http://127.0.0.1:{proxy.port}" if proxy else bench.server.address
    (root / "t.tpl").write_text("{{ secret('secret/bench/sig').password }}\n")
    lines = ["[vault]", f"address = {json.dumps(address)}", "[auth]"]
    lines += [f"token_file = {json.dumps(str(bench.tokens['inject'][0]))}", "[watch]", 'poll_interval = "1s"']
    if which == "check":
        lines += ["[child]", f"check = {busy}", 'on_change = "signal"', 'reload_signal = "SIGHUP"']
    if which == "commands":
        lines += ["[child]", 'on_change = "none"']
    lines += ["[[template]]", f'source = "{root / "t.tpl"}"', f'destination = "{root / "out.txt"}"']
    if which == "commands":
        lines.append(f"command = {busy}")
    (root / "inject.toml").write_text("\n".join(lines) + "\n")
    return root / "inject.toml"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _count(marker: Path, word: str) -> int:
    with contextlib.suppress(FileNotFoundError):
        return marker.read_text().split().count(word)
    return 0


def _in_retries(bench: Bench, root: Path, proxy: TrickleProxy | None) -> None:
    """Start-up: give inject time to be past its imports and retrying the unreachable server."""
    time.sleep(1.0)


def _idle(bench: Bench, root: Path, proxy: TrickleProxy | None) -> None:
    """Idle: nothing to do."""


def _make_busy(bench: Bench, root: Path, proxy: TrickleProxy | None) -> None:
    """Wait for the previous command to finish, change the secret, wait for the command to start."""
    marker = root / "busy.log"
    limit_s = bench.profile.busy_s + bench.profile.cap_s + 10
    wait_until(lambda: _count(marker, "start") == _count(marker, "end"), timeout_s=limit_s, what="idle")
    started = _count(marker, "start")
    bench.server.kv_put("sig", f"v{started + 1}-{time.monotonic()}")
    wait_until(lambda: _count(marker, "start") > started, timeout_s=limit_s, what="the command to start")


def _make_stalled(bench: Bench, root: Path, proxy: TrickleProxy | None) -> None:
    """Trickle every answer, then edit the template to use a new secret: the re-render's read of it
    stalls (where the loop itself waits on the server, as token and lease renewals also do)."""
    assert proxy is not None  # noqa: S101 - the trickle situation always has one
    proxy.trickle(False)
    wait_until(lambda: not proxy.stalled, timeout_s=5, what="trickles to end")
    time.sleep(bench.profile.poll_s)  # recover; and the file watcher is up (issue 10 loses earlier edits)
    name = f"sig{time.monotonic_ns()}"
    bench.server.kv_put(name, "new")
    proxy.trickle(True)
    (root / "t.tpl").write_text(f"{{{{ secret('secret/bench/{name}').password }}}}\n")
    wanted = f"bench/{name}".encode()
    stalled = lambda: any(wanted in request for request in list(proxy.stalled))  # noqa: E731
    wait_until(stalled, timeout_s=bench.profile.poll_s + 30, what="a stalled re-render read")


PREPARE: dict[str, Callable[[Bench, Path, TrickleProxy | None], None]] = {
    "startup": _in_retries,
    "idle": _idle,
    "check": _make_busy,
    "trickle": _make_stalled,
    "commands": _make_busy,
}
