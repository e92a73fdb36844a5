"""The transport (inject's hvac adapter, ``client/adapter.py``, and its wire) with a fake wire,
a fake clock and a fake sleep (no network, no real waiting): per-call retry budgets, attempt
timeouts, redirects, status mapping (``replies`` and ``translate``), the body cap, and what
requests would read from the environment (attempt deadlines: test_deadline.py; the fan-out:
test_fanout.py; failover: test_failover.py)."""

from __future__ import annotations

import itertools
import json as jsonlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hvac import exceptions as hvac_errors
from requests.structures import CaseInsensitiveDict

from tests.unit.fakeclock import FakeClock
from vault_inject.client import adapter, backoff, replies, translate, wire
from vault_inject.client.adapter import MIN_ATTEMPT_TIMEOUT_S, ServerSettings
from vault_inject.client.replies import Answer
from vault_inject.client.vault import VaultClient
from vault_inject.errors import (
    AuthError,
    InjectError,
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
    headers: Mapping[str, str]
    params: Mapping[str, Any] | None
    json: Any
    timeout_s: float

    @property
    def token(self) -> str | None:
        """The token the request carried."""
        return self.headers.get("X-Vault-Token")


Script = Callable[[Sent], Answer]


@dataclass
class FakeWire:
    """A wire that answers by a script; ``calls`` records every exchange."""

    clock: FakeClock
    script: Script
    calls: list[Sent] = field(default_factory=list)

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
        sent = Sent(method, url, dict(headers), params, json, timeout_s)
        self.calls.append(sent)
        return self.script(sent)


def answer(status: int, body: Any = None, **headers: str) -> Answer:
    """An Answer with a JSON body (or none) and headers (``Retry_After`` -> ``Retry-After``)."""
    raw = b"" if body is None else jsonlib.dumps(body).encode()
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
    fake = FakeWire(clock, script)
    client = VaultClient(
        ServerSettings(address=ADDRESS, **kwargs),
        "tok-unit",
        sleep=clock.sleep,
        clock=clock,
        wire_for=lambda address: fake,
    )
    return client, fake


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
    client, fake = client_with(clock, stall(clock), request_timeout_s=30)
    with pytest.raises(UnreachableError) as caught:
        client.renew_lease("lease/1", 60, budget_s=0)
    assert [c.timeout_s for c in fake.calls] == [30]
    assert "within" not in str(caught.value)
    assert clock.slept == []


def test_attempts_get_at_most_what_is_left_of_the_budget(clock: FakeClock) -> None:
    """Each attempt may take the request timeout but never more than what is left of the
    budget (at least MIN_ATTEMPT_TIMEOUT_S), so the call ends near its budget."""
    client, fake = client_with(clock, stall(clock), request_timeout_s=4)
    started = clock.now
    with pytest.raises(UnreachableError):
        client.revoke_lease("lease/1", budget_s=10)
    timeouts = [c.timeout_s for c in fake.calls]
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


def test_a_write_s_mount_lookup_and_write_share_one_budget(clock: FakeClock) -> None:
    """kv_put's mount lookup and its write are one call: one budget for both."""
    client, _ = client_with(clock, kv(clock, mount_takes_s=3, then=stall(clock)))
    started = clock.now
    with pytest.raises(UnreachableError, match="within 5s"):
        client.kv_put("secret/a", {"v": "x"}, budget_s=5)
    assert clock.now - started <= 5 + MIN_ATTEMPT_TIMEOUT_S


def test_transient_errors_are_retried_within_the_budget(clock: FakeClock) -> None:
    """A 503 then a good answer: the call succeeds after one backoff sleep."""
    answers = iter([answer(503), answer(200, {"auth": {"lease_duration": 60, "renewable": True}})])
    client, fake = client_with(clock, lambda sent: next(answers))
    login = client.renew_self(budget_s=5)
    assert login.ttl_s == 60
    assert len(fake.calls) == 2
    assert len(clock.slept) == 1


def test_retry_after_within_the_budget_is_honoured(clock: FakeClock) -> None:
    """A 429 asking for 2s: the retry comes after 2s (not the shorter backoff), then succeeds."""
    answers = iter([answer(429, Retry_After="2"), answer(200, {"data": {"ttl": 5}})])
    client, fake = client_with(clock, lambda sent: next(answers))
    assert client.lookup_self(budget_s=10).ttl_s == 5
    assert len(fake.calls) == 2
    assert len(clock.slept) == 1
    assert clock.slept[0] >= 2


def test_retry_after_past_the_budget_gives_up_at_once(clock: FakeClock) -> None:
    """A 429 asking for 120s within a 5s budget ends now, saying what the server asked."""
    client, fake = client_with(clock, lambda sent: answer(429, Retry_After="120"))
    with pytest.raises(UnreachableError, match=r"HTTP 429 \(the server asked to retry after 120s\)"):
        client.lookup_self(budget_s=5)
    assert len(fake.calls) == 1
    assert clock.slept == []


# --- the token -------------------------------------------------------------------------------


def test_the_token_goes_in_the_headers_and_a_new_one_from_then_on(clock: FakeClock) -> None:
    """Every request carries the client's token (X-Vault-Token); set_token changes it for the
    next request."""
    client, fake = client_with(clock, lambda sent: answer(200, {"data": {"ttl": 5}}))
    client.lookup_self()
    client.set_token("tok-renewed")
    client.lookup_self()
    assert [c.token for c in fake.calls] == ["tok-unit", "tok-renewed"]
    assert client.token == "tok-renewed"
    assert all(c.headers.get("X-Vault-Request") == "true" for c in fake.calls)


def test_the_namespace_goes_in_the_headers(clock: FakeClock) -> None:
    """A namespace is sent with every request."""
    client, fake = client_with(clock, lambda sent: answer(200, {"data": {}}), namespace="team-a/")
    client.lookup_self()
    assert fake.calls[0].headers.get("X-Vault-Namespace") == "team-a/"


def test_a_login_posts_the_credentials_and_uses_the_new_token(clock: FakeClock) -> None:
    """login(approle) POSTs role_id and secret_id to auth/<mount>/login; the token it returns
    is sent from then on, and its policies are kept."""
    body = {
        "auth": {"client_token": "tok-new", "lease_duration": 600, "renewable": True, "policies": ["app"]}
    }
    client, fake = client_with(clock, lambda sent: answer(200, body))
    login = client.login(
        "approle", "/approle-x/", {"role_id": "r", "secret_id": "s"}, what="approle login", budget_s=0
    )
    (sent,) = fake.calls
    assert (sent.method, sent.url) == ("POST", "/v1/auth/approle-x/login")
    assert sent.json == {"role_id": "r", "secret_id": "s"}
    assert (login.token, login.ttl_s, login.renewable) == ("tok-new", 600, True)
    assert client.token == "tok-new"
    assert client.policies == ("app",)
    client.revoke_self(budget_s=0)
    assert (fake.calls[1].method, fake.calls[1].url, fake.calls[1].token) == (
        "POST",
        "/v1/auth/token/revoke-self",
        "tok-new",
    )


def test_a_refused_login_is_an_auth_error_naming_the_server(clock: FakeClock) -> None:
    """A 400 on a login (bad role or secret) is an AuthError; the token is unchanged."""
    client, _ = client_with(clock, lambda sent: answer(400, {"errors": ["invalid role or secret ID"]}))
    with pytest.raises(AuthError, match=r"^approle login refused by http://\S+: HTTP 400 \(") as info:
        client.login("approle", "approle", {"role_id": "r", "secret_id": "s"}, what="approle login")
    assert str(info.value).count("refused") == 1  # said once
    assert client.token == "tok-unit"


# --- clones ----------------------------------------------------------------------------------


def test_clone_keeps_policies_clocks_and_mounts(clock: FakeClock) -> None:
    """clone() has its own wires (made again for it), its own session, the same token,
    policies, clocks and failover (current address), knows the mounts already learnt (no
    second mount lookup) and has its own default budget."""
    made: list[FakeWire] = []

    def wire_for(address: str) -> FakeWire:
        made.append(FakeWire(clock, kv(clock)))
        return made[-1]

    client = VaultClient(
        ServerSettings(address=ADDRESS), "tok-unit", sleep=clock.sleep, clock=clock, wire_for=wire_for
    )
    client.read("secret/a")
    client.policies = ("reader",)
    other = client.clone(retry_timeout_s=7)
    assert (other.policies, other.sleep, other.clock, other.token) == (
        ("reader",),
        client.sleep,
        client.clock,
        "tok-unit",
    )
    assert other.retry_timeout_s == 7
    assert other._adapter.failover is client._adapter.failover
    assert other._adapter.session is not client._adapter.session
    other.read("secret/b")
    assert len(made) == 2
    clone_wire = made[1]
    assert [c.url for c in clone_wire.calls] == ["/v1/secret/data/b"]
    assert [c.token for c in clone_wire.calls] == ["tok-unit"]


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
    client, fake = client_with(clock, lambda sent: answer(307, Location=location))
    with pytest.raises(UnreachableError) as caught:
        client.lookup_self()
    message = str(caught.value)
    assert "redirected token lookup to http://evil.test:9000, another server" in message
    assert "refused, the token is only sent to the configured address " in message
    assert "steal" not in message
    assert "abc" not in message
    assert len(fake.calls) == 1


def test_same_origin_redirect_is_followed_keeping_method_and_body(clock: FakeClock) -> None:
    """A 307 to another path on the same origin is followed with the same method, body and token."""
    answers = iter([answer(307, Location="/v1/sys/leases/renew2"), answer(200, {"lease_duration": 5})])
    client, fake = client_with(clock, lambda sent: next(answers))
    client.renew_lease("lease/1", 60)
    assert [(c.method, c.url) for c in fake.calls] == [
        ("PUT", "/v1/sys/leases/renew"),
        ("PUT", "/v1/sys/leases/renew2"),
    ]
    assert fake.calls[1].json == {"lease_id": "lease/1", "increment": 60}
    assert fake.calls[1].token == "tok-unit"


def test_a_redirect_s_query_replaces_the_params(clock: FakeClock) -> None:
    """The Location carries its own query: the original params are not sent again."""
    answers = iter([answer(302, Location=ADDRESS + "/v1/secret/data/a?version=2"), answer(200, KV_ANSWER)])
    client, fake = client_with(clock, kv(clock, then=lambda sent: next(answers)))
    client.read("secret/a", version=3)
    reads = [c for c in fake.calls if "mounts" not in c.url]
    assert [(c.method, c.url, c.params) for c in reads] == [
        ("GET", "/v1/secret/data/a", {"version": 3}),
        ("GET", "/v1/secret/data/a?version=2", None),
    ]


def test_redirect_loop_is_bounded(clock: FakeClock) -> None:
    """Same-origin redirects are followed at most MAX_REDIRECTS times, then an error."""
    client, fake = client_with(clock, lambda sent: answer(302, Location=ADDRESS + "/v1/again"))
    with pytest.raises(UnreachableError, match="more than 5 times"):
        client.lookup_self()
    assert len(fake.calls) == adapter.MAX_REDIRECTS + 1


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
    assert replies.same_origin_path(address, target) == expected


def test_origin_of_names_no_path_or_query() -> None:
    """The redirect error names scheme://host:port only."""
    assert replies.origin_of("https://Evil.test/v1/x?secret=1") == "https://evil.test:443"
    assert replies.origin_of("javascript:alert(1)") == "an address that is not http(s)"


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
    new_method, body = replies.redirected_method(status, method, {"a": 1})
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
            translate.NoRoute,
            "nothing is mounted for 'secret/a'",
        ),
        (403, {"errors": [MARKER]}, PermissionDenied, "permission denied reading 'secret/a'"),
        (401, {"errors": [MARKER]}, AuthError, "not authenticated for 'secret/a'"),
        (400, {"errors": [MARKER]}, SecretError, "server refused 'secret/a': HTTP 400 (the server rejected"),
        (405, {"errors": [MARKER]}, SecretError, "server refused 'secret/a': HTTP 405 (this path does not"),
        (501, {"errors": [MARKER]}, SecretError, "server refused 'secret/a': HTTP 501"),
        (500, {"errors": [MARKER]}, UnreachableError, "did not answer 'secret/a': HTTP 500"),
    ],
)
def test_status_mapping(clock: FakeClock, status: int, body: Any, error: type[Exception], text: str) -> None:
    """Each status becomes its own error class with a fixed message, never the server's text
    (end to end: the adapter's refusal, hvac's exception, our translation)."""
    client, fake = client_with(clock, lambda sent: answer(status, body))
    with pytest.raises(error) as caught:
        client.write("secret/a", {"v": "x"}, budget_s=0)
    assert text in str(caught.value)
    assert MARKER not in str(caught.value)
    assert len(fake.calls) == 1  # a refusal is not retried; a 500 with no budget is one attempt


