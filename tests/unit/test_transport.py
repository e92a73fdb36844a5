"""The transport's decisions with a fake wire, a fake clock and a fake sleep (no network, no
real waiting): per-call retry budgets, attempt timeouts, redirects, status mapping, the body
cap (attempt deadlines: test_deadline.py; the fan-out: test_fanout.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

from tests.unit.fakeclock import FakeClock
from vault_inject.client import transport
from vault_inject.client.transport import MIN_ATTEMPT_TIMEOUT_S, Answer, ServerSettings, check_status
from vault_inject.client.vault import VaultClient
from vault_inject.errors import (
    AuthError,
    PermissionDenied,
    SecretError,
    SecretNotFound,
    TransientError,
    UnreachableError,
)
from vault_inject.model import KvRead, TokenInfo

ADDRESS = "http://vault.test:8200"
MOUNT_INFO = {"data": {"path": "secret/", "type": "kv", "options": {"version": "2"}}}
KV_ANSWER = {"data": {"data": {"v": "x"}, "metadata": {"version": 1}}}


@dataclass
class Sent:
    """One exchange the fake wire was asked for."""

    method: str
    url: str
    json: Mapping[str, Any] | None
    timeout_s: float


Script = Callable[[Sent], Answer]


@dataclass
class FakeWire:
    """A wire that answers by a script; ``calls`` records every exchange."""

    clock: FakeClock
    script: Script
    calls: list[Sent] = field(default_factory=list)
    clones: list[FakeWire] = field(default_factory=list)
    token: str = ""

    def exchange(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: Mapping[str, str] | None,
        json: Mapping[str, Any] | None,
        timeout_s: float,
    ) -> Answer:
        sent = Sent(method, url, json, timeout_s)
        self.calls.append(sent)
        return self.script(sent)

    def set_token(self, token: str) -> None:
        self.token = token

    def clone(self) -> FakeWire:
        other = FakeWire(self.clock, self.script)
        self.clones.append(other)
        return other

    def close(self) -> None:
        pass


def answer(status: int, body: Any = None, **headers: str) -> Answer:
    """An Answer with a JSON body (or none) and headers (``Retry_After`` -> ``Retry-After``)."""
    raw = b"" if body is None else __import__("json").dumps(body).encode()
    named = CaseInsensitiveDict({k.replace("_", "-"): v for k, v in headers.items()})
    return Answer(status, named, raw, ADDRESS + "/v1/x")


def stall(clock: FakeClock) -> Script:
    """Every attempt hangs until its deadline (time passes, then "timed out")."""

    def script(sent: Sent) -> Answer:
        clock.now += sent.timeout_s
        raise TransientError("timed out")

    return script


def kv(clock: FakeClock, *, mount_takes_s: float = 0.0, then: Script | None = None) -> Script:
    """A KV v2 server: the mount lookup answers (after ``mount_takes_s``), reads go to ``then``."""

    def script(sent: Sent) -> Answer:
        if "sys/internal/ui/mounts" in sent.url:
            clock.now += mount_takes_s
            return answer(200, MOUNT_INFO)
        return then(sent) if then else answer(200, KV_ANSWER)

    return script


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock."""
    return FakeClock()


def client_with(clock: FakeClock, script: Script, **kwargs: Any) -> tuple[VaultClient, FakeWire]:
    """A VaultClient on a fake wire and the fake clock (request timeout 30s)."""
    wire = FakeWire(clock, script)
    client = VaultClient(
        ServerSettings(address=ADDRESS, **kwargs), "tok-unit", sleep=clock.sleep, clock=clock, wire=wire
    )
    return client, wire


# --- per-call budgets ------------------------------------------------------------------------


def test_budget_s_overrides_the_default_for_one_call(clock: FakeClock) -> None:
    """read(budget_s=5) on a stalled server gives up after about 5s (not the default 60s) and says so."""
    client, _ = client_with(clock, stall(clock))
    started = clock.now
    with pytest.raises(UnreachableError, match=r"did not answer .* within 5s: timed out"):
        client.read("secret/a", budget_s=5)
    assert 5 <= clock.now - started <= 5 + MIN_ATTEMPT_TIMEOUT_S


def test_default_budget_is_retry_timeout_s(clock: FakeClock) -> None:
    """Without budget_s a call retries for the client's retry_timeout_s (set at construction)."""
    client, _ = client_with(clock, stall(clock))
    client.retry_timeout_s = 12
    started = clock.now
    with pytest.raises(UnreachableError, match="within 12s"):
        client.lookup_self()
    assert 12 <= clock.now - started <= 12 + MIN_ATTEMPT_TIMEOUT_S


