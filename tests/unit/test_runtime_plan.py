"""The library's timers (runtime_plan): when each path is polled, which leases are due,
what a failure or a renewal does to the plan, how long the thread sleeps. Fake clock:
every ``now`` is a number the test chooses."""

from __future__ import annotations

import pytest

from tests.unit.architecture import transitive_third_party
from vault_inject.client.leases import Plan
from vault_inject.model import Secret
from vault_inject.runtime import plan as runtime_plan
from vault_inject.runtime.plan import TOKEN_KEY, Schedule, is_new, lease_plan, next_poll_at


def test_runtime_plan_is_pure() -> None:
    """The scheduling module loads no HTTP client, CLI, watcher or subprocess, even indirectly."""
    assert (
        transitive_third_party("runtime.plan")
        & {"hvac", "requests", "click", "watchfiles", "subprocess", "psutil"}
        == set()
    )


def test_poll_is_jittered_earlier_never_later() -> None:
    """The next poll is between 90% and 100% of the interval away: a new version is seen in time."""
    assert next_poll_at(now=100, interval_s=60, rand=lambda: 0.0) == 160
    assert next_poll_at(now=100, interval_s=60, rand=lambda: 1.0) == pytest.approx(154)
    assert next_poll_at(now=100, interval_s=60, rand=lambda: 0.5) == pytest.approx(157)


def test_a_watched_path_is_due_once_per_interval() -> None:
    """A path watched at t=0 is due at t=30 (not before), and once polled, 30s later again."""
    schedule = Schedule(30, rand=lambda: 0.0)
    schedule.watch("secret/a", now=0)
    assert schedule.due_polls(now=29.9) == []
    assert schedule.due_polls(now=30) == ["secret/a"]
    schedule.polled("secret/a", now=30.2)
    assert schedule.due_polls(now=59) == []
    assert schedule.due_polls(now=60.2) == ["secret/a"]


def test_watching_again_does_not_postpone_the_poll() -> None:
    """A second get() of a watched path leaves its poll time alone (no starvation by busy callers)."""
    schedule = Schedule(30, rand=lambda: 0.0)
    schedule.watch("secret/a", now=0)
    schedule.watch("secret/a", now=20)
    assert schedule.polls["secret/a"] == 30


def test_due_polls_are_earliest_first() -> None:
    """Several due paths come back in the order they fell due."""
    schedule = Schedule(10, rand=lambda: 0.0)
    schedule.watch("secret/late", now=5)
    schedule.watch("secret/early", now=0)
    assert schedule.due_polls(now=100) == ["secret/early", "secret/late"]


def test_a_failed_poll_backs_off_but_never_past_the_interval() -> None:
    """Failed polls retry after 1s, then longer, capped at one interval."""
    schedule = Schedule(5, rand=lambda: 0.0)
    schedule.watch("secret/a", now=0)
    schedule.poll_failed("secret/a", now=5)
    assert 6 <= schedule.polls["secret/a"] <= 6.25
    for _ in range(10):
        schedule.poll_failed("secret/a", now=5)
    assert schedule.polls["secret/a"] == 10
    schedule.polled("secret/a", now=11)
    assert ("poll", "secret/a") not in schedule.failures


def test_a_renewable_lease_is_due_for_renewal_at_two_thirds() -> None:
    """A renewable 30s lease read at t=0 is renewed at t=20; a granted full TTL renews again at 2/3."""
    schedule = Schedule(60)
    secret = Secret(path="db/creds/ro", data={}, lease_id="L1", lease_duration_s=30, renewable=True)
    schedule.plan("lease", lease_plan(secret, now=0, wall_now=1000, reread_threshold=0.9))
    assert schedule.due_plans(now=19) == []
    [(key, plan)] = schedule.due_plans(now=20)
    assert (key, plan.action, plan.lease_id) == ("lease", "renew", "L1")
    renewed = schedule.renewed("lease", now=20, granted_ttl_s=30, renewable=True)
    assert (renewed.action, renewed.at) == ("renew", pytest.approx(40))