@pytest.mark.parametrize(
    ("exc", "error", "text"),
    [
        (hvac_errors.InvalidPath("HTTP 404", json={"errors": []}), SecretNotFound, "no secret at 'secret/a'"),
        (
            hvac_errors.InvalidPath("HTTP 404", json={"errors": ["no handler for route 'x'"]}),
            translate.NoRoute,
            "nothing is mounted for 'secret/a'",
        ),
        (hvac_errors.InvalidPath("HTTP 404", json=None), SecretNotFound, "no secret at 'secret/a'"),
        (hvac_errors.Unauthorized("HTTP 401", json={}), AuthError, "not authenticated for 'secret/a'"),
        (
            hvac_errors.UnsupportedOperation("HTTP 405 (x)"),
            translate.Refused,
            "server refused 'secret/a': HTTP 405 (x)",
        ),
        (hvac_errors.UnexpectedError(), translate.Refused, "server refused 'secret/a': UnexpectedError"),
    ],
)
def test_translated(exc: hvac_errors.VaultError, error: type[InjectError], text: str) -> None:
    """hvac's exceptions become ours, by class and with our words."""
    translated = translate.translated(exc, "'secret/a'")
    assert type(translated) is error
    assert str(translated).startswith(text)


@pytest.mark.parametrize(
    ("errors", "rejected"),
    [(["permission denied"], True), (["1 error occurred: permission denied"], False), (None, False)],
)
def test_403_tells_a_rejected_token_from_an_acl_refusal(errors: list[str] | None, rejected: bool) -> None:
    """A bare "permission denied" means the token itself was refused; a wrapped one is the ACL."""
    exc = hvac_errors.Forbidden("HTTP 403", json={"errors": errors})
    translated = translate.translated(exc, "'secret/a'")
    assert isinstance(translated, PermissionDenied)
    assert translated.token_rejected is rejected


