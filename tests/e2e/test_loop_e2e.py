"""The loop never blocks and never leaves a process behind, end to end: real inject, real
OpenBao, real children. A signal reaches the child while a slow check runs; restarts and
exits take the old child's whole process group (and descendants that left it) with them;
a template edited before the file watcher is up is not lost; commands run as --user."""

from __future__ import annotations

import os
import pwd
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.fault_proxy import FaultProxy
from tests.e2e.helpers_e2e import write
from tests.e2e.supervise_helpers import SignalChild, children
from tests.support import Bao, alive, holds_for, inject_argv, inject_env, secret_value, supervise, wait_for

POLL = ("--poll-interval", "200ms")

# A child that starts two grandchildren that ignore TERM: one in its process group, one in
# a session of its own (setsid), then waits. Each grandchild's pid goes to DIR/grandchildren.
FAMILY = r"""#!/bin/sh
DIR="$1"
sh -c 'trap "" TERM; echo $$ >> "$0/grandchildren"; exec sleep 300' "$DIR" &
setsid sh -c 'trap "" TERM; echo $$ >> "$0/grandchildren"; exec sleep 300' "$DIR" &
echo $$ >> "$DIR/starts"
trap 'exit 0' TERM
while true; do sleep 0.05; done
"""


def _lines(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except FileNotFoundError:
        return []


def test_term_during_a_slow_check_reaches_the_child_at_once(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """With check = "sleep 8", a TERM sent while the check runs reaches the child within a
    second (it used to wait for the check: ~6 s), and inject exits with the child's code."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/app"
    bao.kv_put(path, v=secret_value())
    write(tmp_path / "app.j2", f"{{{{ secret('{path}').v }}}}\n")
    write(tmp_path / "inject.toml", '[child]\ncheck = "sleep 8"\non_change = "signal"\n')
    argv = inject_argv(*POLL, "-t", "app.j2:app.txt", "--", *child.argv())
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        pid = child.wait_starts(1)[0]["pid"]
        first = (tmp_path / "app.txt").read_text()
        bao.kv_put(path, v=secret_value())
        wait_for(lambda: (tmp_path / "app.txt").read_text() != first, timeout_s=10, what="the new file")
        wait_for(lambda: _running_sleep(inject.pid), timeout_s=5, what="the check (sleep 8) running")
        sent = time.monotonic()
        inject.process.send_signal(signal.SIGTERM)
        child.wait_signal(pid, "TERM", timeout_s=5)
        latency = time.monotonic() - sent
        assert inject.wait(timeout_s=5) == 0
    assert latency < 1.0, f"TERM took {latency:.2f}s to reach the child"


def test_restart_leaves_nothing_of_the_old_child(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A restart for a new version stops the old child's group and its setsid'd descendant
    (both ignore TERM: SIGKILL after the kill timeout) before the new child starts; inject's
    exit does the same for the last child."""
    record = tmp_path / "record"
    record.mkdir()
    write(tmp_path / "family.sh", FAMILY)
    path = f"{prefix}/app"
    bao.kv_put(path, v=secret_value())
    write(tmp_path / "app.j2", f"{{{{ secret('{path}').v }}}}\n")
    argv = inject_argv(*POLL, "--kill-timeout", "1s", "-t", "app.j2:app.txt", "--")
    argv += ["sh", str(tmp_path / "family.sh"), str(record)]
    grandchildren = record / "grandchildren"
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=lambda: _lines(grandchildren)) as inject:
        wait_for(lambda: len(_lines(grandchildren)) >= 2, timeout_s=5, what="two grandchildren")
        old = _lines(grandchildren)[:2]
        bao.kv_put(path, v=secret_value())
        wait_for(lambda: len(_lines(record / "starts")) >= 2, timeout_s=15, what="the new child")
        assert [pid for pid in old if alive(pid)] == [], "a process of the old child survived the restart"
        wait_for(lambda: len(_lines(grandchildren)) >= 4, timeout_s=5, what="the new grandchildren")
        new = _lines(grandchildren)[2:4]
        assert inject.stop(timeout_s=10) == 0
    assert [pid for pid in new if alive(pid)] == [], "a process of the child survived inject's exit"


def test_template_edited_before_the_watcher_is_up_is_rerendered(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """A template command that edits the template source right after the first render (before
    the supervisor runs) still gets the file re-rendered from the new source."""
    path = f"{prefix}/app"
    bao.kv_put(path, v=secret_value())
    source = write(tmp_path / "app.j2", f"first {{{{ secret('{path}').v }}}}\n")
    write(
        tmp_path / "inject.toml",
        "[[template]]\n"
        f'source = "{source}"\n'
        'destination = "app.txt"\n'
        f"command = \"sed -i 's/^first/second/' {source}\"\n",
    )
    child = SignalChild.create(tmp_path)
    argv = inject_argv("--poll-interval", "1h", "--", *child.argv())
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids):
        wait_for(
            lambda: (tmp_path / "app.txt").read_text().startswith("second"),
            timeout_s=10,
            what="the file rendered from the edited source",
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_check_and_template_commands_run_as_the_user(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """With --user nobody, the check and template commands run as nobody (least privilege),
    with the rendered env vars."""
    nobody = pwd.getpwnam("nobody")
    work = tmp_path / "work"  # the commands (run in inject's working directory) write their findings here
    work.mkdir()
    os.chown(work, nobody.pw_uid, nobody.pw_gid)
    path = f"{prefix}/app"
    bao.kv_put(path, v=secret_value())
    # the config and template stay root's: as root inject reads none another user could change
    write(tmp_path / "app.j2", f"{{{{ secret('{path}').v }}}}\n")
    config = write(
        tmp_path / "inject.toml",
        '[child]\ncheck = "id -u > check.uid; echo $APP_FLAG > check.env"\non_change = "none"\n'
        '[env]\nAPP_FLAG = "on"\n'
        '[[template]]\nsource = "app.j2"\ndestination = "app.txt"\ncommand = "id -u >> command.uid"\n',
    )
    argv = inject_argv(*POLL, "-c", str(config), "--user", "nobody", "--", "sleep", "60")
    with supervise(argv, env=inject_env(bao), cwd=work):
        wait_for(lambda: _lines(work / "command.uid"), timeout_s=5, what="the first template command")
        bao.kv_put(path, v=secret_value())
        wait_for(lambda: (work / "check.uid").exists(), timeout_s=10, what="the check")
        wait_for(lambda: len(_lines(work / "command.uid")) >= 2, timeout_s=10, what="the second command")
    assert _lines(work / "check.uid") == [nobody.pw_uid]
    assert set(_lines(work / "command.uid")) == {nobody.pw_uid}
    assert (work / "check.env").read_text().strip() == "on"


@pytest.mark.parametrize(("match", "poll"), [("auth/token/renew-self", "1h"), ("secret/data/", "200ms")])
def test_term_reaches_the_child_while_the_server_trickles(
    bao: Bao, prefix: str, tmp_path: Path, match: str, poll: str
) -> None:
    """While the server trickles its answers (a byte every 0.5 s) to a token renewal or a
    poll, a TERM still reaches the child at once and inject exits."""
    proxy = FaultProxy(bao.address, body_marker=secret_value("body"))
    proxy.start()
    try:
        token = bao.token_with("default", "root", ttl="3s")  # renewal due after 2 s
        path = f"{prefix}/app"
        bao.kv_put(path, v=secret_value())
        child = SignalChild.create(tmp_path)
        argv = inject_argv("--poll-interval", poll, "-e", f"V=vault:{path}#v", "--", *child.argv())
        env = {**inject_env(bao, token=token), "VAULT_ADDR": proxy.address}
        with supervise(argv, env=env, cwd=tmp_path, stray=child.pids) as inject:
            pid = child.wait_starts(1)[0]["pid"]
            proxy.trickle(match=match)
            proxy.wait_request(timeout_s=10)  # the trickled request (the only kind sent) is in flight
            holds_for(lambda: inject.poll() is None, duration_s=0.5, what="inject up, the request in flight")
            sent = time.monotonic()
            inject.process.send_signal(signal.SIGTERM)
            child.wait_signal(pid, "TERM", timeout_s=5)
            latency = time.monotonic() - sent
            assert inject.wait(timeout_s=10) == 0
    finally:
        proxy.stop()
    assert latency < 1.0, f"TERM took {latency:.2f}s to reach the child"


def _running_sleep(parent: int) -> bool:
    """True while some descendant of ``parent`` runs ``sleep``."""
    return any(b"sleep" in _cmdline(pid) for pid in _descendants(parent))


def _descendants(pid: int) -> list[int]:
    found = children(pid)
    return found + [grand for child in found for grand in _descendants(child)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
