"""What inject gives back at exit: its token when it logged in itself, else its leases.

A token inject got by logging in (AppRole, JWT, Kubernetes, cert, userpass) is its own:
revoking it (``auth/token/revoke-self``, allowed by the default policy) also revokes every
lease it created, so no ``sys/leases/revoke`` grant is needed. Leases an earlier token of the same
run created (before a re-login) do not go with it: those are revoked one by one, as are
all leases when the token was given by the user, which is never revoked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..errors import InjectError, PermissionDenied, UnreachableError
from .vault import VaultClient

log = logging.getLogger(__name__)


def release(
    client: VaultClient,
    leases: Iterable[str],
    *,
    own_token: bool,
    earlier_leases: Iterable[str] = (),
    budget_s: float,
) -> None:
    """Revoke what this run holds (best effort within ``budget_s`` per request): with
    ``own_token``, the leases of earlier tokens and then the token (its leases with it);
    otherwise every lease in ``leases`` and ``earlier_leases``."""
    leases, earlier = list(leases), list(earlier_leases)
    if not own_token:
        revoke_leases(client, earlier + leases, budget_s=budget_s)
        return
    if not revoke_leases(client, earlier, budget_s=budget_s):
        return  # the server does not answer: the token would not be revoked either
    try:
        client.revoke_self(budget_s=budget_s)
    except PermissionDenied as exc:  # a policy without `default`: the leases one by one
        log.debug("cannot revoke inject's token (%s); revoking its leases instead", exc)
        revoke_leases(client, leases, budget_s=budget_s)
        return
    except InjectError as exc:
        log.warning("could not revoke inject's token (and %d lease(s) with it): %s", len(leases), exc)
        return
    log.info("revoked inject's token%s", f" and its {len(leases)} lease(s)" if leases else "")


def revoke_leases(client: VaultClient, leases: list[str], *, budget_s: float) -> bool:
    """Revoke each lease; False when the server stopped answering (the rest are not asked)."""
    for lease_id in leases:
        try:
            client.revoke_lease(lease_id, budget_s=budget_s)
            log.info("revoked lease %s", lease_id)
        except UnreachableError as exc:
            log.warning("could not revoke %d lease(s): %s", len(leases), exc)
            return False
        except InjectError as exc:
            log.warning("could not revoke lease %s: %s", lease_id, exc)
    return True