def test_a_rejected_token_and_an_acl_refusal_of_lookup_self(clock: FakeClock) -> None:
    """End to end: a bare 403 on lookup-self rejects the token; a wrapped one (no lookup
    grant) is carried on from without TTL information."""
    client, _ = client_with(clock, lambda sent: answer(403, {"errors": ["permission denied"]}))
    with pytest.raises(AuthError, match=f"the token was rejected by {ADDRESS}"):
        client.lookup_self()
    client, _ = client_with(
        clock, lambda sent: answer(403, {"errors": ["1 error occurred: permission denied"]})
    )
    assert client.lookup_self() == TokenInfo()


def test_a_read_where_nothing_is_mounted_says_so(clock: FakeClock) -> None:
    """A 404 "no handler for route" on a read: no secrets engine is mounted there (a KV v2
    mount that was disabled: named), not "no secret"."""
    no_route = answer(404, {"errors": ["no handler for route 'gone/data/a'. route entry not found."]})
    client, _ = client_with(clock, kv(clock, then=lambda sent: no_route))
    with pytest.raises(SecretNotFound, match=r"^'secret/a': no secrets engine is mounted at 'secret/'$"):
        client.read("secret/a")
    client, _ = client_with(clock, lambda sent: no_route)
    with pytest.raises(SecretNotFound, match=r"^'gone/a': no secrets engine is mounted there$"):
        client.read("gone/a")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"data": {"data": None, "metadata": {"deletion_time": "2026-01-01T00:00:00Z"}}},
            "version 3 of 'secret/a' was deleted",
        ),
        (
            {"data": {"data": None, "metadata": {"deletion_time": "", "destroyed": True}}},
            "version 3 of 'secret/a' was destroyed",
        ),
        ({"errors": []}, "'secret/a' has no version 3"),
        ({"data": None, "errors": []}, "'secret/a' has no version 3"),
        ({"data": [1]}, "'secret/a' has no version 3"),
    ],
    ids=["deleted", "destroyed", "never-written", "data-null", "data-not-an-object"],
)
def test_a_kv2_404_with_metadata_says_what_became_of_the_version(
    clock: FakeClock, body: Any, message: str
) -> None:
    """KV v2 answers 404 with the version's metadata for a deleted or destroyed version: the
    message says which; any other 404 body names the missing version (never a crash on its shape)."""
    client, _ = client_with(clock, kv(clock, then=lambda sent: answer(404, body)))
    with pytest.raises(SecretNotFound) as caught:
        client.read("secret/a", version=3)
    assert str(caught.value) == message


