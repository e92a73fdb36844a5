"""Issue 10's signal latency: the time from a signal sent to inject, running as PID 1 of its
own PID namespace (as in a container), to its child receiving it; p50/p99 per situation.

The child appends ``<SIGNAME> <monotonic time>`` to a file when a signal arrives (one clock for
every process): the latency is its timestamp minus the moment of ``os.kill``. Target: p99 < 50 ms,
nothing lost (not delivered within the cap). The situations are in README.md and ``PREPARE``.
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
from functools import partial
from pathlib import Path

from harness import Bench, SignalRow, start, stop, text, wait_exit, wait_for, wait_until

from vault_inject.cli.devserver import free_port_pair

TARGET_P99_S = 0.05
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
    """A loopback TCP proxy to the server. While ``forwarding`` is clear, each request that arrives
    is answered by the proxy itself (and kept in ``trickled``): a 200 header, then a byte every 0.5 s."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.forwarding = threading.Event()  # clearing it trickles; setting it ends the trickles
        self.forwarding.set()
        self.trickled: list[bytes] = []  # every request answered by a trickle (appends are atomic)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listener was closed
            while True:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
                threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
                threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        """Copy one direction; requests that arrive while not forwarding are trickled instead."""
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if requests and not self.forwarding.is_set():
                    self._trickle(source, chunk[:300])
                    break
                sink.sendall(chunk)
        for sock in (source, sink) if requests else ():  # the client's side ends the connection
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _trickle(self, client: socket.socket, request: bytes) -> None:
        client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n")
        self.trickled.append(request)
        for _ in range(TRICKLE_MAX_BYTES):
            if self.forwarding.wait(TRICKLE_EVERY_S):
                return
            client.sendall(b" ")


def received(record: Path, name: str) -> list[float]:
    """Monotonic times at which the child (writing ``record``) received signal ``name``."""
    return [float(line.split()[1]) for line in text(record).splitlines() if line.startswith(name + " ")]


def signal_latency(bench: Bench, which: str) -> None:
    """Measure every signal trial of situation ``which`` and add its rows to ``bench.signals``."""
    root = bench.work / f"signal-{which}"
    root.mkdir(parents=True, exist_ok=True)
    bench.server.kv_put("sig", "v0")
    proxy = TrickleProxy(bench.server.port) if which == "trickle" else None
    prefix, rows = pid1_prefix(), {name: SignalRow(which, name) for name in ("SIGUSR1", "SIGTERM")}
    if not prefix:
        bench.notes.append("unshare was not available: inject did not run as PID 1.")
    args, prepare = _arguments(bench, which, root, proxy), partial(PREPARE[which], bench, root, proxy)
    try:
        for index in range(bench.profile.sessions):
            if proxy is not None:
                proxy.forwarding.set()  # the last run ended stalled; this one starts normally
            # inject kills the commands it started when it exits: the last run's busy command
            # never wrote its "end", so each run starts with an empty record of them.
            (root / "busy.log").unlink(missing_ok=True)
            argv = [*prefix, *bench.inject, "run", *args, "--", sys.executable, "-c", CHILD]
            _session(bench, which, [*argv, str(root / f"child-{index}.rec")], prepare, rows)
    finally:
        if proxy is not None:  # stop accepting; the trickled answers end
            proxy.listener.close()
            proxy.forwarding.set()
    bench.signals += [row for row in rows.values() if row.samples]


def _session(
    bench: Bench, which: str, argv: list[str], prepare: Callable[[], None], rows: dict[str, SignalRow]
) -> None:
    """One inject run: some SIGUSR1 trials (none at start-up), then one SIGTERM trial."""
    proc = start(argv, home=bench.work, log=bench.log(f"signal-{which}"))
    record, rng, cap_s = Path(argv[-1]), random.Random(which), bench.profile.cap_s  # noqa: S311 - jitter
    try:
        pid = _inner_pid(proc) if argv[0] == "unshare" else proc.pid
        usr1_trials = 0 if which == "startup" else bench.profile.usr1_per_session
        if usr1_trials:
            wait_until(lambda: bool(received(record, "ready")), timeout_s=READY_TIMEOUT_S, what="the child")

        def trial(sig: signal.Signals) -> bool:
            """Put inject into the situation, send ``sig`` a random moment later; False if lost."""
            prepare()
            time.sleep(rng.uniform(0.02, 0.1))
            before, sent = len(received(record, sig.name)), time.monotonic()
            os.kill(pid, sig)
            if which == "startup":
                arrived = wait_exit(pid, cap_s)
            else:
                later = wait_for(lambda: received(record, sig.name)[before:], timeout_s=cap_s, step_s=0.005)
                arrived = later[0] if later else None
            rows[sig.name].lost += arrived is None
            rows[sig.name].samples.append(cap_s if arrived is None else arrived - sent)
            return arrived is not None

        for _ in range(usr1_trials):
            if not trial(signal.SIGUSR1):
                break  # one lost SIGUSR1 says enough: go on to this run's SIGTERM
        trial(signal.SIGTERM)
    finally:
        stop([proc])