def test_zero_budget_is_one_attempt_with_the_full_request_timeout(clock: FakeClock) -> None:
    """budget_s=0 makes exactly one attempt, allowed the whole request timeout, and names no budget."""
    client, wire = client_with(clock, stall(clock), request_timeout_s=30)
    with pytest.raises(UnreachableError) as caught:
        client.renew_lease("lease/1", 60, budget_s=0)
    assert [c.timeout_s for c in wire.calls] == [30]
    assert "within" not in str(caught.value)
    assert clock.slept == []


def test_attempts_get_at_most_what_is_left_of_the_budget(clock: FakeClock) -> None:
    """Each attempt may take the request timeout but never more than what is left of the
    budget (at least MIN_ATTEMPT_TIMEOUT_S), so the call ends near its budget."""
    client, wire = client_with(clock, stall(clock), request_timeout_s=4)
    started = clock.now
    with pytest.raises(UnreachableError):
        client.revoke_lease("lease/1", budget_s=10)
    timeouts = [c.timeout_s for c in wire.calls]
    assert len(timeouts) >= 3
    assert all(MIN_ATTEMPT_TIMEOUT_S <= t <= 4 for t in timeouts)
    assert timeouts[-1] < 4  # the last one was cut to what was left
    assert clock.now - started <= 10 + MIN_ATTEMPT_TIMEOUT_S


def test_all_requests_of_a_call_share_one_budget(clock: FakeClock) -> None:
    """A read whose mount lookup took 3s of a 5s budget has only the rest for the read itself."""
    client, _ = client_with(clock, kv(clock, mount_takes_s=3, then=stall(clock)))
    started = clock.now
    with pytest.raises(UnreachableError, match="within 5s"):
        client.read("secret/a", budget_s=5)
    assert clock.now - started <= 5 + MIN_ATTEMPT_TIMEOUT_S


def test_transient_errors_are_retried_within_the_budget(clock: FakeClock) -> None:
    """A 503 then a good answer: the call succeeds after one backoff sleep."""
    answers = iter([answer(503), answer(200, {"auth": {"lease_duration": 60, "renewable": True}})])
    client, wire = client_with(clock, lambda sent: next(answers))
    login = client.renew_self(budget_s=5)
    assert login.ttl_s == 60
    assert len(wire.calls) == 2
    assert len(clock.slept) == 1


def test_retry_after_past_the_budget_gives_up_at_once(clock: FakeClock) -> None:
    """A 429 asking for 120s within a 5s budget ends now, saying what the server asked."""
    client, wire = client_with(clock, lambda sent: answer(429, Retry_After="120"))
    with pytest.raises(UnreachableError, match=r"HTTP 429 \(the server asked to retry after 120s\)"):
        client.lookup_self(budget_s=5)
    assert len(wire.calls) == 1
    assert clock.slept == []


def test_clone_keeps_policies_clocks_and_mounts(clock: FakeClock) -> None:
    """clone() has its own wire, the same token, policies and clocks, knows the mounts already
    learnt (no second mount lookup) and its own default budget."""
    client, wire = client_with(clock, kv(clock))
    client.read("secret/a")
    client.policies = ("reader",)
    other = client.clone(retry_timeout_s=7)
    assert len(wire.clones) == 1
    clone_wire = wire.clones[0]
    assert (other.policies, other.sleep, other.clock, other.token) == (
        ("reader",),
        client.sleep,
        client.clock,
        "tok-unit",
    )
    assert other.retry_timeout_s == 7
    other.read("secret/b")
    assert [c.url for c in clone_wire.calls] == ["/v1/secret/data/b"]


def test_permission_denied_names_the_token_policies(clock: FakeClock) -> None:
    """A 403 on a read says which policies the token has (so the fix is clear)."""
    client, _ = client_with(clock, kv(clock, then=lambda sent: answer(403, {"errors": ["1 error: denied"]})))
    client.policies = ("reader", "default")
    with pytest.raises(PermissionDenied, match=r"reading 'secret/a' \(token policies: reader, default\)"):
        client.read("secret/a")


# --- read_many ---------------------------------------------------------------------------------


def test_read_many_reads_on_daemon_threads(clock: FakeClock) -> None:
    """read_many fans out on daemon threads (never joined at exit) and returns every secret read."""
    daemons: list[bool] = []

    def then(sent: Sent) -> Answer:
        daemons.append(threading.current_thread().daemon)
        return answer(200, KV_ANSWER)

    client, _ = client_with(clock, kv(clock, then=then))
    found = client.read_many([KvRead("secret/a"), KvRead("secret/b"), KvRead("secret/c")])
    assert sorted(request.path for request in found) == ["secret/a", "secret/b", "secret/c"]
    assert daemons == [True, True, True]


