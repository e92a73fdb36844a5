"""``Secrets.lease`` with dynamic PostgreSQL credentials (a real PostgreSQL 15 and OpenBao's
database engine, TTLs of seconds): renewed past the TTL, re-read before the max TTL with
the app's connection switching, revoked at close() and at interpreter exit; and the
library's own token renewed past its TTL."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.pg_helpers import DatabaseEngine, Postgres, add_role, enable_database, needs_postgres, postgres
from tests.support import Bao, forbid, inject_env, record_output, secret_value, wait_for
from vault_inject import Secrets, UsageError

__all__ = ["postgres"]  # the session fixture, imported so pytest finds it here

pytestmark = needs_postgres


@pytest.fixture(scope="module")
def database(bao: Bao, postgres: Postgres) -> DatabaseEngine:
    """A database engine mount (unique to this module) configured for the test PostgreSQL."""
    return enable_database(bao, postgres)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every vault_inject record at debug level; added to the session's secrecy guard."""
    caplog.set_level(logging.DEBUG, logger="vault_inject")
    yield caplog
    record_output(caplog.text)


def env_for(bao: Bao, token: str | None = None) -> dict[str, str]:
    """Address and token of the test server, no ~/.vault-token fallback."""
    return {"VAULT_ADDR": bao.address, "VAULT_TOKEN": token or bao.token, "HOME": "/nonexistent-home"}


class App:
    """A stand-in service: holds a 'connection' (the credentials it logged in with) and
    reconnects when told the credentials changed, as a pool would."""

    def __init__(self, pg: Postgres, creds: dict[str, Any]) -> None:
        self.pg = pg
        self.connections: list[str] = []
        self.lock = threading.Lock()
        self.connect(creds)

    def connect(self, creds: dict[str, Any]) -> None:
        """Log in with ``creds`` and make them the current connection."""
        forbid(creds["password"])
        assert self.pg.can_login(creds["username"], creds["password"])
        with self.lock:
            self.connections.append(creds["username"])


def test_lease_renewed_past_ttl_reread_before_max_ttl_and_revoked_on_close(
    bao: Bao, postgres: Postgres, database: DatabaseEngine, logs: pytest.LogCaptureFixture
) -> None:
    """A 4s lease is renewed (in PostgreSQL too), new credentials reach the app's on_change
    before the 8s max TTL, and close() revokes both roles."""
    role = add_role(bao, database, default_ttl_s=4, max_ttl_s=8)
    started_s = time.monotonic()
    secrets = Secrets(environ=env_for(bao))
    try:
        lease = secrets.lease(database.creds_path(role))
        first_id, first_expiry, old = lease.lease_id, lease.expires_at, lease.data
        app = App(postgres, old)
        lease.on_change(app.connect)
        wait_for(lambda: "renewed lease" in logs.text, timeout_s=5, what="a renewal")
        assert lease.expires_at > first_expiry, "renewal moved the lease's end"
        wait_for(lambda: len(app.connections) == 2, timeout_s=12, what="the app to switch credentials")
        switched_after_s = time.monotonic() - started_s
        new_user = app.connections[1]
        assert 4 < switched_after_s < 8, f"switched after {switched_after_s:.1f}s"
        assert new_user != old["username"]
        assert lease.data["username"] == new_user
        assert lease.lease_id != first_id
        assert postgres.can_login(old["username"], old["password"]), "renewal kept the old role valid past 4s"
    finally:
        secrets.close()
    assert not postgres.role_exists(new_user), "close() revoked the current lease"
    wait_for(lambda: not postgres.role_exists(old["username"]), timeout_s=5, what="the first role to go")
    assert "revoked lease" in logs.text


def test_revoke_on_close_false_keeps_the_credentials(
    bao: Bao, postgres: Postgres, database: DatabaseEngine, logs: pytest.LogCaptureFixture
) -> None:
    """With revoke_on_close=False the role outlives close() and can still log in."""
    role = add_role(bao, database, default_ttl_s=30, max_ttl_s=60)
    with Secrets(environ=env_for(bao), revoke_on_close=False) as secrets:
        creds = secrets.lease(database.creds_path(role)).data
    forbid(creds["password"])
    assert postgres.can_login(creds["username"], creds["password"])
    assert "revoked lease" not in logs.text


def test_interpreter_exit_revokes_leases_of_an_unclosed_secrets(
    bao: Bao, postgres: Postgres, database: DatabaseEngine
) -> None:
    """A program that never calls close() still revokes its lease when the interpreter exits."""
    role = add_role(bao, database, default_ttl_s=30, max_ttl_s=60)
    program = textwrap.dedent(
        f"""
        from vault_inject import Secrets
        lease = Secrets().lease({database.creds_path(role)!r})
        print(lease.data["username"])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        env=inject_env(bao),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    record_output(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr
    user = result.stdout.strip()
    assert user.startswith("v-"), result.stdout
    assert not postgres.role_exists(user)


def test_get_of_a_leased_path_is_refused_and_its_lease_revoked(
    bao: Bao, postgres: Postgres, database: DatabaseEngine, logs: pytest.LogCaptureFixture
) -> None:
    """get() on database/creds raises UsageError pointing at lease(), leaving no role behind."""
    role = add_role(bao, database, default_ttl_s=30, max_ttl_s=60)
    with Secrets(environ=env_for(bao)) as secrets, pytest.raises(UsageError, match=r"Secrets\.lease"):
        secrets.get(database.creds_path(role))
    assert postgres.roles_like(f"%-{role[:8]}-%") == []


def test_the_token_is_renewed_past_its_ttl(bao: Bao, prefix: str, logs: pytest.LogCaptureFixture) -> None:
    """A 3s renewable token is renewed in the background, so a first read after 3s still works."""
    bao.policy(
        "rt-reader", f'path "secret/data/{prefix.removeprefix("secret/")}/*" {{ capabilities = ["read"] }}'
    )
    started_s = time.monotonic()  # the token is made after this, so it ends after +3s
    token = forbid(bao.token_with("rt-reader", "default", ttl="3s"))
    value = secret_value()
    bao.kv_put(f"{prefix}/late", key=value)
    with Secrets(environ=env_for(bao, token)) as secrets:
        # the server may report 2s left: renewals at 2/3 of 2s come at 1.3s, 2.7s, 4s
        wait_for(lambda: logs.text.count("renewed token") >= 3, timeout_s=12, what="three token renewals")
        assert time.monotonic() - started_s > 3
        assert secrets.get(f"{prefix}/late", "key") == value


def test_the_runtime_example_switches_database_credentials(
    bao: Bao, postgres: Postgres, database: DatabaseEngine
) -> None:
    """examples/runtime_app.py against a real database engine: connects, reconnects with new
    credentials before the 3s max TTL, and its lease is revoked when it exits."""
    role = add_role(bao, database, default_ttl_s=2, max_ttl_s=3)
    bao.kv_put("secret/infrastructure/postgres", username="app", password=secret_value())
    bao.kv_put("secret/services/api-brain", jwt_secret=secret_value(), encryption_key=secret_value())
    env = inject_env(bao, {"DB_CREDS_PATH": database.creds_path(role), "RUNTIME_APP_SECONDS": "4"})
    example = Path(__file__).resolve().parents[2] / "examples" / "runtime_app.py"
    result = subprocess.run(
        [sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    record_output(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("database: connected as user") >= 2, result.stdout
    assert "closed: leases revoked" in result.stdout
    assert postgres.roles_like(f"%-{role[:8]}-%") == []
