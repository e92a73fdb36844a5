"""inject against a real 3-node OpenBao raft cluster (tests/e2e/cluster.py): injectors on the
address list through a leader SIGKILL and through a node stopped and brought back, and a
fleet of 20 injectors behind HAProxy through a leader kill. Real processes throughout:
the outcome is read from the rendered files, the child's start and signal records, exit
codes and inject's log lines."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.e2e.cluster import Balancer, Cluster, Node, find_haproxy, haproxy, raft_cluster
from tests.e2e.fault_proxy import FaultProxy
from tests.e2e.helpers_e2e import write
from tests.e2e.supervise_helpers import SignalChild
from tests.support import Running, inject_argv, secret_value, supervise, wait_for

POLL_S = 1.0
DELIVERY_S = POLL_S + 3.0  # issue 14: the next version arrives within poll + 3 s
STALE_POLLS = 2.5  # how long the laggard alone answers, in poll intervals
FLEET_SIZE = 20
FLEET_DELIVERY_S = 30.0  # through an election and HAProxy's health checks, 20 processes on 2 cores
FAILOVER_LINE = re.compile(r"failing over from (http://127\.0\.0\.1:\d+) to (http://127\.0\.0\.1:\d+): \S")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One 3-node raft cluster for the module (starting one takes ~10 s), stopped by PID."""
    with raft_cluster(tmp_path_factory.mktemp("raft")) as started:
        yield started


@pytest.fixture(autouse=True)
def _healed(cluster: Cluster) -> None:
    """Every test starts with all three nodes running, unsealed and in the cluster."""
    cluster.heal()


@pytest.fixture(scope="module")
def balancer(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Balancer]:
    """HAProxy routing to the active node (health checks on /v1/sys/health)."""
    binary = find_haproxy()
    if binary is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy; .ci/run installs it)")
    with haproxy(binary, cluster, tmp_path_factory.mktemp("haproxy")) as running:
        yield running


def cluster_env(cluster: Cluster, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment with the cluster's token and no VAULT_ADDR (each test says where)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))}
    env.update(VAULT_TOKEN=cluster.token, HOME="/nonexistent-home", **(extra or {}))
    return env


def ha_path() -> str:
    """A fresh KV path for one test."""
    return f"secret/ha-{uuid.uuid4().hex[:10]}"


def content(path: Path) -> str | None:
    """The file's text, or None while it does not exist."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def delivered_within(paths: list[Path], value: str, timeout_s: float) -> float:
    """Wait until every file holds ``value``; the seconds it took."""
    started = time.monotonic()
    wait_for(
        lambda: all(content(p) == value for p in paths),
        timeout_s=timeout_s,
        what=f"{len(paths)} file(s) with the new version",
    )
    return time.monotonic() - started


def failover_lines(inject: Running) -> list[tuple[str, str]]:
    """(from, to) of every failover line inject logged."""
    found = (FAILOVER_LINE.search(line) for line in inject.stderr().splitlines())
    return [(m.group(1), m.group(2)) for m in found if m]


class ContentLog:
    """Records every distinct content a file goes through, in order (sampled every 20 ms)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            text = content(self.path)
            if text is not None and (not self.seen or self.seen[-1] != text):
                self.seen.append(text)

    @contextlib.contextmanager
    def running(self) -> Iterator[ContentLog]:
        """Sample while the block runs."""
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=5)


# --- 1. leader SIGKILL with injectors on the address list ------------------------------------


def _address_forms(order: list[str], directory: Path) -> tuple[list[str], dict[str, str]]:
    """The three ways to give the list, by ``directory``'s name: --address repeated,
    INJECT_ADDRESSES, [vault] addresses in inject.toml. Returns (extra argv, extra env)."""
    if directory.name == "cli":
        return [arg for address in order for arg in ("--address", address)], {}
    if directory.name == "env":
        return [], {"INJECT_ADDRESSES": ",".join(order)}
    quoted = ", ".join(f'"{address}"' for address in order)
    write(directory / "inject.toml", f"[vault]\naddresses = [{quoted}]\n")
    return [], {}


