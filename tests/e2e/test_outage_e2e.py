"""Outages made by a TCP proxy between inject and OpenBao that the test stops and
restarts: the child keeps running on the last good secrets, one line for the outage and
one for the recovery, then the catch-up; at startup inject retries until the deadline."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.fault_proxy import FaultProxy
from tests.e2e.helpers_e2e import secret_template, write
from tests.e2e.supervise_helpers import SignalChild
from tests.support import Bao, holds_for, inject_argv, inject_env, run_inject, secret_value, supervise

OUTAGE_POLLS_S = 1.0  # while down, inject re-polls every min(poll interval, backoff) = 0.3s


def test_outage_keeps_child_logs_once_and_catches_up(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """While the server is unreachable the child keeps running and one line is logged; after recovery one line and the new value arrives."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/app"
    secret_template(bao, path, tmp_path)
    argv = inject_argv("--poll-interval", "300ms", "-t", "a.j2:a.txt", "-e", f"APP_V=vault:{path}#v")
    argv += ["--", *child.argv("APP_V")]
    env = inject_env(bao, {"VAULT_ADDR": proxy.address})
    with supervise(argv, env=env, cwd=tmp_path, stray=child.pids) as inject:
        pid = child.wait_starts(1)[0]["pid"]
        proxy.refuse()
        inject.wait_log("unreachable")
        new = secret_value()
        assert bao.kv_put(path, v=new) == 2

        def quiet() -> None:  # several more failed polls, none may log again
            assert len(inject.lines("unreachable")) == 1
            assert child.pids() == [pid]
            assert child.signals(pid) == []

        holds_for(quiet, duration_s=OUTAGE_POLLS_S, what="one outage line, the child untouched")

        proxy.pass_through()
        recovered = inject.wait_log("reachable again")[0]
        failed_polls = re.search(r"after (\d+) failed poll", recovered)
        assert failed_polls is not None, recovered
        assert int(failed_polls.group(1)) >= 3, recovered
        second = child.wait_starts(2)[1]
        assert second["env"]["APP_V"] == new
        assert (tmp_path / "a.txt").read_text() == new
        assert len(inject.lines("reachable again")) == 1
        assert len(inject.lines("unreachable")) == 1


def test_startup_retries_until_server_comes_up(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """At startup an unreachable server is retried with backoff until `--retry-timeout`; it comes up and the render succeeds."""
    path = f"{prefix}/app"
    value = secret_template(bao, path, tmp_path)
    proxy.refuse()
    argv = inject_argv("render", "-v", "--retry-timeout", "2s", "-t", "a.j2:a.txt")
    env = inject_env(bao, {"VAULT_ADDR": proxy.address})
    with supervise(argv, env=env, cwd=tmp_path, ready="retrying ") as inject:
        proxy.pass_through()
        code = inject.wait(timeout_s=10)
    assert code == 0, inject.stderr()
    assert (tmp_path / "a.txt").read_text() == value


def test_startup_gives_up_after_retry_timeout(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """A server that stays unreachable past `--retry-timeout` exits 5 with no file written and no child started."""
    proxy.refuse()
    write(tmp_path / "a.j2", f"{{{{ secret('{prefix}/app').v }}}}")
    started = tmp_path / "started"
    result = run_inject(
        "--retry-timeout", "1s", "-t", "a.j2:a.txt", "--", "touch", str(started),
        env=inject_env(bao, {"VAULT_ADDR": proxy.address}), cwd=tmp_path, timeout_s=30,
    )  # fmt: skip
    assert result.returncode == 5, result.stderr
    assert "did not answer" in result.stderr
    assert not (tmp_path / "a.txt").exists()
    assert not started.exists()