def test_read_many_raises_an_outage(clock: FakeClock) -> None:
    """An unreachable server is raised from read_many (the caller handles the outage)."""
    client, _ = client_with(clock, kv(clock, then=stall(clock)))
    with pytest.raises(UnreachableError):
        client.read_many([KvRead("secret/a"), KvRead("secret/b")], budget_s=0)


# --- redirects ---------------------------------------------------------------------------------


def test_redirect_to_another_origin_is_refused_naming_only_its_origin(clock: FakeClock) -> None:
    """A 307 to another host is not followed; the error names scheme://host:port, not the
    target's path or query."""
    location = "http://evil.test:9000/v1/steal?token-ish=abc"
    client, wire = client_with(clock, lambda sent: answer(307, Location=location))
    with pytest.raises(UnreachableError) as caught:
        client.lookup_self()
    message = str(caught.value)
    assert "redirected token lookup to http://evil.test:9000, another server" in message
    assert "steal" not in message
    assert "abc" not in message
    assert len(wire.calls) == 1


def test_same_origin_redirect_is_followed_keeping_method_and_body(clock: FakeClock) -> None:
    """A 307 to another path on the same origin is followed with the same method and body."""
    answers = iter([answer(307, Location="/v1/sys/leases/renew2"), answer(200, {"lease_duration": 5})])
    client, wire = client_with(clock, lambda sent: next(answers))
    client.renew_lease("lease/1", 60)
    assert [(c.method, c.url) for c in wire.calls] == [
        ("PUT", "/v1/sys/leases/renew"),
        ("PUT", "/v1/sys/leases/renew2"),
    ]
    assert wire.calls[1].json == {"lease_id": "lease/1", "increment": 60}


def test_redirect_loop_is_bounded(clock: FakeClock) -> None:
    """Same-origin redirects are followed at most MAX_REDIRECTS times, then an error."""
    client, wire = client_with(clock, lambda sent: answer(302, Location=ADDRESS + "/v1/again"))
    with pytest.raises(UnreachableError, match="more than 5 times"):
        client.lookup_self()
    assert len(wire.calls) == transport.MAX_REDIRECTS + 1


@pytest.mark.parametrize(
    ("address", "target", "expected"),
    [
        ("http://h:8200", "http://h:8200/v1/a?b=1", "/v1/a?b=1"),
        ("http://H:8200", "http://h:8200/v1/a", "/v1/a"),
        ("http://h", "http://h:80/v1/a", "/v1/a"),
        ("https://h", "https://h:443/v1/a", "/v1/a"),
        ("https://h/vault/", "https://h/vault/v1/a", "/v1/a"),
        ("https://h:8200", "http://h:8200/v1/a", None),  # https -> http
        ("http://h:8200", "http://h:8201/v1/a", None),  # another port
        ("http://h:8200", "http://other:8200/v1/a", None),  # another host
        ("https://h/vault", "https://h/elsewhere/v1/a", None),  # outside the address's path
        ("http://h:8200", "ftp://h:8200/v1/a", None),
        ("http://h:8200", "http://h:notaport/v1/a", None),
    ],
)
def test_same_origin_path(address: str, target: str, expected: str | None) -> None:
    """Only the same scheme, host and port (default ports filled in) count as the same origin."""
    assert transport.same_origin_path(address, target) == expected


def test_origin_of_names_no_path_or_query() -> None:
    """The redirect error names scheme://host:port only."""
    assert transport.origin_of("https://Evil.test/v1/x?secret=1") == "https://evil.test:443"
    assert transport.origin_of("javascript:alert(1)") == "an address that is not http(s)"


@pytest.mark.parametrize(
    ("status", "method", "expected"),
    [
        (307, "POST", "POST"),
        (308, "PUT", "PUT"),
        (303, "PUT", "GET"),
        (302, "POST", "GET"),
        (301, "GET", "GET"),
    ],
)
def test_redirected_method(status: int, method: str, expected: str) -> None:
    """307/308 keep the method and body; 303 (and 301/302 after POST) become a GET without body."""
    new_method, body = transport.redirected_method(status, method, {"a": 1})
    assert new_method == expected
    assert body == ({"a": 1} if expected == method else None)


# --- status mapping ----------------------------------------------------------------------------

MARKER = "body-marker-never-quoted"


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (404, {"errors": []}, SecretNotFound, "no secret at 'secret/a'"),
        (
            404,
            {"errors": ["no handler for route 'x'"]},
            transport.NoRoute,
            "nothing is mounted for 'secret/a'",
        ),
        (401, {"errors": [MARKER]}, AuthError, "not authenticated for 'secret/a'"),
        (400, {"errors": [MARKER]}, SecretError, "HTTP 400 (the server rejected the request"),
        (405, {"errors": [MARKER]}, SecretError, "HTTP 405 (this path does not support"),
        (500, {"errors": [MARKER]}, TransientError, "HTTP 500"),
    ],
)
def test_status_mapping(status: int, body: Any, error: type[Exception], text: str) -> None:
    """Each status becomes its own error class with a fixed message, never the server's text."""
    with pytest.raises(error) as caught:
        check_status(answer(status, body), "'secret/a'", False)
    assert text in str(caught.value)
    assert MARKER not in str(caught.value)


