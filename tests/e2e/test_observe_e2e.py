"""The health and metrics endpoints end to end: the real inject with ``--listen``, a real
OpenBao (behind the fault proxy for outages) and a real child. Requests go over HTTP with
urllib; metrics are parsed with prometheus_client's own parser."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.fault_proxy import FaultProxy
from tests.e2e.helpers_e2e import secret_template
from tests.e2e.supervise_helpers import SignalChild
from tests.support import Bao, inject_argv, inject_env, run_inject, secret_value, supervise, wait_for

POLL = ("--poll-interval", "300ms")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET; (0, "") while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (loopback http only)
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except urllib.error.URLError:
        return 0, ""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics body: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return found


def wait_health(base: str, code: int, *, timeout_s: float = 10.0) -> dict[str, str]:
    """Wait until /healthz answers ``code``; its JSON body."""
    seen: list[tuple[int, str]] = []

    def answered() -> bool:
        seen.append(get(base + "/healthz"))
        return seen[-1][0] == code

    wait_for(answered, timeout_s=timeout_s, what=f"/healthz {code} (last: {seen[-1:] or None})")
    body: dict[str, str] = json.loads(seen[-1][1])
    return body


def _one_template(bao: Bao, prefix: str, tmp_path: Path) -> tuple[str, str]:
    path = f"{prefix}/app"
    value = secret_template(bao, path, tmp_path)
    return path, value


@dataclass(frozen=True)
class Listening:
    """A secret rendered to a.txt, a free address for --listen, and inject's argv with the child."""

    path: str
    value: str
    child: SignalChild
    base: str  # http://127.0.0.1:PORT
    argv: list[str]


def _listening(bao: Bao, prefix: str, tmp_path: Path, *extra: str) -> Listening:
    path, value = _one_template(bao, prefix, tmp_path)
    child = SignalChild.create(tmp_path)
    base = f"http://127.0.0.1:{free_port()}"
    argv = inject_argv(*POLL, *extra, "--listen", base.removeprefix("http://"), "-t", "a.j2:a.txt")
    return Listening(path, value, child, base, [*argv, "--", *child.argv()])


def test_healthz_and_metrics_while_the_child_runs(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """With --listen, /healthz is 200 while the child runs; /metrics counts renders, reads and a restart, shows child memory, and never a value."""
    scene = _listening(bao, prefix, tmp_path)
    path, value, child, base, argv = scene.path, scene.value, scene.child, scene.base, scene.argv
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)
        assert wait_health(base, 200) == {"status": "ok"}
        new = secret_value()
        bao.kv_put(path, v=new)
        child.wait_starts(2)
        wait_health(base, 200)

        def restarted() -> bool:
            return samples(get(base + "/metrics")[1]).get(("inject_child_restarts_total", ())) == 1.0

        wait_for(restarted, timeout_s=5, what="one restart in /metrics")
        status, text = get(base + "/metrics")
        assert status == 200
        found = samples(text)
        assert found[("inject_renders_total", ())] >= 2
        assert found[("inject_render_failures_total", ())] == 0
        assert found[("inject_server_requests_total", (("outcome", "ok"),))] >= 1
        assert found[("inject_outage_seconds", ())] == 0
        assert 0 <= found[("inject_last_poll_success_age_seconds", ())] < 5
        assert found[("inject_child_resident_memory_bytes", ())] > 1_000_000
        assert found[("inject_healthy", ())] == 1
        for forbidden in (value, new, bao.token):
            assert forbidden not in text
        assert get(base + "/nothing-here")[0] == 404
        assert inject.lines("health and metrics on")


def test_healthz_is_503_during_an_outage_and_200_after(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """An outage longer than the poll interval turns /healthz to 503 with the reason and shows in /metrics; recovery turns it back to 200."""
    scene = _listening(bao, prefix, tmp_path)
    child, base, argv = scene.child, scene.base, scene.argv
    env = inject_env(bao, {"VAULT_ADDR": proxy.address})
    with supervise(argv, env=env, cwd=tmp_path, stray=child.pids):
        pid = child.wait_starts(1)[0]["pid"]
        wait_health(base, 200)
        proxy.refuse()
        body = wait_health(base, 503)
        assert body["status"] == "unhealthy"
        assert "server unreachable" in body["reason"]
        found = samples(get(base + "/metrics")[1])
        assert found[("inject_outage_seconds", ())] > 0.3
        assert found[("inject_server_requests_total", (("outcome", "unreachable"),))] >= 1
        assert found[("inject_healthy", ())] == 0
        proxy.pass_through()
        assert wait_health(base, 200) == {"status": "ok"}
        assert child.pids() == [pid]


def test_healthz_says_first_render_pending_until_the_server_answers(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """The endpoints are up before the first render: 503 "first render pending" while the server is down at startup, 200 once it answers."""
    scene = _listening(bao, prefix, tmp_path, "--retry-timeout", "30s")
    child, base, argv = scene.child, scene.base, scene.argv
    proxy.refuse()
    env = inject_env(bao, {"VAULT_ADDR": proxy.address})
    with supervise(argv, env=env, cwd=tmp_path, stray=child.pids, ready=None):
        assert wait_health(base, 503) == {"status": "unhealthy", "reason": "first render pending"}
        assert child.starts() == []
        proxy.pass_through()
        child.wait_starts(1, timeout_s=15)
        wait_health(base, 200, timeout_s=15)


def test_watch_mode_is_healthy_without_a_child(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`inject watch --listen`: healthy while watching, with no child metrics."""
    _one_template(bao, prefix, tmp_path)
    base = f"http://127.0.0.1:{free_port()}"
    argv = inject_argv("watch", *POLL, "--listen", base.removeprefix("http://"), "-t", "a.j2:a.txt")
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, ready="health and metrics on"):
        wait_health(base, 200)
        found = samples(get(base + "/metrics")[1])
        assert ("inject_child_resident_memory_bytes", ()) not in found
        assert found[("inject_child_restarts_total", ())] == 0


@pytest.mark.parametrize(
    "listen", ["nonsense", "127.0.0.1:99999", "127.0.0.1:"], ids=["no-port", "big", "empty"]
)
def test_bad_listen_value_is_a_one_line_usage_error(bao: Bao, tmp_path: Path, listen: str) -> None:
    """A --listen that is not HOST:PORT exits 2 with one line that shows the expected form."""
    result = run_inject("watch", "--listen", listen, env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "HOST:PORT" in lines[0]


def test_listen_on_a_port_in_use_is_a_usage_error(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A --listen address already taken exits 2 naming the address, before anything is rendered."""
    _one_template(bao, prefix, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        result = run_inject(
            "watch", "--listen", listen, "-t", "a.j2:a.txt", env=inject_env(bao), cwd=tmp_path
        )
    assert result.returncode == 2
    assert f"--listen {listen}: cannot listen there" in result.stderr
    assert not (tmp_path / "a.txt").exists()