@pytest.mark.parametrize("status", [412, 429, 473, 500, 502, 503, 599])
def test_not_now_statuses_are_transient(status: int) -> None:
    """412, 429, 473 and every 5xx but 501 say "not now" (retried, or another node asked)."""
    error = replies.transient(answer(status))
    assert isinstance(error, TransientError)
    assert str(error) == f"HTTP {status}" + (" (a performance standby)" if status == 473 else "")


@pytest.mark.parametrize("status", [200, 204, 400, 401, 403, 404, 405, 501])
def test_answers_and_refusals_are_not_transient(status: int) -> None:
    """A success or a refusal is the server's answer, not retried."""
    assert replies.transient(answer(status)) is None


def test_a_sealed_node_is_named_without_the_body_text() -> None:
    """A 503 whose errors mention the seal says "(sealed)", in our words."""
    error = replies.transient(answer(503, {"errors": [f"Vault is sealed {MARKER}"]}))
    assert str(error) == "HTTP 503 (sealed)"


def test_unparsable_success_is_transient_without_the_parser_text(clock: FakeClock) -> None:
    """A 200 whose body is not JSON is retried ("cut short?"), never quoting it."""
    bad = Answer(200, CaseInsensitiveDict(), b'{"data": ' + MARKER.encode(), ADDRESS)
    with pytest.raises(TransientError, match="not valid JSON") as caught:
        replies.success_body(bad, "'secret/a'")
    assert MARKER not in str(caught.value)
    answers = iter([bad, answer(200, {"data": {"ttl": 9}})])
    client, fake = client_with(clock, lambda sent: next(answers))
    assert client.lookup_self().ttl_s == 9
    assert len(fake.calls) == 2


