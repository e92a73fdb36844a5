"""Lifecycle's lease bookkeeping on a fake clock: ended leases are forgotten, renewed ones kept,
and revocation at exit stops asking a server that does not answer."""

from __future__ import annotations

from tests.unit.fakeclock import FakeClock
from vault_inject.client.vault import LeaseRenewal
from vault_inject.errors import UnreachableError
from vault_inject.loop.lifecycle import Lifecycle
from vault_inject.model import Secret


class Server:
    """Lease renewals granting what is asked; revocations recorded (or refused when down)."""

    def __init__(self) -> None:
        self.revoked: list[str] = []
        self.down = False

    def renew_lease(self, lease_id: str, increment_s: int, *, budget_s: float | None = None) -> LeaseRenewal:
        return LeaseRenewal(lease_id=lease_id, ttl_s=increment_s, renewable=True)

    def revoke_lease(self, lease_id: str, *, budget_s: float | None = None) -> None:
        if self.down:
            raise UnreachableError("http://127.0.0.1:1 did not answer")
        self.revoked.append(lease_id)


def leased(n: int, ttl_s: int = 60) -> dict[tuple[str, int | None], Secret]:
    """One database credential read with lease ``db/creds/ro/<n>``."""
    secret = Secret(
        path="database/creds/ro", data={}, lease_id=f"db/creds/ro/{n}", lease_duration_s=ttl_s, renewable=True
    )
    return {("database/creds/ro", None): secret}


def lifecycle(server: Server, clock: FakeClock) -> Lifecycle:
    return Lifecycle(server, authenticator=None, grant=None, on_new_token=lambda _: None, clock=clock)  # type: ignore[arg-type]


def test_leases_that_ended_are_forgotten() -> None:
    """A credential re-read every minute for a day leaves only the leases still alive."""
    clock, server = FakeClock(100.0), Server()
    life = lifecycle(server, clock)
    for n in range(1440):
        life.track(leased(n, ttl_s=90))
        clock.now += 60
    assert len(life.issued_leases) == 2


def test_a_renewed_lease_is_kept_past_its_first_ttl() -> None:
    """A lease renewed before it ends is still revoked at exit, after its first TTL passed."""
    clock, server = FakeClock(100.0), Server()
    life = lifecycle(server, clock)
    life.track(leased(1, ttl_s=30))
    clock.now += 25
    life.run_due()  # renewal due at 2/3 of the TTL
    clock.now += 20
    life.track({})
    life.revoke_all()
    assert server.revoked == ["db/creds/ro/1"]


def test_revocation_stops_when_the_server_does_not_answer() -> None:
    """At exit, one unreachable answer ends the revocations (each would wait its timeout)."""
    clock, server = FakeClock(100.0), Server()
    server.down = True
    life = lifecycle(server, clock)
    for n in range(5):
        life.track(leased(n))
    life.revoke_all()
    assert server.revoked == []
    assert life.issued_leases == {}
