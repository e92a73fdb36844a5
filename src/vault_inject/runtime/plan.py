"""When the runtime library (``Secrets``) polls, renews and re-reads. Pure, over a clock.

One ``Schedule`` holds every timer of one ``Secrets``:

* each watched KV path is polled once per ``poll_interval_s``, jittered *earlier* by up
  to ``POLL_JITTER_FRACTION`` (many services started together spread out, and a new
  version is still seen within the interval, never later);
* each lease follows ``leases`` exactly as inject does (renew at 2/3 of the TTL, re-read
  when renewal stops extending it, certificates re-issued at 2/3 of their lifetime);
* the token follows the lease rule; when it cannot be extended, the owner logs in again.

Failed actions come back after a capped backoff. The background thread asks ``due_*``
what to do now and ``wait_s`` how long to sleep; it never decides anything itself.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from ..client import Plan, backoff, leases
from ..model import Secret

POLL_JITTER_FRACTION = 0.1
RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 30.0
MAX_WAIT_S = 60.0  # the thread wakes at least this often even with nothing due
TOKEN_KEY = "token"  # noqa: S105 - the schedule key of the token, not a token

_RANDOM = random.Random()  # noqa: S311 - timing jitter, not a secret
_K = TypeVar("_K", bound=Hashable)


def next_poll_at(
    *,
    now: float,
    interval_s: float,
    jitter_fraction: float = POLL_JITTER_FRACTION,
    rand: Callable[[], float] = _RANDOM.random,
) -> float:
    """When to poll a path next: within ``interval_s`` from ``now``, up to a fraction earlier."""
    return now + interval_s * (1 - jitter_fraction * rand())


def is_new(old: Secret | None, new: Secret) -> bool:
    """True when ``new`` is another version than ``old`` (KV v2 version, else the data)."""
    if old is None:
        return True
    if old.version is not None and new.version is not None:
        return new.version != old.version
    return dict(new.data) != dict(old.data)


def lease_plan(secret: Secret, *, now: float, wall_now: float, reread_threshold: float) -> Plan | None:
    """The first plan for a freshly read leased secret or certificate (None: nothing to manage)."""
    if secret.expires_at and secret.issued_at:
        return leases.for_certificate(
            now=now, wall_now=wall_now, issued_at=secret.issued_at, expires_at=secret.expires_at
        )
    return leases.after_read(
        now=now,
        lease_id=secret.lease_id,
        ttl_s=secret.lease_duration_s,
        renewable=secret.renewable,
        reread_threshold=reread_threshold,
    )


def token_plan(*, ttl_s: float, renewable: bool, now: float) -> Plan | None:
    """The plan for a token just obtained (None: it does not expire)."""
    return leases.after_read(now=now, lease_id=TOKEN_KEY, ttl_s=ttl_s, renewable=renewable)


def retry_at(*, now: float, attempt: int) -> float:
    """When to try a failed poll, renewal or re-read again (attempt is 1-based)."""
    return now + backoff.delay_s(attempt, initial_s=RETRY_INITIAL_S, max_s=RETRY_MAX_S)


@dataclass
class Schedule:
    """Every timer of one ``Secrets``: poll times per path, plans per lease and the token."""

    poll_interval_s: float
    rand: Callable[[], float] = _RANDOM.random
    polls: dict[str, float] = field(default_factory=dict)
    plans: dict[Hashable, Plan] = field(default_factory=dict)
    failures: dict[Hashable, int] = field(default_factory=dict)

    # --- polls --------------------------------------------------------------------

    def watch(self, path: str, *, now: float) -> None:
        """Start polling ``path`` (a no-op when it is already polled)."""
        if path not in self.polls:
            self.polled(path, now=now)

    def polled(self, path: str, *, now: float) -> None:
        """``path`` was just polled successfully: the next poll is one interval away."""
        self.failures.pop(("poll", path), None)
        self.polls[path] = next_poll_at(now=now, interval_s=self.poll_interval_s, rand=self.rand)

    def poll_failed(self, path: str, *, now: float) -> None:
        """A poll failed: try again after a backoff, but no later than one interval."""
        attempt = self.failures.get(("poll", path), 0) + 1
        self.failures[("poll", path)] = attempt
        self.polls[path] = min(retry_at(now=now, attempt=attempt), now + self.poll_interval_s)

    def due_polls(self, *, now: float) -> list[str]:
        """The paths whose poll is due at ``now``, earliest first."""
        return _due(self.polls, now)

    # --- leases and the token -----------------------------------------------------

    def plan(self, key: Hashable, plan: Plan | None) -> None:
        """Set (or with None, drop) the plan of a lease or of the token."""
        self.failures.pop(key, None)
        if plan is None:
            self.plans.pop(key, None)
        else:
            self.plans[key] = plan

    def renewed(self, key: Hashable, *, now: float, granted_ttl_s: float, renewable: bool) -> Plan:
        """The server granted ``granted_ttl_s`` on a renewal; return the new plan."""
        plan = leases.after_renewal(
            self.plans[key], now=now, granted_ttl_s=granted_ttl_s, renewable=renewable
        )
        self.plan(key, plan)
        return plan

    def reread_now(self, key: Hashable, *, now: float) -> None:
        """Renewal was refused: read the secret again (new credentials) now."""
        self.plans[key] = self.plans[key].at_time(now, "reread")

    def reread_by(self, key: Hashable, *, at: float) -> None:
        """Read again no later than ``at`` (the token its lease belongs to ends then)."""
        plan = self.plans[key]
        self.plans[key] = plan.at_time(min(at, plan.at), "reread")

    def action_failed(self, key: Hashable, *, now: float) -> None:
        """A renewal or re-read could not be done now (server down): same action after a backoff."""
        attempt = self.failures.get(key, 0) + 1
        self.failures[key] = attempt
        self.plans[key] = self.plans[key].at_time(retry_at(now=now, attempt=attempt))

    def due_plans(self, *, now: float) -> list[tuple[Hashable, Plan]]:
        """Every lease or token plan due at ``now``, earliest first (the token before leases)."""
        keys = _due({k: p.at for k, p in self.plans.items()}, now)
        keys.sort(key=lambda k: k != TOKEN_KEY)
        return [(key, self.plans[key]) for key in keys]

    # --- sleeping -----------------------------------------------------------------

    def next_at(self) -> float | None:
        """When the next poll, renewal or re-read is due (None: nothing scheduled)."""
        times = [*self.polls.values(), *(plan.at for plan in self.plans.values())]
        return min(times) if times else None

    def wait_s(self, *, now: float, max_wait_s: float = MAX_WAIT_S) -> float:
        """How long the thread may sleep before something is due (0: act now)."""
        next_at = self.next_at()
        if next_at is None:
            return max_wait_s
        return min(max_wait_s, max(0.0, next_at - now))


def _due(times: Mapping[_K, float], now: float) -> list[_K]:
    return sorted((key for key, at in times.items() if at <= now), key=lambda key: times[key])
