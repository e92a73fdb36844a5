"""Failover over an address list with a fake wire per address and a fake clock (no network,
no real waiting): the first healthy address, sticky selection, failover on each condition
that says "another node may answer", no flapping back, shared by clones, redirect hints,
and the usual UnreachableError once every address is down for the whole budget."""

from __future__ import annotations

import json as jsonlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

from tests.unit.fakeclock import FakeClock
from vault_inject.client.adapter import ServerSettings
from vault_inject.client.failover import Failover
from vault_inject.client.replies import Answer
from vault_inject.client.vault import VaultClient
from vault_inject.errors import PermissionDenied, TransientError, UnreachableError

A, B, C = "http://node-a.test:8200", "http://node-b.test:8200", "http://node-c.test:8200"
MOUNT_INFO = {"data": {"path": "secret/", "type": "kv", "options": {"version": "2"}}}


Behaviour = Callable[[str], Answer]  # url -> answer (or raise TransientError)


def answer(status: int, body: Any = None, *, url: str = A, **headers: str) -> Answer:
    """An Answer with a JSON body (or none) and headers."""
    raw = b"" if body is None else jsonlib.dumps(body).encode()
    return Answer(status, CaseInsensitiveDict(headers), raw, url + "/v1/x")


def healthy(address: str, version: int = 1) -> Behaviour:
    """A node of a KV v2 cluster: mount lookups and reads of version ``version`` answer."""

    def behave(url: str) -> Answer:
        if "sys/internal/ui/mounts" in url:
            return answer(200, MOUNT_INFO, url=address)
        return answer(200, {"data": {"data": {"v": address}, "metadata": {"version": version}}}, url=address)

    return behave


def refused(url: str) -> Answer:
    """A node that is not there (killed)."""
    raise TransientError("connection refused or reset")


def timed_out(url: str) -> Answer:
    """A node that does not answer within the attempt's deadline."""
    raise TransientError("timed out")


@dataclass
class Cluster:
    """One fake wire per address; each answers with its node's current behaviour."""

    clock: FakeClock
    nodes: dict[str, Behaviour]
    asked: list[tuple[str, str]] = field(default_factory=list)  # (address, url) in order
    tokens: dict[str, str | None] = field(default_factory=dict)  # the token each node got last
    made: list[str] = field(default_factory=list)  # the address of each wire made, in order

    def wire_for(self, address: str) -> NodeWire:
        self.made.append(address)
        return NodeWire(self, address)

    def addresses_asked(self) -> list[str]:
        return [address for address, _ in self.asked]


@dataclass
class NodeWire:
    """The wire to one fake node."""

    cluster: Cluster
    address: str

    def exchange(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str],
        params: Mapping[str, Any] | None,
        json: Any,
        timeout_s: float,
    ) -> Answer:
        self.cluster.asked.append((self.address, url))
        self.cluster.tokens[self.address] = headers.get("X-Vault-Token")
        return self.cluster.nodes[self.address](url)


def client_on(
    cluster: Cluster,
    *addresses: str,
    retry_timeout_s: float = 10.0,
    sleep: Callable[[float], None] | None = None,
    failover: Failover | None = None,
) -> VaultClient:
    """A VaultClient over ``addresses`` on the fake cluster and clock."""
    settings = ServerSettings(address=addresses[0], addresses=addresses)
    return VaultClient(
        settings,
        "tok-unit",
        retry_timeout_s=retry_timeout_s,
        sleep=sleep or cluster.clock.sleep,
        clock=cluster.clock,
        wire_for=cluster.wire_for,
        failover=failover,
    )


@pytest.fixture
def cluster() -> Cluster:
    """Three healthy fake nodes."""
    return Cluster(FakeClock(), {A: healthy(A), B: healthy(B), C: healthy(C)})


