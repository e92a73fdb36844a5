"""Dynamic database credentials end to end: a real PostgreSQL 15, OpenBao's database
engine with TTLs of seconds, and the real inject. One lease feeds both keys; the
credentials log in; the lease is renewed, replaced before its max TTL (file rewritten,
child restarted) and revoked when inject exits (unless told to keep it)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import write
from tests.e2e.pg_helpers import DatabaseEngine, Postgres, add_role, enable_database, needs_postgres, postgres
from tests.e2e.supervise_helpers import SignalChild
from tests.support import Bao, forbid, inject_argv, inject_env, supervise, wait_for

__all__ = ["postgres"]  # the session fixture, imported so pytest finds it here

pytestmark = needs_postgres

CREDS_TEMPLATE = "{% set c = secret('PATH') %}{{ c.username }}\n{{ c.password }}\n"


@pytest.fixture(scope="module")
def database(bao: Bao, postgres: Postgres) -> DatabaseEngine:
    """A database engine mount (unique to this module) configured for the test PostgreSQL."""
    return enable_database(bao, postgres)


def _creds_file(path: Path) -> tuple[str, str] | None:
    """(username, password) from a rendered creds file, or None before it exists."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    user, password = lines
    forbid(password)
    return user, password


def _env_pair(start: dict[str, dict[str, str]]) -> tuple[str, str]:
    user, password = start["env"]["DB_USER"], start["env"]["DB_PASS"]
    forbid(password)
    return user, password


def _leases(bao: Bao, engine: DatabaseEngine, role: str) -> list[str]:
    """Ids (suffixes) of the live leases of ``role``, listed as the root token."""
    response = bao.session.request(
        "LIST",
        f"{bao.address}/v1/sys/leases/lookup/{engine.creds_path(role)}",
        headers={"X-Vault-Token": bao.token},
        timeout=10,
    )
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    return list(response.json()["data"]["keys"])


def _db_argv(engine: DatabaseEngine, role: str, *extra: str) -> list[str]:
    path = engine.creds_path(role)
    return inject_argv(
        "-v",
        "-t",
        "db.j2:db.txt",
        "-e",
        f"DB_USER=vault:{path}#username",
        "-e",
        f"DB_PASS=vault:{path}#password",
        *extra,
    )


def test_one_lease_feeds_file_and_env_and_credentials_log_in(
    bao: Bao, postgres: Postgres, database: DatabaseEngine, tmp_path: Path
) -> None:
    """Template and `#username`/`#password` refs of one dynamic path share one lease, and those credentials log in."""
    role = add_role(bao, database, default_ttl_s=30, max_ttl_s=60)
    write(tmp_path / "db.j2", CREDS_TEMPLATE.replace("PATH", database.creds_path(role)))
    child = SignalChild.create(tmp_path)
    argv = [*_db_argv(database, role), "--", *child.argv("DB_USER", "DB_PASS")]
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids):
        env_user, env_password = _env_pair(child.wait_starts(1)[0])
        file_creds = _creds_file(tmp_path / "db.txt")
        assert file_creds == (env_user, env_password)
        assert len(_leases(bao, database, role)) == 1
        assert postgres.can_login(env_user, env_password)
        assert not postgres.can_login(env_user, env_password + "x"), "scram auth must check the password"


def test_lease_renewed_then_replaced_before_max_ttl_and_revoked_on_exit(
    bao: Bao, postgres: Postgres, database: DatabaseEngine, tmp_path: Path
) -> None:
    """A 4s lease is renewed (in PostgreSQL too), new credentials arrive before its 8s max TTL (file + restart), and exit revokes both."""
    role = add_role(bao, database, default_ttl_s=4, max_ttl_s=8)
    write(tmp_path / "db.j2", CREDS_TEMPLATE.replace("PATH", database.creds_path(role)))
    child = SignalChild.create(tmp_path)
    argv = [*_db_argv(database, role), "--", *child.argv("DB_USER", "DB_PASS")]
    started_s = time.monotonic()  # the first lease is read after this, so it ends after +8s
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        old_user, old_password = _env_pair(child.wait_starts(1)[0])
        assert postgres.can_login(old_user, old_password)
        inject.wait_log("renewed lease", timeout_s=5)

        second = child.wait_starts(2, timeout_s=12)[1]
        replaced_after_s = time.monotonic() - started_s
        new_user, new_password = _env_pair(second)
        assert new_user != old_user
        assert _creds_file(tmp_path / "db.txt") == (new_user, new_password)
        assert replaced_after_s < 8, f"new credentials only after {replaced_after_s:.1f}s"
        assert postgres.can_login(new_user, new_password)
        assert replaced_after_s > 4
        assert postgres.can_login(old_user, old_password), "renewal moved VALID UNTIL past the first 4s"
        assert child.signals(child.pids()[0]) == ["TERM"]

        assert inject.stop() == 0
    assert not postgres.role_exists(new_user), "the lease was revoked when inject exited"
    wait_for(lambda: not postgres.role_exists(old_user), timeout_s=5, what="the first role to be gone")
    assert inject.lines("revoked lease")


def test_revoke_on_exit_false_keeps_credentials_until_their_ttl(
    bao: Bao, postgres: Postgres, database: DatabaseEngine, tmp_path: Path
) -> None:
    """With `[child] revoke_on_exit = false` the role outlives inject and disappears only when its TTL ends."""
    role = add_role(bao, database, default_ttl_s=3, max_ttl_s=30)
    write(tmp_path / "db.j2", CREDS_TEMPLATE.replace("PATH", database.creds_path(role)))
    write(tmp_path / "inject.toml", "[child]\nrevoke_on_exit = false\n")
    child = SignalChild.create(tmp_path)
    argv = [*_db_argv(database, role, "-c", "inject.toml"), "--", *child.argv("DB_USER", "DB_PASS")]
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        user, password = _env_pair(child.wait_starts(1)[0])
        assert inject.stop() == 0
        stopped_s = time.monotonic()
    assert postgres.role_exists(user)
    assert postgres.can_login(user, password)
    assert not inject.lines("revoked lease")
    wait_for(lambda: not postgres.role_exists(user), timeout_s=8, what="the role to expire", interval_s=0.2)
    assert time.monotonic() - stopped_s > 0.5


def test_ambient_username_password_refs_share_one_lease(
    bao: Bao, postgres: Postgres, database: DatabaseEngine, tmp_path: Path
) -> None:
    """`DB_USER=vault:…#username` and `DB_PASS=vault:…#password` in inject's own environment resolve from one lease to a pair that logs in."""
    role = add_role(bao, database, default_ttl_s=30, max_ttl_s=60)
    path = database.creds_path(role)
    child = SignalChild.create(tmp_path)
    env = inject_env(bao, {"DB_USER": f"vault:{path}#username", "DB_PASS": f"vault:{path}#password"})
    argv = [*inject_argv(), "--", *child.argv("DB_USER", "DB_PASS")]
    with supervise(argv, env=env, cwd=tmp_path, stray=child.pids):
        user, password = _env_pair(child.wait_starts(1)[0])
        assert len(_leases(bao, database, role)) == 1
        assert postgres.roles_like(f"%-{role}-%") == [user], "one credential was created, not two"
        assert postgres.can_login(user, password)