def test_leader_sigkill_keeps_injectors_running_and_delivers_the_next_version(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Three injectors whose lists start with the leader: after a SIGKILL of the leader none
    exits, no child restarts, and the next version reaches every file (and a HUP every child)
    within poll + 3 s of being written; each logged its failover, naming the dead leader."""
    leader = cluster.wait_leader()
    order = [leader.address] + [n.address for n in cluster.nodes if n is not leader]
    path = ha_path()
    cluster.kv_put(path, v=(first := secret_value()))
    cluster.wait_replicated(path, 1)
    with contextlib.ExitStack() as stack:
        runs: list[tuple[Running, SignalChild, Path]] = []
        for form in ("cli", "env", "file"):
            directory = tmp_path / form
            directory.mkdir()
            write(directory / "a.j2", f"{{{{ secret('{path}').v }}}}")
            child = SignalChild.create(directory)
            extra_argv, extra_env = _address_forms(order, directory)
            argv = inject_argv("--poll-interval", f"{POLL_S}s", "--on-change", "signal", *extra_argv)
            argv += ["-t", "a.j2:a.txt", "--", *child.argv()]
            inject = stack.enter_context(
                supervise(argv, env=cluster_env(cluster, extra_env), cwd=directory, stray=child.pids)
            )
            runs.append((inject, child, directory / "a.txt"))
        pids = [child.wait_starts(1)[0]["pid"] for _, child, _ in runs]
        assert all(content(file) == first for _, _, file in runs)

        leader.stop(signal.SIGKILL)
        cluster.wait_leader()
        second = secret_value()
        assert cluster.kv_put(path, v=second) == 2
        took_s = delivered_within([file for _, _, file in runs], second, timeout_s=DELIVERY_S)

        for (inject, child, _), pid in zip(runs, pids, strict=True):
            child.wait_signal(pid, "HUP")
            assert inject.process.poll() is None, inject.stderr()
            assert child.pids() == [pid]
            assert child.signals(pid) == ["HUP"]
            assert [old for old, _ in failover_lines(inject)][:1] == [leader.address], inject.stderr()
        assert took_s <= DELIVERY_S


# --- 2. a stopped node brought back -----------------------------------------------------------


def test_a_node_stopped_and_brought_back_never_takes_a_version_back(cluster: Cluster, tmp_path: Path) -> None:
    """An injector on two standbys: the first is stopped (failover to the second, v2), brought
    back and, once it rejoined, the second is stopped (failover to the rejoined node, v3).
    The file goes v1 -> v2 -> v3 and never back, and the child starts once per version."""
    first_node, second_node = cluster.followers()
    path = ha_path()
    values = [secret_value()]
    cluster.kv_put(path, v=values[0])
    cluster.wait_replicated(path, 1)
    write(tmp_path / "a.j2", f"{{{{ secret('{path}').v }}}}")
    child = SignalChild.create(tmp_path)
    argv = inject_argv("--poll-interval", f"{POLL_S}s", "-t", "a.j2:a.txt", "-e", f"APP_V=vault:{path}#v")
    argv += ["--address", first_node.address, "--address", second_node.address, "--", *child.argv("APP_V")]
    samples = ContentLog(tmp_path / "a.txt")
    with supervise(argv, env=cluster_env(cluster), cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)
        with samples.running():
            _stop_and_write(cluster, first_node, path, values)
            child.wait_starts(2, timeout_s=DELIVERY_S + 5)

            cluster.restart(first_node)
            _stop_and_write(cluster, second_node, path, values)
            child.wait_starts(3, timeout_s=DELIVERY_S + 5)
            wait_for(lambda: samples.seen[-1:] == [values[2]], timeout_s=DELIVERY_S, what="v3 in the file")

        assert inject.process.poll() is None, inject.stderr()
        assert samples.seen == values
        assert [start["env"]["APP_V"] for start in child.starts()] == values
        assert (second_node.address, first_node.address) in failover_lines(inject)


def _stop_and_write(cluster: Cluster, node: Node, path: str, values: list[str]) -> None:
    """Stop ``node`` cleanly (SIGTERM), then write the next version on the active node."""
    node.stop(signal.SIGTERM)
    values.append(secret_value())
    assert cluster.kv_put(path, v=values[-1]) == len(values)


# --- 2b. a standby that lags ------------------------------------------------------------------


def test_a_lagging_standby_s_older_version_is_ignored_and_logged_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    """An injector on [a standby, the laggard]: raft traffic to the laggard is cut off, v2 is
    written and delivered through the first standby, whose API then goes away. inject fails
    over to the laggard, which still answers v1: ignored over several polls and logged once,
    with no restart and no file going back; once the laggard catches up, v3 arrives."""
    standby, laggard = cluster.followers()
    path = ha_path()
    values = [secret_value()]
    cluster.kv_put(path, v=values[0])
    cluster.wait_replicated(path, 1)
    front = FaultProxy(
        f"http://127.0.0.1:{standby.api_port}"
    )  # the standby's API only: it stays in the cluster
    front.start()
    write(tmp_path / "a.j2", f"{{{{ secret('{path}').v }}}}")
    child = SignalChild.create(tmp_path)
    argv = inject_argv("--poll-interval", f"{POLL_S}s", "-t", "a.j2:a.txt", "-e", f"APP_V=vault:{path}#v")
    argv += ["--address", front.address, "--address", laggard.address, "--", *child.argv("APP_V")]
    samples = ContentLog(tmp_path / "a.txt")
    try:
        with supervise(argv, env=cluster_env(cluster), cwd=tmp_path, stray=child.pids) as inject:
            child.wait_starts(1)
            with samples.running():
                laggard.cut_off()
                values.append(secret_value())
                assert cluster.kv_put(path, v=values[1]) == 2
                child.wait_starts(2, timeout_s=DELIVERY_S)
                assert cluster.version_on(laggard, path) == 1  # it really lags

                front.stop()
                stale = inject.wait_log("older than", timeout_s=DELIVERY_S)
                time.sleep(STALE_POLLS * POLL_S)  # more polls answered by the laggard: none may act
                assert len(child.starts()) == 2

                laggard.reconnect()
                cluster.wait_replicated(path, 2)
                values.append(secret_value())
                assert cluster.kv_put(path, v=values[2]) == 3
                child.wait_starts(3, timeout_s=DELIVERY_S + 5)
                wait_for(
                    lambda: samples.seen[-1:] == [values[2]], timeout_s=DELIVERY_S, what="v3 in the file"
                )

            assert inject.process.poll() is None, inject.stderr()
            assert samples.seen == values
            assert [start["env"]["APP_V"] for start in child.starts()] == values
            assert len(inject.lines("older than")) == 1
            assert f"{path}: the server answered v1, older than v2 already rendered; ignored" in stale[0]
    finally:
        front.stop()


# --- 3. a fleet through HAProxy ---------------------------------------------------------------


def test_a_fleet_of_20_through_haproxy_survives_a_leader_kill(
    cluster: Cluster, balancer: Balancer, tmp_path: Path
) -> None:
    """20 `inject watch` behind HAProxy (routing by health check to the active node): after a
    SIGKILL of the leader all keep running and all deliver the next version."""
    path = ha_path()
    cluster.kv_put(path, v=(first := secret_value()))
    cluster.wait_replicated(path, 1)
    write(tmp_path / "a.j2", f"{{{{ secret('{path}').v }}}}")
    env = cluster_env(cluster, {"VAULT_ADDR": balancer.address})
    files = [tmp_path / f"out-{n}.txt" for n in range(FLEET_SIZE)]
    with contextlib.ExitStack() as stack:
        fleet = [
            stack.enter_context(
                supervise(
                    inject_argv("watch", "--poll-interval", f"{POLL_S}s", "-t", f"a.j2:{file.name}"),
                    env=env,
                    cwd=tmp_path,
                    ready=None,
                )
            )
            for file in files
        ]
        delivered_within(files, first, timeout_s=FLEET_DELIVERY_S)

        cluster.wait_leader().stop(signal.SIGKILL)
        cluster.wait_leader()
        wait_for(balancer.routes_steadily, timeout_s=FLEET_DELIVERY_S, what="haproxy on the new leader")
        second = secret_value()
        assert cluster.kv_put(path, v=second) == 2
        delivered_within(files, second, timeout_s=FLEET_DELIVERY_S)
        assert [inject.process.poll() for inject in fleet] == [None] * FLEET_SIZE
