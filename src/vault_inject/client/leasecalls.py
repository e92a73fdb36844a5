"""The lease calls (``sys/leases/*``) as hvac's API calls: a part of ``VaultClient``, made
through its call boundary (``VaultClient.call``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from ..errors import PermissionDenied, SecretError
from .answers import dict_of, int_or_none


@dataclass(frozen=True)
class LeaseRenewal:
    """What the server granted for a lease renewal."""

    lease_id: str
    ttl_s: int
    renewable: bool


class LeaseCalls:
    """Renew, revoke and look up leases; ``VaultClient`` provides ``hvac`` and ``call``."""

    hvac: Any

    def call(
        self, what: str, budget_s: float | None, since: float | None = None
    ) -> AbstractContextManager[None]:
        """The call boundary (``VaultClient.call``)."""
        raise NotImplementedError

    def renew_lease(self, lease_id: str, increment_s: int, *, budget_s: float | None = None) -> LeaseRenewal:
        """Ask for ``increment_s`` more seconds on a lease; the server may grant less.
        (PUT /sys/leases/renew)"""
        with self.call(f"renewal of lease {lease_id}", budget_s):
            body = dict_of(self.hvac.sys.renew_lease(lease_id, increment=increment_s))
        return LeaseRenewal(
            lease_id=str(body.get("lease_id") or lease_id),
            ttl_s=int(body.get("lease_duration") or 0),
            renewable=bool(body.get("renewable")),
        )

    def revoke_lease(self, lease_id: str, *, budget_s: float | None = None) -> None:
        """Revoke a lease now (the credentials stop working). (PUT /sys/leases/revoke)"""
        with self.call(f"revocation of lease {lease_id}", budget_s):
            self.hvac.sys.revoke_lease(lease_id)

    def lease_alive(self, lease_id: str, *, budget_s: float | None = None) -> bool:
        """True while the server still knows the lease. (PUT /sys/leases/lookup)"""
        try:
            with self.call(f"lookup of lease {lease_id}", budget_s):
                self.hvac.sys.read_lease(lease_id)
        except PermissionDenied:
            return True  # cannot tell; a failing renewal will say so later
        except SecretError:
            return False
        return True

    def lease_ttl(self, lease_id: str, *, budget_s: float | None = None) -> int | None:
        """The seconds a lease has left, or None when the server does not know it (revoked,
        expired) or will not say. (PUT /sys/leases/lookup)"""
        try:
            with self.call(f"lookup of lease {lease_id}", budget_s):
                body = dict_of(self.hvac.sys.read_lease(lease_id))
        except SecretError:
            return None
        ttl = int_or_none(dict_of(body.get("data")).get("ttl"))
        return ttl if ttl is not None and ttl > 0 else None