def test_renewal_that_stops_extending_turns_into_a_reread() -> None:
    """When the server grants less than asked (max TTL near), the lease is re-read at 2/3 of what is left."""
    schedule = Schedule(60)
    secret = Secret(path="db/creds/ro", data={}, lease_id="L1", lease_duration_s=30, renewable=True)
    schedule.plan("lease", lease_plan(secret, now=0, wall_now=0, reread_threshold=0.9))
    plan = schedule.renewed("lease", now=20, granted_ttl_s=9, renewable=True)
    assert (plan.action, plan.at) == ("reread", pytest.approx(26))


def test_refused_renewal_rereads_now_and_outage_retries_later() -> None:
    """A refused renewal re-reads at once; an unreachable server keeps the action, after a backoff."""
    schedule = Schedule(60)
    schedule.plan("lease", Plan("renew", 20, 30, 30, "L1"))
    schedule.action_failed("lease", now=20)
    plan = schedule.plans["lease"]
    assert plan.action == "renew"
    assert 21 <= plan.at <= 21.25
    schedule.reread_now("lease", now=22)
    assert (schedule.plans["lease"].action, schedule.plans["lease"].at) == ("reread", 22)


def test_non_renewable_lease_and_certificate_plans() -> None:
    """A non-renewable lease is re-read at the threshold; a certificate re-issued at 2/3 of its life."""
    lease = Secret(path="aws/creds/x", data={}, lease_id="L", lease_duration_s=100, renewable=False)
    cert = Secret(path="pki/issue/web", data={}, expires_at=1300, issued_at=1000)
    lease_at = lease_plan(lease, now=0, wall_now=1000, reread_threshold=0.5)
    cert_at = lease_plan(cert, now=0, wall_now=1000, reread_threshold=0.9)
    assert lease_at is not None
    assert cert_at is not None
    assert (lease_at.action, lease_at.at) == ("reread", 50)
    assert (cert_at.action, cert_at.at) == ("reread", pytest.approx(200))
    assert lease_plan(Secret(path="secret/x", data={}), now=0, wall_now=0, reread_threshold=0.9) is None


def test_token_plan_comes_first_and_a_root_token_has_none() -> None:
    """The token is acted on before leases due at the same time; a token that never expires has no plan."""
    schedule = Schedule(60)
    schedule.plan("lease", Plan("renew", 10, 30, 30, "L1"))
    schedule.plan(TOKEN_KEY, runtime_plan.token_plan(ttl_s=15, renewable=True, now=0))
    assert [key for key, _ in schedule.due_plans(now=10)] == [TOKEN_KEY, "lease"]
    assert runtime_plan.token_plan(ttl_s=0, renewable=False, now=0) is None


def test_leases_of_an_old_token_are_reread_before_it_ends() -> None:
    """After a re-login, a lease is re-read by the given time, or keeps its earlier plan."""
    schedule = Schedule(60)
    schedule.plan("late", Plan("renew", 100, 150, 150, "L1"))
    schedule.plan("early", Plan("renew", 5, 150, 150, "L2"))
    schedule.reread_by("late", at=20)
    schedule.reread_by("early", at=20)
    assert (schedule.plans["late"].action, schedule.plans["late"].at) == ("reread", 20)
    assert schedule.plans["early"].at == 5


def test_the_thread_sleeps_until_the_next_thing_is_due() -> None:
    """wait_s is the time to the earliest poll or plan, zero when overdue, capped when idle."""
    schedule = Schedule(30, rand=lambda: 0.0)
    assert schedule.wait_s(now=0) == runtime_plan.MAX_WAIT_S
    schedule.watch("secret/a", now=0)
    schedule.plan("lease", Plan("renew", 12, 30, 30, "L1"))
    assert schedule.wait_s(now=2) == 10
    assert schedule.wait_s(now=13) == 0
    schedule.plan("lease", None)
    assert schedule.wait_s(now=13) == 17


def test_a_new_version_is_told_apart_by_version_else_by_data() -> None:
    """KV v2 reads differ by version number; KV v1 (no version) reads differ by their data."""
    v1 = Secret(path="p", data={"k": "a"}, version=1)
    assert is_new(None, v1)
    assert not is_new(v1, Secret(path="p", data={"k": "a"}, version=1))
    assert is_new(v1, Secret(path="p", data={"k": "a"}, version=2))
    plain = Secret(path="p", data={"k": "a"})
    assert not is_new(plain, Secret(path="p", data={"k": "a"}))
    assert is_new(plain, Secret(path="p", data={"k": "b"}))
