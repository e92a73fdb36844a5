"""When to renew or re-read what. Pure decisions over a monotonic clock.

* A renewable lease is renewed at ``renew_fraction`` (2/3) of its TTL, asking for its
  original TTL again. When the server grants less than asked (the max TTL is near),
  renewal can no longer extend it: the secret is re-read (new credentials) at
  ``renew_fraction`` of what is left, well before it expires.
* A non-renewable lease is re-read at ``reread_threshold`` (0.9) of its TTL.
* A PKI certificate is re-issued at ``renew_fraction`` of its lifetime.
* inject's own token follows the lease rule; when it cannot be extended, inject logs in again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RENEW_FRACTION = 2 / 3
REREAD_THRESHOLD = 0.9
MIN_DELAY_S = 0.5
GRANT_TOLERANCE_S = 2  # servers round TTLs; "granted less" means more than this less
GRANT_TOLERANCE_FRACTION = 0.1  # ...and at most a tenth of the TTL, so short TTLs re-read in time


PlanAction = Literal["renew", "reread"]


@dataclass(frozen=True)
class Plan:
    """The next action for one lease-like thing: ``renew`` or ``reread`` at ``at``."""

    action: PlanAction
    at: float
    ttl_s: float
    wanted_ttl_s: float
    lease_id: str = ""
    expires_at: float | None = None  # monotonic; when what it plans for ends unless acted on

    def at_time(self, at: float, action: PlanAction | None = None) -> Plan:
        """The same plan moved to ``at`` (optionally with another action)."""
        return Plan(action or self.action, at, self.ttl_s, self.wanted_ttl_s, self.lease_id, self.expires_at)


def after_read(
    *,
    now: float,
    lease_id: str,
    ttl_s: float,
    renewable: bool,
    renew_fraction: float = RENEW_FRACTION,
    reread_threshold: float = REREAD_THRESHOLD,
) -> Plan | None:
    """The plan for a freshly read lease (None when there is no lease to manage)."""
    if not lease_id or ttl_s <= 0:
        return None
    if renewable:
        return Plan("renew", now + _delay(ttl_s * renew_fraction), ttl_s, ttl_s, lease_id, now + ttl_s)
    return Plan("reread", now + _delay(ttl_s * reread_threshold), ttl_s, ttl_s, lease_id, now + ttl_s)


def after_renewal(
    plan: Plan,
    *,
    now: float,
    granted_ttl_s: float,
    renewable: bool,
    renew_fraction: float = RENEW_FRACTION,
) -> Plan:
    """The plan after the server granted ``granted_ttl_s`` on a renewal."""
    tolerance_s = min(GRANT_TOLERANCE_S, plan.wanted_ttl_s * GRANT_TOLERANCE_FRACTION)
    extended = granted_ttl_s + tolerance_s >= plan.wanted_ttl_s
    action: PlanAction = "renew" if renewable and extended else "reread"
    at = now + _delay(granted_ttl_s * renew_fraction)
    return Plan(action, at, granted_ttl_s, plan.wanted_ttl_s, plan.lease_id, now + granted_ttl_s)


def for_certificate(
    *,
    now: float,
    wall_now: float,
    issued_at: float,
    expires_at: float,
    renew_fraction: float = RENEW_FRACTION,
) -> Plan:
    """Re-issue a certificate at ``renew_fraction`` of its lifetime."""
    lifetime = max(0.0, expires_at - issued_at)
    due_in = issued_at + lifetime * renew_fraction - wall_now
    return Plan("reread", now + _delay(due_in), lifetime, lifetime, expires_at=now + expires_at - wall_now)


def _delay(seconds: float) -> float:
    return max(MIN_DELAY_S, seconds)
