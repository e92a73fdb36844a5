"""Server faults, made by an HTTP fault proxy in front of OpenBao (or by a dedicated dev
server that is killed and started again): stalls, 429 with Retry-After, 5xx, truncated
answers, a server that lost its state, deleted and destroyed secrets, a disabled mount.

For each: the child keeps running on the last good secrets (same pid, no signal), one
line is logged for the outage and one for the recovery (never a response body or a
value), the files stay whole with their previous content and no temp file is left.
"""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.fault_proxy import FaultProxy
from tests.e2e.helpers_e2e import error_line, secret_template, temp_files, write
from tests.e2e.supervise_helpers import SignalChild
from tests.support import (
    Bao,
    BaoServer,
    Running,
    forbid,
    holds_for,
    inject_argv,
    inject_env,
    run_inject,
    secret_value,
    supervise,
    wait_for,
)

POLL = ("--poll-interval", "300ms")
OUTAGE = "unreachable"  # the one line logged when an outage starts
RECOVERY = "reachable again"  # the one line logged when it ends
FEW_POLLS_S = 1.0  # several polls at 300ms; none may log again


def _kv_url(path: str) -> str:
    """The URL path of a KV v2 read of ``path`` (``mount/rest`` as a person types it)."""
    mount, _, rest = path.partition("/")
    return f"/v1/{mount}/data/{rest}"


def _kv_put(server: Bao, path: str, **data: str) -> int:
    """Write a new KV v2 version of ``path`` on any mount; its version number."""
    mount, _, rest = path.partition("/")
    body = server.api("POST", f"{mount}/data/{rest}", json={"data": data}).json()
    return int(body["data"]["version"])


# --- a running inject and what it did ----------------------------------------------------


@dataclass
class Scene:
    """A running inject that rendered out/a.txt (and APP_V) from KV secrets for a child."""

    inject: Running
    child: SignalChild
    pid: int
    out: Path
    text: str  # the file's content after the first render

    def untouched(self) -> None:
        """The child runs on: same pid, no signal; the file is whole and unchanged, no temp file."""
        assert self.child.pids() == [self.pid]
        assert self.child.signals(self.pid) == []
        assert self.out.read_text() == self.text
        assert temp_files(self.out.parent) == []

    def once(self, needle: str) -> str:
        """The one line logged with ``needle``; fails when there are none or several."""
        lines = self.inject.lines(needle)
        assert len(lines) == 1, f"{len(lines)} line(s) with {needle!r}:\n{self.inject.stderr()}"
        return lines[0]

    def clean_log(self, *also_absent: str) -> None:
        """No traceback, no parser message, none of ``also_absent`` in inject's log."""
        log = self.inject.stderr()
        for needle in ("Traceback", "Expecting value", "JSONDecodeError", "IncompleteRead", *also_absent):
            assert needle not in log, f"{needle!r} in inject's log:\n{log}"

    def restarted_with(self, value: str) -> None:
        """A second child start with APP_V = ``value``, after TERM to the first; file rewritten."""
        second = self.child.wait_starts(2)[1]
        assert second["env"]["APP_V"] == value
        assert self.child.signals(self.pid) == ["TERM"]
        assert value in self.out.read_text()
        assert temp_files(self.out.parent) == []


@contextlib.contextmanager
def running(
    tmp_path: Path, env: Mapping[str, str], secrets: Mapping[str, str], *args: str
) -> Iterator[Scene]:
    """inject polling every 300ms, rendering ``secrets`` (path -> key) into out/a.txt and the
    first one into APP_V, with the signal-recording child; stopped at the end."""
    child = SignalChild.create(tmp_path)
    write(tmp_path / "a.j2", "".join(f"{{{{ secret('{p}').{k} }}}}\n" for p, k in secrets.items()))
    first, key = next(iter(secrets.items()))
    argv = inject_argv(*POLL, *args, "-t", "a.j2:out/a.txt", "-e", f"APP_V=vault:{first}#{key}")
    with supervise([*argv, "--", *child.argv("APP_V")], env=env, cwd=tmp_path, stray=child.pids) as inject:
        pid = child.wait_starts(1)[0]["pid"]
        out = tmp_path / "out" / "a.txt"
        yield Scene(inject, child, pid, out, out.read_text())


