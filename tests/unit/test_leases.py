"""When leases, certificates and the token are renewed or re-read (pure decisions)."""

from __future__ import annotations

import pytest

from vault_inject.client import leases
from vault_inject.config.settings import CliOptions, build_config
from vault_inject.errors import UsageError


def test_renewable_lease_is_renewed_at_two_thirds_of_its_ttl() -> None:
    """A renewable 300s lease read at t=100 is renewed at t=300, asking for 300s again."""
    plan = leases.after_read(now=100, lease_id="db/1", ttl_s=300, renewable=True)
    assert plan is not None
    assert plan.action == "renew"
    assert plan.at == pytest.approx(300)
    assert plan.wanted_ttl_s == 300


def test_non_renewable_lease_is_reread_at_the_threshold() -> None:
    """A non-renewable 100s lease is re-read at 90s by default, or at the configured fraction."""
    default = leases.after_read(now=0, lease_id="x", ttl_s=100, renewable=False)
    custom = leases.after_read(now=0, lease_id="x", ttl_s=100, renewable=False, reread_threshold=0.5)
    assert default is not None
    assert custom is not None
    assert (default.action, default.at) == ("reread", pytest.approx(90))
    assert custom.at == pytest.approx(50)


def test_no_lease_means_no_plan() -> None:
    """A KV secret (no lease id) or a zero TTL needs no timer."""
    assert leases.after_read(now=0, lease_id="", ttl_s=300, renewable=True) is None
    assert leases.after_read(now=0, lease_id="a", ttl_s=0, renewable=True) is None


def test_full_renewal_keeps_renewing() -> None:
    """When the server grants the whole TTL again, the next step is another renewal."""
    plan = leases.after_read(now=0, lease_id="a", ttl_s=300, renewable=True)
    assert plan is not None
    after = leases.after_renewal(plan, now=200, granted_ttl_s=300, renewable=True)
    assert after.action == "renew"
    assert after.at == pytest.approx(400)


def test_capped_renewal_switches_to_reread_before_expiry() -> None:
    """A renewal cut short by the max TTL means new credentials at 2/3 of what is left."""
    plan = leases.after_read(now=0, lease_id="a", ttl_s=300, renewable=True)
    assert plan is not None
    after = leases.after_renewal(plan, now=200, granted_ttl_s=90, renewable=True)
    assert after.action == "reread"
    assert after.at == pytest.approx(260)
    assert after.at < 200 + 90


def test_short_ttls_detect_a_capped_renewal() -> None:
    """With a 4s TTL, a 3s grant is already 'cut short' (the slack shrinks with the TTL)."""
    plan = leases.after_read(now=0, lease_id="a", ttl_s=4, renewable=True)
    assert plan is not None
    assert leases.after_renewal(plan, now=3, granted_ttl_s=3, renewable=True).action == "reread"


def test_certificate_is_reissued_at_two_thirds_of_its_lifetime() -> None:
    """A certificate valid 90s from wall time 1000 is re-issued 60s after issue."""
    plan = leases.for_certificate(now=50, wall_now=1010, issued_at=1000, expires_at=1090)
    assert plan.action == "reread"
    assert plan.at == pytest.approx(50 + 50)


def test_delays_never_go_below_the_minimum() -> None:
    """An already-overdue certificate is re-issued after the minimum delay, not in a busy loop."""
    plan = leases.for_certificate(now=0, wall_now=5000, issued_at=1000, expires_at=1090)
    assert plan.at == pytest.approx(leases.MIN_DELAY_S)


@pytest.mark.parametrize("value", ["0", "1.5", "abc"])
def test_reread_threshold_outside_range_is_rejected(value: str) -> None:
    """INJECT_LEASE_REREAD_THRESHOLD must be a fraction in 0.1..0.99."""
    with pytest.raises(UsageError, match="INJECT_LEASE_REREAD_THRESHOLD"):
        build_config(CliOptions(), {"INJECT_LEASE_REREAD_THRESHOLD": value}, {}, config_path=None, cwd="/")


def test_reread_threshold_from_config_file() -> None:
    """[watch] lease_reread_threshold sets the fraction for non-renewable leases."""
    config = build_config(
        CliOptions(), {}, {"watch": {"lease_reread_threshold": 0.75}}, config_path="/c/inject.toml", cwd="/"
    )
    assert config.reread_threshold == pytest.approx(0.75)
