"""Taking over what an earlier inject handed over (its state): its token, when the server
still accepts it (lookup-self), and its leases and certificates, a lease only while the
server still knows it (lease lookup, which also says how long it has left). What is taken
over is not asked for again: no login, no new database user, no new certificate.

A start while the server is down (``[state] start_stale``) renders through ``LastKnownGood``,
which answers only from the state's values; ``reconnect`` takes over once the server answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ..errors import AuthError, UnreachableError
from ..log import register_secret, replace_secrets
from ..model import Request, Secret, strings_in
from .auth import Authenticator
from .handover import State, to_take_over, with_remaining
from .vault import Login, VaultClient, server_settings

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)


def resumed(
    config: Config, authenticator: Authenticator, state: State | None
) -> tuple[VaultClient, Login, dict[Request, Secret]]:
    """A client with a working token: the state's when the server still accepts it (inject
    logged in itself), else a new login; and the leases and certificates taken over. The
    client is closed if this fails."""
    client = VaultClient(server_settings(config), "", retry_timeout_s=config.retry_timeout_s)
    try:
        grant = take_token(client, state) if state is not None and authenticator.owns_token else None
        if grant is None:
            grant = authenticator.login(client)
        taken = take_secrets(client, state) if state is not None else {}
    except BaseException:
        client.close()
        raise
    return client, grant, taken


def take_token(client: VaultClient, state: State, *, budget_s: float | None = None) -> Login | None:
    """Put the state's token on ``client`` when the server still accepts it; its TTL. None
    (the client left without a token) when there is none or it is no longer valid.
    UnreachableError when the server does not answer."""
    if not state.token:
        return None
    register_secret(state.token)
    client.set_token(state.token)
    try:
        info = client.lookup_self(budget_s=budget_s)
    except AuthError:
        client.set_token("")
        log.info("the token in the state is no longer valid; logging in")
        return None
    log.info("took over the token in the state (ttl %ds); no new login", info.ttl_s)
    return Login(token=state.token, ttl_s=info.ttl_s, renewable=info.renewable)


def take_secrets(
    client: VaultClient, state: State, *, now: float | None = None, budget_s: float | None = None
) -> dict[Request, Secret]:
    """The state's leases the server still knows (with the time they have left) and its
    certificates that have not ended."""
    taken: dict[Request, Secret] = {}
    for request, saved in to_take_over(state, time.time() if now is None else now).items():
        if not saved.secret.lease_id:
            taken[request] = saved.secret
            continue
        ttl = client.lease_ttl(saved.secret.lease_id, budget_s=budget_s)
        if ttl is None:
            log.info("lease %s in the state has ended; asking for new credentials", saved.secret.lease_id)
            continue
        taken[request] = with_remaining(saved, ttl)
    for request, secret in taken.items():
        replace_secrets(request, strings_in(secret.data))  # masked like values read from the server
    if taken:
        log.info("took over %d lease(s) and certificate(s) from the state", len(taken))
    return taken


class Reusing:
    """A reader that answers from what was taken over, and asks ``client`` for the rest."""

    def __init__(self, client: VaultClient, taken: Mapping[Request, Secret]) -> None:
        self._client = client
        self.taken = dict(taken)

    def fetch(self, request: Request, *, budget_s: float | None = None) -> Secret:
        """The taken-over answer, else the client's."""
        if request in self.taken:
            return self.taken[request]
        return self._client.fetch(request, budget_s=budget_s)

    def read_many(self, requests: Iterable[Request]) -> dict[Request, Secret]:
        """Taken-over answers, and the client's for the rest (one concurrent read)."""
        wanted = list(requests)
        found = {r: self.taken[r] for r in wanted if r in self.taken}
        rest = [r for r in wanted if r not in self.taken]
        if rest:
            found.update(self._client.read_many(rest))
        return found


def reconnect(
    client: VaultClient, authenticator: Authenticator, state: State
) -> tuple[Login, dict[Request, Secret]]:
    """After a start from the state, once the server answers: a token on ``client`` (the
    state's, when inject logged in itself and the server still accepts it, else a login) and
    the state's leases and certificates still alive. UnreachableError while it does not answer."""
    grant = take_token(client, state) if authenticator.owns_token else None
    if grant is None:
        grant = authenticator.login(client)
    return grant, take_secrets(client, state)


class LastKnownGood:
    """A reader that answers only from the state's last-known-good values (a start while the
    server is down); anything else is the start's UnreachableError, so a render that needs
    it fails as it would without a state."""

    def __init__(self, values: Mapping[Request, Secret], cause: UnreachableError) -> None:
        self.values = dict(values)
        self._cause = cause
        for request, secret in self.values.items():
            replace_secrets(request, strings_in(secret.data))  # masked like values read from the server

    def fetch(self, request: Request, *, budget_s: float | None = None) -> Secret:
        """The saved answer; UnreachableError when the state has none."""
        if request in self.values:
            return self.values[request]
        raise UnreachableError(f"{self._cause} (and '{request.label}' is not in the state's usable values)")

    def read_many(self, requests: Iterable[Request]) -> dict[Request, Secret]:
        """Every saved answer asked for (UnreachableError for the first one missing)."""
        return {request: self.fetch(request) for request in requests}
