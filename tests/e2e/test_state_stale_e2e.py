"""A start while the server is down (``[state] start_stale``), against a real OpenBao of the
test's own that is killed and started again: the child starts on the state's last-known-good
values within the start-up budget, /healthz says stale and /metrics ``inject_stale 1``; when
the server answers again one line says so and the changed value restarts the child. Without
a usable state (an expired lease, a state older than max_age) it fails as without a state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import temp_files, write
from tests.e2e.supervise_helpers import SignalChild
from tests.e2e.test_observe_e2e import free_port, get, samples, wait_health
from tests.support import (
    Bao,
    BaoServer,
    inject_argv,
    inject_env,
    run_inject,
    secret_value,
    supervise,
    wait_for,
)

KEY = bytes(range(32))  # a raw 32-byte key (tests only)
POLL = ("--poll-interval", "300ms")
BUDGET = ("--retry-timeout", "2s")  # the start-up budget
SLACK_S = 10.0  # a loaded machine: starting Python, the budget's last attempt, the first render


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """A dedicated dev server (not started yet), so it can be killed and started again."""
    server = BaoServer(tmp_path_factory.mktemp("own-bao"))
    yield server
    server.kill()


def _state_config(workdir: Path, *lines: str) -> None:
    (workdir / "state.key").write_bytes(KEY)
    config = ["[state]", 'dir = "state"', 'key_file = "state.key"', "start_stale = true", *lines]
    write(workdir / "inject.toml", "\n".join(config) + "\n")


def _stale_gauge(base: str) -> float:
    return samples(get(base + "/metrics")[1])[("inject_stale", ())]


def test_start_while_the_server_is_down_runs_on_last_known_good_then_recovers(
    own_server: BaoServer, tmp_path: Path
) -> None:
    """Render with a state, kill the server, start `inject -- child`: the child gets the last-known-good value within the budget, /healthz is 503 stale, inject_stale 1; the server returns with a new value: one recovery line, the child restarted with it, /healthz 200."""
    server = own_server.start()
    old = secret_value()
    server.kv_put("secret/app", v=old)
    _state_config(tmp_path, 'max_age = "1h"')
    write(tmp_path / "a.j2", "{{ secret('secret/app').v }}\n")
    env = inject_env(server)
    init = run_inject("render", "-c", "inject.toml", "-t", "a.j2:out/a.txt", env=env, cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    own_server.kill()
    (tmp_path / "out" / "a.txt").unlink()  # a new container: nothing rendered yet

    child = SignalChild.create(tmp_path)
    base = f"http://127.0.0.1:{free_port()}"
    argv = inject_argv(
        "-c", "inject.toml", *BUDGET, *POLL, "--listen", base.removeprefix("http://"),
        "-t", "a.j2:out/a.txt", "-e", "APP_V=vault:secret/app#v",
    )  # fmt: skip
    began = time.monotonic()
    with supervise(
        [*argv, "--", *child.argv("APP_V")], env=env, cwd=tmp_path, stray=child.pids, ready=None
    ) as inject:
        first = child.wait_starts(1, timeout_s=2 + SLACK_S)[0]
        assert time.monotonic() - began < 2 + SLACK_S
        assert first["env"]["APP_V"] == old
        assert (tmp_path / "out" / "a.txt").read_text() == old + "\n"
        entered = inject.lines("starting from the state's last-known-good values")
        assert len(entered) == 1, inject.stderr()
        body = wait_health(base, 503)
        assert body["status"] == "stale", body
        assert "last-known-good" in body["reason"]
        assert _stale_gauge(base) == 1.0

        server = own_server.start()  # a dev server comes back empty: the KV is written again
        new = secret_value()
        server.kv_put("secret/app", v=new)
        second = child.wait_starts(2, timeout_s=20)[1]
        assert second["env"]["APP_V"] == new
        assert child.signals(first["pid"]) == ["TERM"]
        assert (tmp_path / "out" / "a.txt").read_text() == new + "\n"
        assert temp_files(tmp_path / "out") == []
        assert wait_health(base, 200) == {"status": "ok"}
        wait_for(
            lambda: _stale_gauge(base) == 0.0, timeout_s=5, what="inject_stale 0 (scrapes are cached 1s)"
        )
        assert len(inject.lines("reachable again")) == 1, inject.stderr()
        assert len(inject.lines("last-known-good")) == 2, inject.stderr()  # one in, one out
        assert "Traceback" not in inject.stderr()


def _pki(server: Bao) -> str:
    """A pki mount on ``server`` with a role ``web`` for *.localhost; the role's path."""
    server.api("POST", "sys/mounts/pki", json={"type": "pki", "config": {"max_lease_ttl": "8760h"}})
    server.api("POST", "pki/root/generate/internal", json={"common_name": "stale e2e", "ttl": "8760h"})
    server.api(
        "POST",
        "pki/roles/web",
        json={"allowed_domains": ["localhost"], "allow_subdomains": True, "max_ttl": "1h", "key_type": "ec"},
    )
    return "pki/web"


@pytest.mark.parametrize("why", ["certificate expired", "state older than max_age"])
def test_nothing_usable_in_the_state_fails_as_without_it(
    own_server: BaoServer, tmp_path: Path, why: str
) -> None:
    """A certificate past its end is never served, nor a state older than max_age: exit 5 with the server's line, the child never started."""
    server = own_server.start()
    role = _pki(server)
    max_age = '"1s"' if why.startswith("state") else '"1h"'
    _state_config(tmp_path, f"max_age = {max_age}")
    write(
        tmp_path / "a.j2",
        f"{{{{ pki_cert('{role}', common_name='app.localhost', ttl='3s').certificate }}}}\n",
    )
    env = inject_env(server)
    init = run_inject("render", "-c", "inject.toml", "-t", "a.j2:out/a.txt", env=env, cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    own_server.kill()
    time.sleep(3.5)  # the certificate (3s) has ended, and the state is older than 1s

    child = SignalChild.create(tmp_path)
    argv = ["-c", "inject.toml", *BUDGET, "-t", "a.j2:out/a.txt", "--", *child.argv()]
    result = run_inject(*argv, env=env, cwd=tmp_path, timeout_s=30)
    assert result.returncode == 5, result.stderr
    assert child.starts() == []
    assert "did not answer" in result.stderr.strip().splitlines()[-1]
    if why.startswith("state"):
        assert "the state is older than [state] max_age" in result.stderr
    else:
        assert "nothing in the state is still usable" in result.stderr
    assert "Traceback" not in result.stderr