def test_success_bodies() -> None:
    """204 and an empty body are {}; a JSON value that is not an object is {}; too deeply
    nested JSON is a SecretError naming the request."""
    assert replies.success_body(answer(204), "x") == {}
    assert replies.success_body(Answer(200, {}, b" \n", ADDRESS), "x") == {}
    assert replies.success_body(answer(200, [1, 2]), "x") == {}
    assert replies.success_body(answer(200, {"a": 1}), "x") == {"a": 1}
    deep = Answer(200, {}, b"[" * 200_000, ADDRESS)
    with pytest.raises(SecretError, match="the answer to 'secret/a' is nested too deeply"):
        replies.success_body(deep, "'secret/a'")


def test_retry_after_on_429_is_carried() -> None:
    """A 429 with Retry-After carries the pause the server asked for; other statuses do not."""
    error = replies.transient(answer(429, Retry_After="7"))
    assert isinstance(error, replies.RetryAfter)
    assert error.retry_after_s == 7.0
    assert not isinstance(replies.transient(answer(502, Retry_After="7")), replies.RetryAfter)


def test_backoff_between_rounds_is_the_backoff_delay(clock: FakeClock) -> None:
    """With no Retry-After the pause before a retry is backoff.delay_s of the round."""
    answers = iter([answer(502), answer(200, {"data": {}})])
    client, _ = client_with(clock, lambda sent: next(answers))
    client.lookup_self(budget_s=10)
    (slept,) = clock.slept
    assert backoff.INITIAL_S <= slept <= backoff.INITIAL_S + backoff.JITTER_S


# --- the body cap ------------------------------------------------------------------------------


@dataclass
class FakeResponse:
    """Just what the wire uses of a requests.Response."""

    headers: Mapping[str, str]
    chunks: list[bytes]
    read: int = 0
    status_code: int = 200
    url: str = ADDRESS + "/v1/x"
    closed: bool = False

    def iter_content(self, size: int) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.read += 1
            yield chunk

    def close(self) -> None:
        self.closed = True