def behind(
    proxy: FaultProxy, bao: Bao, tmp_path: Path, path: str
) -> contextlib.AbstractContextManager[Scene]:
    """``running`` through ``proxy`` with a new value of ``path``'s ``v``."""
    bao.kv_put(path, v=secret_value())
    return running(tmp_path, inject_env(bao, {"VAULT_ADDR": proxy.address}), {path: "v"})


# --- stalls (read timeouts) --------------------------------------------------------------


def test_stalled_poll_does_not_block_sigterm(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """While every secret read hangs unanswered, TERM still goes to the child at once and inject exits promptly with the child's code."""
    paths = {f"{prefix}/a": "v", f"{prefix}/b": "v"}  # two reads in flight, on the pool
    for path in paths:
        bao.kv_put(path, v=secret_value())
    with running(tmp_path, inject_env(bao, {"VAULT_ADDR": proxy.address}), paths) as scene:
        proxy.stall(match=_kv_url(prefix))
        proxy.wait_hits(2)

        def quiet() -> None:
            scene.untouched()
            assert scene.inject.lines(OUTAGE) == []

        holds_for(quiet, duration_s=FEW_POLLS_S, what="the stalled poll still in flight, nothing logged")
        started = time.monotonic()
        code = scene.inject.stop(signal.SIGTERM, timeout_s=10)
        elapsed = time.monotonic() - started
        assert code == 0, scene.inject.stderr()
        assert elapsed < 2.0, f"inject took {elapsed:.1f}s to exit with a stalled poll"
        assert scene.child.signals(scene.pid) == ["TERM"]
        assert scene.out.read_text() == scene.text
        assert temp_files(scene.out.parent) == []


def test_stall_ended_by_a_dropped_connection_is_one_outage(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """A stalled read whose connection is then dropped is an outage (logged once) and the next poll recovers (logged once)."""
    path = f"{prefix}/app"
    with behind(proxy, bao, tmp_path, path) as scene:
        proxy.stall(match=_kv_url(path))
        proxy.wait_hits(1)
        holds_for(
            lambda: scene.inject.lines(OUTAGE) == [], duration_s=0.5, what="no outage line while stalled"
        )
        new = secret_value()
        bao.kv_put(path, v=new)
        proxy.pass_through()  # the stalled connection is closed without an answer
        scene.inject.wait_log(RECOVERY)
        assert scene.once(OUTAGE)
        scene.once(RECOVERY)
        scene.restarted_with(new)
        scene.clean_log()


def test_stalled_server_at_startup_exits_5_after_retry_timeout(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """At startup a server that accepts but never answers ends in exit 5 soon after `--retry-timeout`, not after the 30s request timeout; nothing written, no child."""
    write(tmp_path / "a.j2", f"{{{{ secret('{prefix}/app').v }}}}")
    proxy.stall()
    started_at = time.monotonic()
    result = run_inject(
        "--retry-timeout", "2s", "-t", "a.j2:a.txt", "--", "touch", "started",
        env=inject_env(bao, {"VAULT_ADDR": proxy.address}), cwd=tmp_path, timeout_s=30,
    )  # fmt: skip
    elapsed = time.monotonic() - started_at
    assert result.returncode == 5, result.stderr
    line = error_line(result)
    assert "did not answer" in line
    assert "timed out" in line
    assert elapsed < 6.0, f"{elapsed:.1f}s for a 2s retry timeout"
    assert not (tmp_path / "a.txt").exists()
    assert not (tmp_path / "started").exists()


def test_term_while_fanned_out_reads_stall_at_startup_exits_at_once(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """Three templates' reads run in place on fan-out workers; with each of them stuck on a
    server that never answers, a TERM still ends `inject render` at once (143), nothing
    written: the main thread waiting for the workers is where the signal is handled."""
    args = []
    for i in range(3):
        path = f"{prefix}/stall{i}"
        bao.kv_put(path, v=secret_value())
        write(tmp_path / f"t{i}.j2", f"{{{{ secret('{path}').v }}}}")
        args += ["-t", f"t{i}.j2:t{i}.txt"]
    proxy.stall(match="/data/")  # the KV reads only: the token and mount lookups answer
    argv = inject_argv("render", "--retry-timeout", "60s", *args)
    with supervise(
        argv, env=inject_env(bao, {"VAULT_ADDR": proxy.address}), cwd=tmp_path, ready=None
    ) as inject:
        proxy.wait_hits(2)  # the first two readers are stuck
        started = time.monotonic()
        inject.send_signal(signal.SIGTERM)
        code = inject.wait(timeout_s=5)
    assert code == 128 + signal.SIGTERM
    assert time.monotonic() - started < 2.0
    assert not list(tmp_path.glob("t*.txt"))


# --- 429 with Retry-After ----------------------------------------------------------------


def test_429_retry_after_is_honoured_at_startup(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """At startup a 429 with `Retry-After: 2` makes inject wait at least 2s before the next request (not its 0.1s backoff), then it renders."""
    path = f"{prefix}/app"
    value = secret_template(bao, path, tmp_path)
    proxy.status(429, retry_after_s=2)
    argv = inject_argv("render", "--retry-timeout", "10s", "-t", "a.j2:a.txt")
    env = inject_env(bao, {"VAULT_ADDR": proxy.address})
    with supervise(argv, env=env, cwd=tmp_path, ready=None) as inject:
        proxy.wait_hits(1)
        limited_at = proxy.hit_at
        assert limited_at is not None
        proxy.pass_through()
        next_at = proxy.wait_request()
        code, _, stderr = inject.finish(timeout_s=15)
    assert code == 0, stderr
    assert next_at - limited_at >= 1.9, f"retried {next_at - limited_at:.2f}s after a 2s Retry-After"
    assert (tmp_path / "a.txt").read_text() == value
    assert proxy.body_marker not in stderr


def test_429_retry_after_past_the_deadline_gives_up_at_once(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """A Retry-After longer than what is left of `--retry-timeout` ends in exit 5 right away, saying what the server asked."""
    write(tmp_path / "a.j2", f"{{{{ secret('{prefix}/app').v }}}}")
    proxy.status(429, retry_after_s=120)
    started_at = time.monotonic()
    result = run_inject(
        "render", "--retry-timeout", "5s", "-t", "a.j2:a.txt",
        env=inject_env(bao, {"VAULT_ADDR": proxy.address}), cwd=tmp_path, timeout_s=30,
    )  # fmt: skip
    elapsed = time.monotonic() - started_at
    assert result.returncode == 5, result.stderr
    line = error_line(result)
    assert "HTTP 429" in line
    assert "120s" in line
    assert proxy.body_marker not in line
    assert elapsed < 4.0, f"waited {elapsed:.1f}s for an answer that could not come in time"
    assert proxy.hits == 1
    assert not (tmp_path / "a.txt").exists()


# --- 5xx and truncated answers during polls ----------------------------------------------


def test_server_errors_during_polls_are_one_outage(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """500, then 502, then 503 on every secret read is one outage (one line, no body), the child runs on; recovery is one line and the new version arrives."""
    path = f"{prefix}/app"
    with behind(proxy, bao, tmp_path, path) as scene:
        proxy.status(500, match=_kv_url(path))
        scene.inject.wait_log(OUTAGE)
        new = secret_value()
        bao.kv_put(path, v=new)
        for status in (502, 503):
            proxy.status(status, match=_kv_url(path))
            proxy.wait_hits(2)
        scene.untouched()
        assert "HTTP 500" in scene.once(OUTAGE)
        proxy.pass_through()
        scene.inject.wait_log(RECOVERY)
        scene.restarted_with(new)
        scene.once(OUTAGE)
        scene.once(RECOVERY)
        scene.clean_log(proxy.body_marker)


def test_truncated_answers_are_a_clean_transient_error(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """Answers cut off halfway (full Content-Length, half the body) are one outage with a plain reason, no traceback or parser text; recovery follows."""
    path = f"{prefix}/app"
    with behind(proxy, bao, tmp_path, path) as scene:
        proxy.truncate(match=_kv_url(path))
        line = scene.inject.wait_log(OUTAGE)[0]
        assert "cut short" in line, line
        proxy.wait_hits(3)
        scene.untouched()
        proxy.pass_through()
        scene.inject.wait_log(RECOVERY)
        holds_for(scene.untouched, duration_s=0.5, what="the child and its file untouched")
        scene.once(OUTAGE)
        scene.once(RECOVERY)
        scene.clean_log()


def test_truncated_answers_at_startup_exit_5_with_one_line(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """At startup, answers that keep being cut short are retried until `--retry-timeout`, then exit 5 with one plain line and no file."""
    path = f"{prefix}/app"
    secret_template(bao, path, tmp_path)
    proxy.truncate(match=_kv_url(path))
    result = run_inject(
        "render", "--retry-timeout", "1s", "-t", "a.j2:a.txt",
        env=inject_env(bao, {"VAULT_ADDR": proxy.address}), cwd=tmp_path, timeout_s=30,
    )  # fmt: skip
    assert result.returncode == 5, result.stderr
    assert "cut short" in error_line(result)
    assert proxy.hits >= 2
    assert not (tmp_path / "a.txt").exists()


# --- a dev server of our own, killed and started again -------------------------------------


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """A dedicated dev server (not started yet), so it can be killed and started again; killed at the end."""
    server = BaoServer(tmp_path_factory.mktemp("own-bao"))
    yield server
    server.kill()


def test_server_restart_loses_the_secret_then_reseeding_recovers(
    own_server: BaoServer, tmp_path: Path
) -> None:
    """The server dies (one outage line) and comes back empty: the missing secret is logged once, the last good file and child stay; re-seeding it brings the new value."""
    server = own_server.start()
    path = "secret/app"
    server.kv_put(path, v=secret_value())
    with running(tmp_path, inject_env(server), {path: "v"}) as scene:
        own_server.kill()
        scene.inject.wait_log(OUTAGE)
        server = own_server.start()
        scene.inject.wait_log(RECOVERY)
        scene.inject.wait_log(f"no secret at '{path}'")
        holds_for(scene.untouched, duration_s=FEW_POLLS_S, what="the child and its file untouched")
        scene.once(f"no secret at '{path}'")
        new = secret_value()
        server.kv_put(path, v=new)
        scene.restarted_with(new)
        scene.once(OUTAGE)
        scene.once(RECOVERY)
        scene.clean_log()


def _approle(server: Bao, role_id: str, secret_id: str, path: str) -> None:
    """An approle login with this fixed role_id and secret_id whose token may read ``path``."""
    server.api("POST", "sys/auth/approle", json={"type": "approle"})
    server.policy(
        "reader", f'path "secret/data/{path.removeprefix("secret/")}" {{ capabilities = ["read"] }}'
    )
    role = "auth/approle/role/app"
    server.api("POST", role, json={"token_policies": ["reader", "default"], "token_ttl": "1h"})
    server.api("POST", f"{role}/role-id", json={"role_id": role_id})
    server.api("POST", f"{role}/custom-secret-id", json={"secret_id": secret_id})


def test_server_restart_with_approle_logs_in_again(own_server: BaoServer, tmp_path: Path) -> None:
    """After a restart that lost inject's token, the rejected token makes inject log in again with AppRole (once) and catch up, the child untouched until the new value."""
    server = own_server.start()
    proxy = FaultProxy(own_server.address, body_marker=secret_value("body"))
    proxy.start()
    role_id, secret_id = forbid(str(uuid.uuid4())), forbid(str(uuid.uuid4()))
    path = "secret/app"
    _approle(server, role_id, secret_id, path)
    server.kv_put(path, v=secret_value())
    write(tmp_path / "role_id", role_id + "\n")
    write(tmp_path / "secret_id", secret_id + "\n")
    write(
        tmp_path / "inject.toml",
        '[auth]\nmethod = "approle"\nrole_id_file = "role_id"\nsecret_id_file = "secret_id"\n',
    )
    env = inject_env(server, {"VAULT_ADDR": proxy.address})
    del env["VAULT_TOKEN"]
    try:
        with running(tmp_path, env, {path: "v"}) as scene:
            scene.once("logged in with approle")
            proxy.refuse()  # while the server is replaced and seeded again
            own_server.kill()
            scene.inject.wait_log(OUTAGE)
            server = own_server.start()
            _approle(server, role_id, secret_id, path)
            new = secret_value()
            server.kv_put(path, v=new)
            scene.untouched()
            proxy.pass_through()
            scene.inject.wait_log("no longer accepts inject's token; logged in again")
            scene.restarted_with(new)
            assert len(scene.inject.lines("logged in with approle")) == 2
            scene.once(OUTAGE)
            scene.once(RECOVERY)
            scene.once("logged in again")
            assert scene.inject.lines("permission denied") == []
            scene.clean_log()
    finally:
        proxy.stop()


# --- secrets and mounts going away ---------------------------------------------------------


def test_deleted_then_destroyed_secret_keeps_last_good_and_picks_up_new_versions(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """Deleting the latest version and destroying the next are each logged once naming the path; the last good file and child stay; each new version is picked up."""
    path = f"{prefix}/app"
    bao.kv_put(path, v=secret_value())
    rest = path.removeprefix("secret/")
    with running(tmp_path, inject_env(bao), {path: "v"}) as scene:
        bao.api("DELETE", f"secret/data/{rest}")
        deleted = scene.inject.wait_log(f"'{path}' was deleted")[0]
        holds_for(scene.untouched, duration_s=FEW_POLLS_S, what="the child and its file untouched")
        assert "keeping the last good version" in deleted
        scene.once("was deleted")

        second = secret_value()
        version = bao.kv_put(path, v=second)
        scene.restarted_with(second)
        pid, text = scene.child.pids()[1], scene.out.read_text()

        bao.api("POST", f"secret/destroy/{rest}", json={"versions": [version]})
        scene.inject.wait_log(f"'{path}' was destroyed")

        def unchanged() -> None:
            assert scene.child.pids()[1:] == [pid]
            assert scene.child.signals(pid) == []
            assert scene.out.read_text() == text

        holds_for(unchanged, duration_s=FEW_POLLS_S, what="the restarted child and its file untouched")
        scene.once("was destroyed")

        third = secret_value()
        bao.kv_put(path, v=third)
        third_start = scene.child.wait_starts(3)[2]
        assert third_start["env"]["APP_V"] == third
        assert third in scene.out.read_text()
        assert temp_files(scene.out.parent) == []
        scene.once("was deleted")
        scene.once("was destroyed")
        assert scene.inject.lines(OUTAGE) == []
        scene.clean_log()


def test_disabled_kv_mount_keeps_last_good_and_reenabling_recovers(bao: Bao, tmp_path: Path) -> None:
    """Disabling the KV mount is logged once naming the path, the last good file and child stay; mounting it again and writing the secret brings the new value."""
    mount = f"kv-{uuid.uuid4().hex[:10]}"
    enable = {"type": "kv", "options": {"version": "2"}}
    bao.api("POST", f"sys/mounts/{mount}", json=enable)
    path = f"{mount}/app"
    _kv_put(bao, path, v=secret_value())
    try:
        with running(tmp_path, inject_env(bao), {path: "v"}) as scene:
            bao.api("DELETE", f"sys/mounts/{mount}")
            gone = scene.inject.wait_log(f"'{path}'")[0]
            holds_for(scene.untouched, duration_s=FEW_POLLS_S, what="the child and its file untouched")
            assert "keeping the last good version" in gone
            assert f"no secrets engine is mounted at '{mount}/'" in gone, gone
            scene.once(f"'{path}'")

            bao.api("POST", f"sys/mounts/{mount}", json=enable)
            new = secret_value()
            wait_for(
                lambda: _put_when_ready(bao, path, new), timeout_s=5, what="the new mount to accept writes"
            )
            scene.restarted_with(new)
            scene.once(f"'{path}'")
            assert scene.inject.lines(OUTAGE) == []
            scene.clean_log()
    finally:
        with contextlib.suppress(AssertionError):
            bao.api("DELETE", f"sys/mounts/{mount}")


def _put_when_ready(server: Bao, path: str, value: str) -> bool:
    """A freshly mounted KV v2 engine refuses writes until it has upgraded; try once."""
    try:
        _kv_put(server, path, v=value)
    except AssertionError:
        return False
    return True


def test_a_secret_deleted_with_its_metadata_and_written_again_is_taken(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """`kv metadata delete` then two puts: v2 is lower than the v3 rendered but created after it, so it is the secret written anew: rendered and the child restarted, logged once (versions never go backwards only for a lagging node)."""
    path = f"{prefix}/recreated"
    for _ in range(3):
        bao.kv_put(path, v=secret_value())
    with running(tmp_path, inject_env(bao), {path: "v"}) as scene:
        mount, _, rest = path.partition("/")
        bao.api("DELETE", f"{mount}/metadata/{rest}")
        bao.kv_put(path, v=secret_value())
        new = secret_value()
        assert _kv_put(bao, path, v=new) == 2
        scene.restarted_with(new)
        scene.once("written anew")
        assert scene.inject.lines("older than") == []
        scene.clean_log()