def _inner_pid(proc: subprocess.Popen[bytes]) -> int:
    """inject's pid as seen from here: the only child of ``unshare``."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    wait_until(lambda: bool(children.read_text().split()), timeout_s=10, what="inject under unshare")
    return int(children.read_text().split()[0])


def _arguments(bench: Bench, which: str, root: Path, proxy: TrickleProxy | None) -> list[str]:
    """inject's arguments: at start-up a reference to a server that is not there; else a config of
    one template polled every second, plus what makes the situation busy."""
    token_file = bench.tokens["inject"][0]
    if which == "startup":
        nowhere = f"--address=http://127.0.0.1:{free_port_pair()} --token-file={token_file}"
        return [*nowhere.split(), "-e", "A=vault:secret/bench/sig#password"]
    marker = root / "busy.log"
    busy = json.dumps(f"echo start >> {marker}; sleep {bench.profile.busy_s:g}; echo end >> {marker}")
    address = f"http://127.0.0.1:{proxy.port}" if proxy else bench.server.address
    (root / "t.tpl").write_text("{{ secret('secret/bench/sig').password }}\n")
    lines = ["[vault]", f"address = {json.dumps(address)}", "[auth]"]
    lines += [f"token_file = {json.dumps(str(token_file))}", "[watch]", 'poll_interval = "1s"']
    if which == "check":
        lines += ["[child]", f"check = {busy}", 'on_change = "signal"', 'reload_signal = "SIGHUP"']
    if which == "commands":
        lines += ["[child]", 'on_change = "none"']
    lines += ["[[template]]", f'source = "{root / "t.tpl"}"', f'destination = "{root / "out.txt"}"']
    if which == "commands":
        lines.append(f"command = {busy}")
    (root / "inject.toml").write_text("\n".join(lines) + "\n")
    return ["-c", str(root / "inject.toml")]


def _make_busy(bench: Bench, root: Path, proxy: TrickleProxy | None) -> None:
    """Wait for the previous command to finish, change the secret, wait for the command to start."""
    busy, limit_s = root / "busy.log", bench.profile.busy_s + bench.profile.cap_s + 10
    wait_until(lambda: text(busy).count("start") == text(busy).count("end"), timeout_s=limit_s, what="idle")
    started = text(busy).count("start")
    bench.server.kv_put("sig", f"v{started + 1}-{time.monotonic()}")
    wait_until(lambda: text(busy).count("start") > started, timeout_s=limit_s, what="the command to start")


def _make_stalled(bench: Bench, root: Path, proxy: TrickleProxy | None) -> None:
    """Trickle every answer, then edit the template to use a new secret: the re-render's read of it
    stalls (where the loop itself waits on the server, as token and lease renewals also do)."""
    assert proxy is not None  # noqa: S101 - the trickle situation always has one
    proxy.forwarding.set()  # the last trial's trickles end
    time.sleep(bench.profile.poll_s)  # recover; and the file watcher is up (issue 10 loses earlier edits)
    name = f"sig{time.monotonic_ns()}"
    bench.server.kv_put(name, "new")
    proxy.forwarding.clear()
    (root / "t.tpl").write_text(f"{{{{ secret('secret/bench/{name}').password }}}}\n")
    wanted = f"bench/{name}".encode()  # a new name: only this trial's re-render reads it
    stalled = lambda: any(wanted in request for request in list(proxy.trickled))  # noqa: E731
    wait_until(stalled, timeout_s=bench.profile.poll_s + 30, what="a stalled re-render read")


PREPARE: dict[str, Callable[[Bench, Path, TrickleProxy | None], None]] = {
    "startup": lambda *_: time.sleep(1.0),  # inject is past its imports, retrying the closed port
    "idle": lambda *_: None,
    "check": _make_busy,
    "trickle": _make_stalled,
    "commands": _make_busy,
}