def test_declared_oversized_body_is_refused_unread() -> None:
    """A Content-Length over the cap fails before one byte of the body is read."""
    response = FakeResponse({"Content-Length": str(wire.MAX_BODY_BYTES + 1)}, [b"x"])
    with pytest.raises(SecretError, match="the answer to 'secret/a' is larger than 16 MiB"):
        wire._read_capped(response, "'secret/a'")  # type: ignore[arg-type]
    assert response.read == 0


def test_undeclared_oversized_body_stops_at_the_cap() -> None:
    """A body with no length stops being read as soon as it passes the cap."""
    chunk = b"x" * (4 * 1024 * 1024)
    response = FakeResponse({}, [chunk] * 10)
    with pytest.raises(SecretError, match="larger than 16 MiB"):
        wire._read_capped(response, "'secret/a'")  # type: ignore[arg-type]
    assert response.read == 5


def test_body_under_the_cap_is_read_whole() -> None:
    """A normal body is returned as sent."""
    response = FakeResponse({"Content-Length": "6"}, [b"abc", b"def"])
    assert wire._read_capped(response, "'secret/a'") == b"abcdef"  # type: ignore[arg-type]


def test_token_lookup_is_a_typed_token_info(clock: FakeClock) -> None:
    """lookup_self answers a TokenInfo (ttl, renewable, policies), not the raw lookup mapping."""
    body = {"data": {"ttl": 3600, "renewable": True, "policies": ["default", "app"], "id": "tok-unit"}}
    client, _ = client_with(clock, lambda sent: answer(200, body))
    assert client.lookup_self() == TokenInfo(ttl_s=3600, renewable=True, policies=("default", "app"))


# --- what requests would read from the environment at every request, read once -------------


@dataclass
class FakeSession:
    """A requests session that records what it is asked to send (no network)."""

    response: FakeResponse = field(default_factory=lambda: FakeResponse({}, [b"{}"]))
    sent: list[dict[str, Any]] = field(default_factory=list)

    def request(self, method: str, url: str, **kwargs: Any) -> FakeResponse:
        self.sent.append({"method": method, "url": url, **kwargs})
        return self.response


def exchange(fake: wire.SessionWire) -> Answer:
    """One GET through a real SessionWire."""
    return fake.exchange(
        "GET",
        "/v1/auth/token/lookup-self",
        what="token lookup",
        headers={"X-Vault-Token": "tok-unit"},
        params=None,
        json=None,
        timeout_s=5,
    )


def test_session_takes_proxies_from_the_environment_once_with_no_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTPS_PROXY applies to the server's address unless NO_PROXY names it; it is read when
    the wire is made, and the session itself never looks at the environment again
    (trust_env off), nor at ~/.netrc."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings = ServerSettings(address="https://vault.example:8200")
    assert wire.new_session(settings).trust_env is False
    session = FakeSession()
    proxied = wire.SessionWire(session, settings, settings.address)  # type: ignore[arg-type]
    monkeypatch.setenv("NO_PROXY", "vault.example")
    exchange(proxied)  # read once: the change after the wire was made is not seen
    assert session.sent[-1]["proxies"] == {"https": "http://proxy.example:3128"}
    direct = wire.SessionWire(session, settings, settings.address)  # type: ignore[arg-type]
    exchange(direct)
    assert session.sent[-1]["proxies"] == {}


def test_the_wire_sends_what_it_is_given_and_follows_no_redirect() -> None:
    """The exchange goes to the wire's address with the given headers (the token), streamed,
    redirects off (the adapter follows them), and the answer read whole."""
    session = FakeSession(FakeResponse({"Content-Length": "7"}, [b'{"a":', b"1}"], status_code=200))
    settings = ServerSettings(address="http://vault.example:8200/")
    got = exchange(wire.SessionWire(session, settings, settings.address))  # type: ignore[arg-type]
    (sent,) = session.sent
    assert (sent["method"], sent["url"]) == ("GET", "http://vault.example:8200/v1/auth/token/lookup-self")
    assert sent["headers"] == {"X-Vault-Token": "tok-unit"}
    assert (sent["allow_redirects"], sent["stream"], sent["timeout"]) == (False, True, 5)
    assert (got.status, got.body) == (200, b'{"a":1}')
    assert session.response.closed