def test_403_tells_a_rejected_token_from_an_acl_refusal() -> None:
    """A bare "permission denied" means the token itself was refused; a wrapped one is the ACL."""
    for errors, rejected in ((["permission denied"], True), (["1 error occurred: permission denied"], False)):
        with pytest.raises(PermissionDenied) as caught:
            check_status(answer(403, {"errors": errors}), "'secret/a'", False)
        assert caught.value.token_rejected is rejected


def test_unparsable_success_is_transient_without_the_parser_text() -> None:
    """A 200 whose body is not JSON is retried ("cut short?"), never quoting it."""
    bad = Answer(200, CaseInsensitiveDict(), b'{"data": ' + MARKER.encode(), ADDRESS)
    with pytest.raises(TransientError, match="not valid JSON") as caught:
        check_status(bad, "'secret/a'", False)
    assert MARKER not in str(caught.value)


def test_retry_after_on_429_is_carried() -> None:
    """A 429 with Retry-After carries the pause the server asked for."""
    with pytest.raises(TransientError) as caught:
        check_status(answer(429, Retry_After="7"), "'secret/a'", False)
    assert getattr(caught.value, "retry_after_s", None) == 7.0


# --- the body cap ------------------------------------------------------------------------------


@dataclass
class FakeResponse:
    """Just what _read_capped uses of a requests.Response."""

    headers: Mapping[str, str]
    chunks: list[bytes]
    read: int = 0

    def iter_content(self, size: int) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.read += 1
            yield chunk


def test_declared_oversized_body_is_refused_unread() -> None:
    """A Content-Length over the cap fails before one byte of the body is read."""
    response = FakeResponse({"Content-Length": str(transport.MAX_BODY_BYTES + 1)}, [b"x"])
    with pytest.raises(SecretError, match="the answer to 'secret/a' is larger than 16 MiB"):
        transport._read_capped(response, "'secret/a'")  # type: ignore[arg-type]
    assert response.read == 0


def test_undeclared_oversized_body_stops_at_the_cap() -> None:
    """A body with no length stops being read as soon as it passes the cap."""
    chunk = b"x" * (4 * 1024 * 1024)
    response = FakeResponse({}, [chunk] * 10)
    with pytest.raises(SecretError, match="larger than 16 MiB"):
        transport._read_capped(response, "'secret/a'")  # type: ignore[arg-type]
    assert response.read == 5


def test_body_under_the_cap_is_read_whole() -> None:
    """A normal body is returned as sent."""
    response = FakeResponse({"Content-Length": "6"}, [b"abc", b"def"])
    assert transport._read_capped(response, "'secret/a'") == b"abcdef"  # type: ignore[arg-type]


def test_token_lookup_is_a_typed_token_info(clock: FakeClock) -> None:
    """lookup_self answers a TokenInfo (ttl, renewable, policies), not the raw lookup mapping."""
    body = {"data": {"ttl": 3600, "renewable": True, "policies": ["default", "app"], "id": "tok-unit"}}
    client, _ = client_with(clock, lambda sent: answer(200, body))
    assert client.lookup_self() == TokenInfo(ttl_s=3600, renewable=True, policies=("default", "app"))


# --- what requests would read from the environment at every request, read once -------------


def test_session_takes_proxies_from_the_environment_once_with_no_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTPS_PROXY applies to the server's address unless NO_PROXY names it; the session
    itself never looks at the environment again (trust_env off), nor at ~/.netrc."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings = transport.ServerSettings(address="https://vault.example:8200")
    session = transport._session(settings, settings.address)
    assert session.trust_env is False
    assert session.proxies == {"https": "http://proxy.example:3128"}
    monkeypatch.setenv("NO_PROXY", "vault.example")
    assert transport._session(settings, settings.address).proxies == {}


def test_session_uses_requests_ca_bundle_only_when_no_ca_cert_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/from-env.pem")
    plain = transport.ServerSettings(address="https://vault.example:8200")
    assert transport._session(plain, plain.address).verify == "/etc/ssl/from-env.pem"
    pinned = transport.ServerSettings(address="https://vault.example:8200", ca_cert="/etc/ssl/vault.pem")
    assert transport._session(pinned, pinned.address).verify == "/etc/ssl/vault.pem"
