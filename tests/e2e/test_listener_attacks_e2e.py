"""The ``--listen`` endpoint under attack, end to end: the real ``inject watch --listen`` (or
``inject --listen ... -- child``) against the session's OpenBao, attacked over real sockets.

* a thousand idle, half-sent requests (inject limited to 1024 descriptors) must not keep a
  secret change from reaching its file, nor ``/healthz`` from answering, nor fill stderr;
* a ``/metrics`` flood costs inject little CPU (counted from ``/proc/PID/stat``);
* ``/healthz`` says a write failed until one succeeds;
* a port alone listens on loopback; the ``Server`` header names no Python version.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil

from tests.e2e.test_observe_e2e import POLL, _listening, _one_template, free_port, get, wait_health
from tests.support import Bao, inject_argv, inject_env, secret_value, supervise, wait_for

IDLE_CONNECTIONS = 1100  # more than inject's 1024 descriptors
INJECT_NOFILE = 1024
ATTACK_PACE_S = 0.002
LINGER_RST = struct.pack("ii", 1, 0)  # close() sends a reset, as a client that gives up does


def _limited(*args: str) -> list[str]:
    """inject's argv, run with at most ``INJECT_NOFILE`` descriptors (prlimit execs it: same pid)."""
    return ["prlimit", f"--nofile={INJECT_NOFILE}:{INJECT_NOFILE}", "--", *inject_argv(*args)]


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _settle_descriptors(pid: int) -> None:
    """Wait until inject took in what it will of the flood: its descriptor count held for 1 s."""
    seen = [_descriptors(pid)]

    def settled() -> bool:
        time.sleep(0.25)
        seen.append(_descriptors(pid))
        return len(seen) > 4 and len(set(seen[-5:])) == 1

    wait_for(settled, timeout_s=30, what=f"inject's descriptors to settle (last: {seen[-5:]})")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (all its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _half_sent(port: int, count: int) -> Iterator[int]:
    """Up to ``count`` connections, each of which sent the start of a request and then nothing;
    how many got through. Paced, so that the listener's backlog keeps up; given up after three
    connections in a row time out (the attacker has what it can get). All reset at the end."""
    opened: list[socket.socket] = []
    sent = timed_out = 0
    try:
        while len(opened) < count and timed_out < 3:
            sock = socket.socket()
            opened.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            sock.settimeout(3)
            try:
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            except TimeoutError:
                timed_out += 1
            except OSError:  # reset by the listener: it chose not to keep this one
                timed_out = 0
            else:
                sent, timed_out = sent + 1, 0
            time.sleep(ATTACK_PACE_S)
        yield sent
    finally:
        for sock in opened:
            sock.close()


def _timed_get(url: str) -> tuple[int, float]:
    """Status of a GET with a one-second budget, and how long it took."""
    start = time.monotonic()
    status, _ = get_within(url, timeout_s=1.0)
    return status, time.monotonic() - start


def get_within(url: str, *, timeout_s: float) -> tuple[int, str]:
    """Status and body of a GET that must answer within ``timeout_s`` (0, reason otherwise)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 (loopback http)
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except OSError as exc:
        return 0, type(exc).__name__


def test_idle_half_sent_connections_cannot_exhaust_inject(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """1,100 idle half-sent requests to an inject with 1024 descriptors: a secret change still
    reaches the file, /healthz answers within a second, inject's descriptors stay bounded, and
    when the attacker resets them all, stderr gets no traceback."""
    path, _ = _one_template(bao, prefix, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = _limited("watch", *POLL, "--listen", f"127.0.0.1:{port}", "-t", "a.j2:a.txt")
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, ready="health and metrics on") as inject:
        wait_health(base, 200)
        logged_before = len(inject.stderr().splitlines())
        with _half_sent(port, IDLE_CONNECTIONS) as sent:
            assert sent > INJECT_NOFILE // 2, f"only {sent} connections got through"
            _settle_descriptors(inject.pid)
            new = secret_value()
            bao.kv_put(path, v=new)
            wait_for(
                lambda: (tmp_path / "a.txt").read_text() == new,
                timeout_s=10,
                what="the changed secret in a.txt while the listener is flooded",
            )
            status, took_s = _timed_get(base + "/healthz")
            assert (status, took_s < 1.0) == (200, True), f"/healthz: {status} after {took_s:.2f}s"
            assert _descriptors(inject.pid) < 200
        wait_health(base, 200, timeout_s=5)  # the resets are behind it
        assert inject.poll() is None
        stderr = inject.stderr()
        assert "Traceback" not in stderr
        assert len(stderr.splitlines()) - logged_before < 10, stderr[-3000:]


def test_a_metrics_flood_costs_inject_little_cpu(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """1,000 /metrics requests from 4 threads, with a child to measure: inject spends under a
    second of CPU on them (each answer comes from a snapshot, not a fresh build and walk)."""
    scene = _listening(bao, prefix, tmp_path)
    with supervise(scene.argv, env=inject_env(bao), cwd=tmp_path, stray=scene.child.pids) as inject:
        scene.child.wait_starts(1)
        wait_health(scene.base, 200)
        answered: list[int] = []

        def scrape(times: int) -> None:
            for _ in range(times):
                answered.append(get_within(scene.base + "/metrics", timeout_s=5)[0])

        before = _cpu_seconds(inject.pid)
        threads = [threading.Thread(target=scrape, args=(250,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        spent = _cpu_seconds(inject.pid) - before
        assert answered.count(200) >= 900, f"{answered.count(200)} of {len(answered)} scrapes answered"
        assert spent < 1.0, f"inject spent {spent:.2f}s of CPU on 1000 scrapes"


def test_healthz_reports_a_failed_write_until_one_succeeds(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A change whose file cannot be written (the destination became a symlink, which inject
    refuses) turns /healthz to 503 naming the failed write, through the retries; once the
    write succeeds it is 200 again."""
    path, _ = _one_template(bao, prefix, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = inject_argv("watch", *POLL, "--listen", f"127.0.0.1:{port}", "-t", "a.j2:a.txt")
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, ready="health and metrics on") as inject:
        wait_health(base, 200)
        destination, elsewhere = tmp_path / "a.txt", tmp_path / "elsewhere.txt"
        elsewhere.write_text("not for inject\n")
        destination.unlink()
        destination.symlink_to(elsewhere)
        new = secret_value()
        bao.kv_put(path, v=new)
        inject.wait_log("will retry")
        body = wait_health(base, 503, timeout_s=2)
        assert "write" in body["reason"]
        time.sleep(1.0)  # polls go on (every 300ms) and find nothing new: still failing
        assert get(base + "/healthz")[0] == 503
        destination.unlink()
        wait_for(
            lambda: destination.exists() and destination.read_text() == new, timeout_s=15, what="the retry"
        )
        assert wait_health(base, 200, timeout_s=2) == {"status": "ok"}
        assert elsewhere.read_text() == "not for inject\n"


def test_a_port_alone_listens_on_loopback_only(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`--listen PORT` binds 127.0.0.1, not every interface."""
    _one_template(bao, prefix, tmp_path)
    port = free_port()
    argv = inject_argv("watch", *POLL, "--listen", str(port), "-t", "a.j2:a.txt")
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, ready="health and metrics on") as inject:
        wait_health(f"http://127.0.0.1:{port}", 200)
        listening = [
            c.laddr
            for c in psutil.Process(inject.pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", port)]


def test_the_server_header_names_no_python_version(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """No answer tells a visitor which Python (and so which known bugs) serves it."""
    scene = _listening(bao, prefix, tmp_path)
    with supervise(scene.argv, env=inject_env(bao), cwd=tmp_path, stray=scene.child.pids):
        wait_health(scene.base, 200)
        for path in ("/healthz", "/metrics", "/nothing-here"):
            try:
                with urllib.request.urlopen(scene.base + path, timeout=5) as answer:  # noqa: S310
                    headers = answer.headers
            except urllib.error.HTTPError as exc:
                headers = exc.headers
            assert "python" not in headers.get("Server", "").lower(), path


def _trickle_until_closed(port: int, *, limit_s: float) -> float:
    """Send a request a byte every 0.2 s (never finishing it); seconds until inject closes it."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
        for byte in itertools.cycle(b"GET /healthz HTTP/1.1\r\nX-Slow: "):
            if time.monotonic() - start > limit_s:
                break
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1024) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
    return time.monotonic() - start


def test_trickled_and_garbage_requests_are_cut_short_without_a_traceback(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """A request trickled a byte at a time is closed within 3 s of its connect; bytes that are
    not HTTP (a TLS hello, binary junk, an endless header) get a short error answer; none of
    it reaches inject's stderr, and /healthz still answers."""
    _one_template(bao, prefix, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = inject_argv("watch", *POLL, "--listen", f"127.0.0.1:{port}", "-t", "a.j2:a.txt")
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, ready="health and metrics on") as inject:
        wait_health(base, 200)
        logged_before = len(inject.stderr().splitlines())
        assert _trickle_until_closed(port, limit_s=6.0) < 3.0
        tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64) + b"\r\n\r\n"
        for junk in (tls_hello, os.urandom(3000) + b"\r\n\r\n", b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000):
            with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
                with contextlib.suppress(OSError):
                    sock.sendall(junk)
                try:
                    first = sock.recv(64)
                except OSError:
                    first = b""
            assert first == b"" or first.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), first
        wait_health(base, 200)
        stderr = inject.stderr()
        assert "Traceback" not in stderr
        assert len(stderr.splitlines()) - logged_before < 3, stderr[-3000:]