def failovers(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The failover lines logged so far."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("failing over")]


# --- selection -----------------------------------------------------------------------------


def test_the_first_healthy_address_is_used_and_no_other_is_asked(cluster: Cluster) -> None:
    """With every node healthy, every request goes to the first address."""
    client = client_on(cluster, A, B, C)
    for _ in range(3):
        assert client.read("secret/app").data == {"v": A}
    assert set(cluster.addresses_asked()) == {A}


def test_a_dead_first_address_fails_over_at_once_and_stays_there(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused first node: the read answers from the second without a backoff sleep, and
    later reads go straight to the second (sticky), with one failover line."""
    caplog.set_level(logging.WARNING)
    cluster.nodes[A] = refused
    client = client_on(cluster, A, B, C)
    assert client.read("secret/app").data == {"v": B}
    cluster.asked.clear()
    assert client.read("secret/app").data == {"v": B}
    assert cluster.addresses_asked() == [B]
    assert cluster.clock.slept == []
    assert failovers(caplog) == [f"failing over from {A} to {B}: connection refused or reset"]
    assert client.address == B


def test_no_flapping_back_to_the_first_address_once_it_recovers(cluster: Cluster) -> None:
    """The first node back after a failover is not taken back: B stays current until it fails."""
    cluster.nodes[A] = refused
    client = client_on(cluster, A, B, C)
    client.read("secret/app")
    cluster.nodes[A] = healthy(A)
    cluster.asked.clear()
    for _ in range(3):
        assert client.read("secret/app").data == {"v": B}
    assert set(cluster.addresses_asked()) == {B}


def test_the_list_wraps_around_when_the_current_last_address_fails(cluster: Cluster) -> None:
    """From the last address a failure moves to the first one again."""
    cluster.nodes[A] = cluster.nodes[B] = refused
    client = client_on(cluster, A, B, C)
    assert client.read("secret/app").data == {"v": C}
    cluster.nodes[A] = healthy(A)
    cluster.nodes[C] = refused
    assert client.read("secret/app").data == {"v": A}


SEALED = {"errors": ["Vault is sealed"]}


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (refused, "connection refused or reset"),
        (timed_out, "timed out"),
        (lambda url: answer(500, {"errors": ["local node not active"]}), "HTTP 500"),
        (lambda url: answer(502), "HTTP 502"),
        (lambda url: answer(503, SEALED), "HTTP 503 (sealed)"),
        (lambda url: answer(503), "HTTP 503"),
        (lambda url: answer(429), "HTTP 429"),
        (lambda url: answer(473), "HTTP 473 (a performance standby)"),
    ],
    ids=["refused", "timeout", "500", "502", "sealed", "503", "429-standby", "473-perf-standby"],
)
def test_each_condition_fails_over_to_the_next_address(
    cluster: Cluster, caplog: pytest.LogCaptureFixture, behaviour: Behaviour, reason: str
) -> None:
    """Connection errors, timeouts, 5xx, sealed nodes and 429/473 standby answers each move
    on to the next address at once; the line names both addresses and the reason."""
    caplog.set_level(logging.WARNING)
    cluster.nodes[A] = behaviour
    client = client_on(cluster, A, B)
    assert client.read("secret/app").data == {"v": B}
    assert cluster.clock.slept == []
    assert failovers(caplog) == [f"failing over from {A} to {B}: {reason}"]


def test_a_refusal_is_the_cluster_s_answer_and_does_not_fail_over(cluster: Cluster) -> None:
    """A 403 is an answer (the same on every node of one cluster): raised, no other node asked."""
    cluster.nodes[A] = lambda url: answer(403, {"errors": ["1 error occurred: permission denied"]})
    client = client_on(cluster, A, B)
    with pytest.raises(PermissionDenied):
        client.read("secret/app")
    assert set(cluster.addresses_asked()) == {A}


# --- all down ------------------------------------------------------------------------------


def test_all_addresses_down_is_unreachable_after_the_budget(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Every node refused: rounds over all addresses with backoff between rounds, then the
    usual UnreachableError naming every address, near the end of the budget; one failover
    line, not one per move round the list."""
    caplog.set_level(logging.WARNING)
    cluster.nodes = {A: refused, B: refused, C: refused}
    client = client_on(cluster, A, B, C)
    started = cluster.clock.now
    with pytest.raises(UnreachableError, match=rf"{A}, {B}, {C} did not answer .* within 5s"):
        client.read("secret/app", budget_s=5)
    assert cluster.clock.now - started <= 5
    assert len(cluster.clock.slept) >= 2  # one backoff per round, not per address
    assert len(cluster.asked) == 3 * (len(cluster.clock.slept) + 1)
    assert failovers(caplog) == [f"failing over from {A} to {B}: connection refused or reset"]


def test_a_failover_after_an_answer_is_news_again(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    """A -> B (logged), B answers, later B fails: B -> C is logged too."""
    caplog.set_level(logging.WARNING)
    cluster.nodes[A] = refused
    client = client_on(cluster, A, B, C)
    client.read("secret/app")
    cluster.nodes[B] = refused
    client.read("secret/app")
    assert failovers(caplog) == [
        f"failing over from {A} to {B}: connection refused or reset",
        f"failing over from {B} to {C}: connection refused or reset",
    ]


def test_a_call_without_budget_tries_each_address_once(cluster: Cluster) -> None:
    """budget_s=0 (a poll) asks every address once, without sleeping, then gives up."""
    cluster.nodes = {A: refused, B: refused, C: refused}
    client = client_on(cluster, A, B, C)
    with pytest.raises(UnreachableError, match="did not answer"):
        client.read("secret/app", budget_s=0)
    assert sorted(cluster.addresses_asked()) == [A, B, C]
    assert cluster.clock.slept == []


def test_a_node_back_within_the_budget_answers(cluster: Cluster) -> None:
    """All down, then one node comes back during the backoff: the call succeeds from it."""
    cluster.nodes = {A: refused, B: refused}

    def sleep_then_heal(seconds: float) -> None:
        cluster.clock.sleep(seconds)
        cluster.nodes[B] = healthy(B)

    client = client_on(cluster, A, B, sleep=sleep_then_heal)
    assert client.read("secret/app", budget_s=10).data == {"v": B}
    assert len(cluster.clock.slept) == 1


# --- what carries over -------------------------------------------------------------------


def test_token_and_mounts_carry_over_to_the_next_node(cluster: Cluster) -> None:
    """After a failover the new node gets the current token and no second mount lookup."""
    client = client_on(cluster, A, B)
    client.read("secret/app")
    client.set_token("tok-renewed")
    cluster.nodes[A] = refused
    cluster.asked.clear()
    client.read("secret/app")
    assert cluster.tokens == {A: "tok-renewed", B: "tok-renewed"}
    assert [url for address, url in cluster.asked if address == B] == ["/v1/secret/data/app"]


def test_a_clone_shares_the_current_address_so_one_failover_is_logged(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A failover seen by the main client is the poller's too: it goes straight to B."""
    caplog.set_level(logging.WARNING)
    client = client_on(cluster, A, B)
    client.read("secret/app")  # the first render: the mount is known before the clone
    poller = client.clone(retry_timeout_s=0)
    cluster.nodes[A] = refused
    client.read("secret/app")
    cluster.asked.clear()
    assert poller.read("secret/app").data == {"v": B}
    assert cluster.addresses_asked() == [B]
    assert poller.address == B
    assert len(failovers(caplog)) == 1
    assert cluster.made == [A, B, B]  # the poller made its own wire to B, none to A


def test_a_failure_on_an_address_no_longer_current_does_not_move_again(cluster: Cluster) -> None:
    """A request that failed on A after another thread already moved to B uses B (not C)."""
    failover = Failover((A, B, C))
    client = client_on(cluster, A, B, C, failover=failover)
    poller = client.clone(retry_timeout_s=0)
    cluster.nodes[A] = refused
    failover.failed(0, "seen by the main client")
    failover.failed(0, "seen late by the poller")
    assert poller.read("secret/app").data == {"v": B}


# --- redirects -----------------------------------------------------------------------------


def test_a_redirect_to_a_listed_address_is_followed_there_and_becomes_current(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A standby's 307 to another node in the list: followed (token only to listed nodes), and
    that node is current from then on."""
    caplog.set_level(logging.WARNING)
    standby = healthy(A)
    cluster.nodes[A] = lambda url: standby(url) if "mounts" in url else answer(307, url=A, Location=B + url)
    client = client_on(cluster, A, B)
    assert client.read("secret/app").data == {"v": B}
    cluster.asked.clear()
    client.read("secret/app")
    assert cluster.addresses_asked() == [B]
    assert failovers(caplog) == [f"failing over from {A} to {B}: it redirected there"]


def test_a_redirect_outside_the_list_is_refused_and_the_next_address_asked(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A redirect to an address not in the list is not followed (the token stays home); the
    node that sent it is failed over from, naming only the target's origin (adapter.Misdirected)."""
    caplog.set_level(logging.WARNING)
    cluster.nodes[A] = lambda url: answer(
        307, url=A, Location="http://evil.test:8200" + url + "?q=secret-ish"
    )
    client = client_on(cluster, A, B)
    assert client.read("secret/app").data == {"v": B}
    assert cluster.made == [A, B]  # no wire to evil.test: the token went nowhere else
    assert set(cluster.tokens) == {A, B}
    (line,) = failovers(caplog)
    assert line.startswith(f"failing over from {A} to {B}: {A} redirected")
    assert (
        "to http://evil.test:8200, another server: refused, the token is only sent to the configured addresses"
        in line
    )
    assert "secret-ish" not in line


def test_every_node_redirecting_outside_the_list_is_unreachable(cluster: Cluster) -> None:
    """Every node redirects elsewhere: nothing followed, the usual UnreachableError once the
    budget is spent, with the refusal as the reason."""
    evil = "http://evil.test:8200"
    cluster.nodes = {node: (lambda url: answer(307, url=A, Location=evil + url)) for node in (A, B)}
    client = client_on(cluster, A, B)
    with pytest.raises(
        UnreachableError, match=rf"{A}, {B} did not answer .* within 5s: .*refused, the token is only sent"
    ):
        client.read("secret/app", budget_s=5)
    assert set(cluster.made) == {A, B}


# --- a single address is as before -------------------------------------------------------


def test_a_single_address_retries_itself_with_backoff(cluster: Cluster) -> None:
    """With one address (VAULT_ADDR alone) a failure backs off and retries the same node."""
    answers: list[Behaviour] = [refused]
    cluster.nodes[A] = lambda url: (answers.pop() if answers else healthy(A))(url)
    client = client_on(cluster, A)
    assert client.read("secret/app").data == {"v": A}
    assert len(cluster.clock.slept) == 1
    assert client.address == A
