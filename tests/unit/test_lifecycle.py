"""Lifecycle's lease bookkeeping on a fake clock: ended leases are forgotten, renewed ones kept,
and revocation at exit stops asking a server that does not answer."""

from __future__ import annotations

from tests.unit.fakeclock import FakeClock
from vault_inject.client.vault import LeaseRenewal, Login
from vault_inject.errors import PermissionDenied, UnreachableError
from vault_inject.loop.lifecycle import Lifecycle
from vault_inject.model import Secret


class Server:
    """Lease renewals granting what is asked; revocations recorded (or refused when down)."""

    def __init__(self) -> None:
        self.revoked: list[str] = []
        self.down = False
        self.token = "t0"
        self.may_revoke_self = True

    def renew_lease(self, lease_id: str, increment_s: int, *, budget_s: float | None = None) -> LeaseRenewal:
        return LeaseRenewal(lease_id=lease_id, ttl_s=increment_s, renewable=True)

    def revoke_lease(self, lease_id: str, *, budget_s: float | None = None) -> None:
        if self.down:
            raise UnreachableError("http://127.0.0.1:1 did not answer")
        self.revoked.append(lease_id)

    def revoke_self(self, *, budget_s: float | None = None) -> None:
        if not self.may_revoke_self:
            raise PermissionDenied("permission denied reading inject's token")
        self.revoked.append(f"token {self.token}")

    def lease_alive(self, lease_id: str, *, budget_s: float | None = None) -> bool:
        return True


class OwnLogin:
    """An AppRole-like login: inject's token is its own."""

    can_relogin = True
    owns_token = True

    def login(self, client: Server) -> Login:
        client.token = f"t{int(client.token[1:]) + 1}"
        return Login(token=client.token, ttl_s=3600, renewable=True)


def leased(n: int, ttl_s: int = 60) -> dict[tuple[str, int | None], Secret]:
    """One database credential read with lease ``db/creds/ro/<n>``."""
    secret = Secret(
        path="database/creds/ro", data={}, lease_id=f"db/creds/ro/{n}", lease_duration_s=ttl_s, renewable=True
    )
    return {("database/creds/ro", None): secret}


def lifecycle(server: Server, clock: FakeClock, authenticator: OwnLogin | None = None) -> Lifecycle:
    return Lifecycle(
        server,  # type: ignore[arg-type]
        authenticator=authenticator,  # type: ignore[arg-type]
        grant=None,
        on_new_token=lambda _: None,
        clock=clock,
    )


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


def test_a_token_inject_logged_in_for_is_revoked_with_its_leases() -> None:
    """Logged in itself: exit revokes the token (revoke-self takes its leases along), and
    asks for no sys/leases/revoke."""
    clock, server = FakeClock(100.0), Server()
    life = lifecycle(server, clock, OwnLogin())
    for n in range(3):
        life.track(leased(n))
    life.revoke_all()
    assert server.revoked == ["token t0"]
    assert life.issued_leases == {}


def test_leases_of_an_earlier_token_are_revoked_one_by_one_before_the_token() -> None:
    """After a re-login, the old token's leases do not go with the new token: each is revoked."""
    clock, server = FakeClock(100.0), Server()
    life = lifecycle(server, clock, OwnLogin())
    life.track(leased(1))
    assert life.relogin(reason="test")
    life.track({("database/creds/rw", None): leased(2)[("database/creds/ro", None)]})
    life.revoke_all()
    assert server.revoked == ["db/creds/ro/1", "token t1"]


def test_a_policy_without_revoke_self_falls_back_to_each_lease() -> None:
    """A token whose policy lacks the default's revoke-self: its leases are revoked one by one."""
    clock, server = FakeClock(100.0), Server()
    server.may_revoke_self = False
    life = lifecycle(server, clock, OwnLogin())
    life.track(leased(1))
    life.revoke_all()
    assert server.revoked == ["db/creds/ro/1"]


def test_a_token_the_user_gave_is_never_revoked() -> None:
    """No authenticator of inject's own (a given token): only leases are revoked."""
    clock, server = FakeClock(100.0), Server()
    life = lifecycle(server, clock)
    life.track(leased(1))
    life.revoke_all()
    assert server.revoked == ["db/creds/ro/1"]