def test_session_uses_requests_ca_bundle_only_when_no_ca_cert_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """REQUESTS_CA_BUNDLE (read once, when the wire is made) unless a CA certificate is given;
    nothing to verify over plain HTTP; skip-verify is False."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/from-env.pem")
    plain = ServerSettings(address="https://vault.example:8200")
    session = FakeSession()
    from_env = wire.SessionWire(session, plain, plain.address)  # type: ignore[arg-type]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/changed-later.pem")
    exchange(from_env)
    assert session.sent[-1]["verify"] == "/etc/ssl/from-env.pem"
    pinned = ServerSettings(address="https://vault.example:8200", ca_cert="/etc/ssl/vault.pem")
    exchange(wire.SessionWire(session, pinned, pinned.address))  # type: ignore[arg-type]
    assert session.sent[-1]["verify"] == "/etc/ssl/vault.pem"
    environ = {"REQUESTS_CA_BUNDLE": "/etc/ssl/from-env.pem"}
    assert wire.verify_setting(plain, environ, "http://vault.example:8200") is True
    skip = ServerSettings(address="https://vault.example:8200", tls_skip_verify=True)
    assert wire.verify_setting(skip, environ, skip.address) is False
    assert wire.verify_setting(plain, {"CURL_CA_BUNDLE": "/curl.pem"}, plain.address) == "/curl.pem"


def test_the_client_certificate_needs_both_halves() -> None:
    """cert is (certificate, key) only when both are given."""
    both = ServerSettings(address=ADDRESS, client_cert="/c.pem", client_key="/k.pem")
    assert wire.cert_setting(both) == ("/c.pem", "/k.pem")
    assert wire.cert_setting(ServerSettings(address=ADDRESS, client_cert="/c.pem")) is None


def test_the_real_wires_share_the_adapter_s_one_session() -> None:
    """Without a fake, each address gets a SessionWire over the adapter's session (pools are
    per host); nothing is sent to make one."""
    settings = ServerSettings(address=ADDRESS, addresses=(ADDRESS, "http://other.test:8200"))
    client = VaultClient(settings, "tok-unit")
    try:
        first, second = client._adapter._wire(0), client._adapter._wire(1)
        assert isinstance(first, wire.SessionWire)
        assert isinstance(second, wire.SessionWire)
        assert first is not second
        assert first._session is second._session is client._adapter.session
        assert client._adapter._wire(0) is first
    finally:
        client.close()


def test_a_retrying_call_says_so_at_once_and_then_every_ten_seconds(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A stalled server for a 35s budget: one info line at the first failed round, then one
    per RETRY_NOTE_S (not one per attempt, not silence), each naming what, where and why."""
    client, _ = client_with(clock, stall(clock), request_timeout_s=2)
    with caplog.at_level("INFO", logger="vault_inject.client.adapter"), pytest.raises(UnreachableError):
        client.lookup_self(budget_s=35)
    notes = [r for r in caplog.records if r.levelname == "INFO" and "retrying token lookup" in r.getMessage()]
    assert len(notes) >= 3
    assert notes[0].getMessage().startswith("retrying token lookup: ")
    assert all(r.getMessage().startswith("still retrying token lookup: ") for r in notes[1:])
    assert f"{ADDRESS} did not answer (timed out); giving up in" in notes[0].getMessage()
    left = [int(r.getMessage().rpartition("giving up in ")[2].removesuffix("s")) for r in notes]
    assert all(earlier - later >= adapter.RETRY_NOTE_S for earlier, later in itertools.pairwise(left))


def test_a_call_without_budget_says_nothing_at_info(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """One attempt (a poll): its failure is the caller's to report, no retry note."""
    client, _ = client_with(clock, stall(clock))
    with caplog.at_level("INFO", logger="vault_inject.client.adapter"), pytest.raises(UnreachableError):
        client.lookup_self(budget_s=0)
    assert [r for r in caplog.records if "retrying" in r.getMessage()] == []
