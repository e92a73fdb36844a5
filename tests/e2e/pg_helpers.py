"""A real PostgreSQL 15 for the dynamic-secrets tests, and OpenBao's database engine
pointed at it.

``postgres`` (session fixture): ``initdb`` as the ``postgres`` user in a fresh temp
directory with scram-sha-256 password auth, listening only on 127.0.0.1 on a free port
(unix socket inside the temp directory), stopped by pid at the end of the session.
Queries go through the ``psql`` client (no driver dependency). Modules that use it
are skipped with a clear reason when PostgreSQL 15 is not installed (``.ci/run``
installs it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import closed_port, forbid
from tests.support import Bao, wait_for

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_SKIP_REASON = f"PostgreSQL 15 is not installed ({PG_BIN / 'postgres'} missing; .ci/run installs it)"
START_TIMEOUT_S = 30.0

needs_postgres = pytest.mark.skipif(
    not os.access(PG_BIN / "postgres", os.X_OK) or shutil.which("psql") is None, reason=PG_SKIP_REASON
)

# What OpenBao runs for each new credential: a LOGIN role that expires with the lease.
CREATION_SQL = "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL: where it listens and its superuser's password."""

    port: int
    superuser: str
    password: str
    pid: int

    def psql(
        self,
        sql: str,
        *,
        user: str | None = None,
        password: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``sql`` over TCP as ``user`` (default: the superuser); never raises on failure.

        ``variables`` are psql variables, quoted by psql where the SQL says ``:'name'``."""
        options = [f"--variable={name}={value}" for name, value in (variables or {}).items()]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {
            "PGPASSWORD": (password or "") if user else self.password,
            "PGCONNECT_TIMEOUT": "5",
        }
        return subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                user or self.superuser,
                "-d",
                "postgres",
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                *options,
                "-f",
                "-",
            ],
            input=sql,
            env=env,
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )

    def can_login(self, user: str, password: str) -> bool:
        """True when ``user``/``password`` log in and run ``select 1``."""
        result = self.psql("select 1", user=user, password=password)
        return result.returncode == 0 and result.stdout.strip() == "1"

    def role_exists(self, name: str) -> bool:
        """True while ``name`` is in pg_roles (asked as the superuser)."""
        result = self.psql("select count(*) from pg_roles where rolname = :'name'", variables={"name": name})
        assert result.returncode == 0, result.stderr
        return result.stdout.strip() == "1"

    def roles_like(self, pattern: str) -> list[str]:
        """Role names matching the SQL LIKE ``pattern``."""
        result = self.psql(
            "select rolname from pg_roles where rolname like :'pattern' order by 1",
            variables={"pattern": pattern},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()


def _as_postgres(*argv: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv]


def _init_cluster(workdir: Path, password: str) -> Path:
    shutil.chown(workdir, "postgres", "postgres")
    pwfile = workdir / "pwfile"
    pwfile.write_text(password + "\n")
    shutil.chown(pwfile, "postgres", "postgres")
    pwfile.chmod(0o600)
    data = workdir / "data"
    subprocess.run(
        _as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
            "-E",
            "UTF8",
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    pwfile.unlink()
    return data


def _start_server(workdir: Path, data: Path, port: int) -> subprocess.Popen[bytes]:
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(data),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"port={port}",
                "-c",
                f"unix_socket_directories={workdir}",
                "-c",
                "fsync=off",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # postgres itself (not runuser) is the child, so it can be stopped by its pid
            user="postgres",
            group="postgres",
            extra_groups=[],
            cwd=workdir,
        )


def _stop_server(process: subprocess.Popen[bytes]) -> None:
    # SIGINT is postgres' "fast" shutdown (disconnect clients, stop); the session is
    # ours alone, so anything left after the deadline gets SIGKILL by process group.
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@contextlib.contextmanager
def _running_postgres() -> Iterator[Postgres]:
    """Init, start and (on the way out) stop one cluster in a fresh temp directory."""
    workdir = Path(tempfile.mkdtemp(prefix="inject-pg-"))
    password = forbid("pg-" + secrets.token_hex(12))
    process: subprocess.Popen[bytes] | None = None
    try:
        data = _init_cluster(workdir, password)
        port = closed_port()
        process = _start_server(workdir, data, port)
        started = process
        server = Postgres(port=port, superuser="postgres", password=password, pid=process.pid)
        wait_for(
            lambda: started.poll() is not None or server.psql("select 1").returncode == 0,
            timeout_s=START_TIMEOUT_S,
            what="postgres to accept connections",
            interval_s=0.2,
        )
        assert process.poll() is None, (workdir / "server.log").read_text(errors="replace")
        yield server
    finally:
        if process is not None:
            _stop_server(process)
        shutil.rmtree(workdir, ignore_errors=True)


class _Shared:
    """Each test module that imports ``postgres`` gets its own session fixture from pytest;
    this makes them share one cluster, started on first use and stopped after the last."""

    users = 0
    stack = contextlib.ExitStack()
    server: Postgres | None = None


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL 15 for the session (scram auth, loopback only), stopped by pid."""
    if not os.access(PG_BIN / "postgres", os.X_OK):
        pytest.skip(PG_SKIP_REASON)
    if _Shared.server is None:
        _Shared.server = _Shared.stack.enter_context(_running_postgres())
    _Shared.users += 1
    try:
        yield _Shared.server
    finally:
        _Shared.users -= 1
        if _Shared.users == 0:
            _Shared.server = None
            _Shared.stack.close()


@dataclass(frozen=True)
class DatabaseEngine:
    """A database secrets engine mount configured for ``postgres``."""

    mount: str
    connection: str

    def creds_path(self, role: str) -> str:
        """``<mount>/creds/<role>``, what a template or reference reads."""
        return f"{self.mount}/creds/{role}"


def enable_database(bao: Bao, pg: Postgres) -> DatabaseEngine:
    """Mount a fresh database engine (unique path) and configure it for ``pg``."""
    mount = f"db-{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"sys/mounts/{mount}", json={"type": "database"})
    bao.api(
        "POST",
        f"{mount}/config/pg",
        json={
            "plugin_name": "postgresql-database-plugin",
            "connection_url": (
                "postgresql://{{username}}:{{password}}@127.0.0.1:" + f"{pg.port}/postgres?sslmode=disable"
            ),
            "username": pg.superuser,
            "password": pg.password,
            "allowed_roles": "*",
            "verify_connection": True,
        },
    )
    return DatabaseEngine(mount=mount, connection="pg")


def add_role(bao: Bao, engine: DatabaseEngine, *, default_ttl_s: int, max_ttl_s: int) -> str:
    """A role that creates a LOGIN role with the lease's password and expiry; its name."""
    name = f"r{uuid.uuid4().hex[:7]}"  # usernames carry the role name cut to 8 characters
    bao.api(
        "POST",
        f"{engine.mount}/roles/{name}",
        json={
            "db_name": engine.connection,
            "creation_statements": [CREATION_SQL],
            "default_ttl": f"{default_ttl_s}s",
            "max_ttl": f"{max_ttl_s}s",
        },
    )
    return name
