"""The encrypted state end to end (``[state]``): an init container's `inject render
--hand-over` and the sidecar's `inject watch` on one state directory issue one set of
database credentials (one role in pg_roles), one certificate and one login; a wrong key or
a changed file is one line and ignored; a writer killed with SIGKILL mid-write never leaves
a state that fails to decrypt."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import write
from tests.e2e.pg_helpers import DatabaseEngine, Postgres, add_role, enable_database, needs_postgres, postgres
from tests.support import Bao, forbid, inject_env, run_inject, secret_value, supervise, wait_for

__all__ = ["postgres"]  # the session fixture, imported so pytest finds it here

KEY = bytes(range(32))  # a raw 32-byte key (tests only)


def _unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def pki_mount(bao: Bao) -> str:
    """A pki mount with a root CA and a role `web` for *.localhost."""
    mount = _unique("pki")
    bao.api("POST", f"sys/mounts/{mount}", json={"type": "pki", "config": {"max_lease_ttl": "8760h"}})
    bao.api("POST", f"{mount}/root/generate/internal", json={"common_name": "state e2e", "ttl": "8760h"})
    bao.api(
        "POST",
        f"{mount}/roles/web",
        json={"allowed_domains": ["localhost"], "allow_subdomains": True, "max_ttl": "1h", "key_type": "ec"},
    )
    return mount


def _approle_dir(bao: Bao, workdir: Path, policy_hcl: str, *config: str) -> None:
    """An approle login (role_id and secret_id files) and an inject.toml with a state dir in ``workdir``."""
    mount, role, policy = _unique("approle"), _unique("app"), _unique("pol")
    bao.api("POST", f"sys/auth/{mount}", json={"type": "approle"})
    bao.policy(policy, policy_hcl)
    base = f"auth/{mount}/role/{role}"
    bao.api("POST", base, json={"token_policies": [policy], "token_ttl": "1h", "token_max_ttl": "2h"})
    role_id = bao.api("GET", f"{base}/role-id").json()["data"]["role_id"]
    secret_id = bao.api("POST", f"{base}/secret-id").json()["data"]["secret_id"]
    write(workdir / "role_id", forbid(role_id) + "\n")
    write(workdir / "secret_id", forbid(secret_id) + "\n")
    (workdir / "state.key").write_bytes(KEY)
    lines = [
        "[auth]",
        'method = "approle"',
        f'mount = "{mount}"',
        'role_id_file = "role_id"',
        'secret_id_file = "secret_id"',
        "[state]",
        'dir = "state"',
        'key_file = "state.key"',
        *config,
    ]
    write(workdir / "inject.toml", "\n".join(lines) + "\n")


def _accessors(bao: Bao) -> set[str]:
    """Every token accessor the server knows (a login adds one)."""
    response = bao.session.request(
        "LIST", f"{bao.address}/v1/auth/token/accessors", headers={"X-Vault-Token": bao.token}, timeout=10
    )
    assert response.status_code == 200, response.text
    return set(response.json()["data"]["keys"])


def _serial(cert_pem: str) -> str:
    return subprocess.run(
        ["openssl", "x509", "-noout", "-serial"], input=cert_pem, capture_output=True, text=True, check=True
    ).stdout.strip()


@needs_postgres
def test_render_hand_over_then_watch_one_role_one_certificate_one_login(
    bao: Bao, postgres: Postgres, pki_mount: str, tmp_path: Path
) -> None:
    """`inject render --hand-over` then `inject watch` on one state: one PostgreSQL role, the same certificate serial, no second login; the watch's exit revokes the role."""
    database: DatabaseEngine = enable_database(bao, postgres)
    role = add_role(bao, database, default_ttl_s=300, max_ttl_s=600)
    creds = database.creds_path(role)
    _approle_dir(
        bao,
        tmp_path,
        f'path "{creds}" {{ capabilities = ["read"] }}\n'
        f'path "{pki_mount}/issue/web" {{ capabilities = ["update"] }}\n',
    )
    write(
        tmp_path / "app.j2",
        f"{{% set c = secret('{creds}') %}}{{{{ c.username }}}}\n{{{{ c.password }}}}\n"
        f"{{% set t = pki_cert('{pki_mount}/web', common_name='app.localhost', ttl='10m') %}}"
        "{{ t.certificate }}\n",
    )
    env = inject_env(bao, token="unused-placeholder-token")
    before = _accessors(bao)

    init = run_inject(
        "render", "--hand-over", "-c", "inject.toml", "-t", "app.j2:app.txt", env=env, cwd=tmp_path
    )
    assert init.returncode == 0, init.stderr
    user, password, *cert = (tmp_path / "app.txt").read_text().splitlines()
    forbid(password)
    serial = _serial("\n".join(cert))
    after_init = _accessors(bao)
    assert len(after_init - before) == 1, "the init container logged in once"
    state_file = tmp_path / "state" / "inject.state"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert password.encode() not in state_file.read_bytes(), "the state is encrypted"

    argv = [sys.executable, "-m", "vault_inject", "watch", "-c", "inject.toml", "-t", "app.j2:app.txt"]
    with supervise(argv, env=env, cwd=tmp_path, ready=None) as watch:
        watch.wait_log("took over the token", timeout_s=20)
        watch.wait_log("took over 2 lease(s) and certificate(s)", timeout_s=20)
        assert not watch.lines("logged in with approle")
        assert _accessors(bao) == after_init, "the sidecar did not log in again"
        assert postgres.roles_like(f"%{role}%") == [user], "one database role for the pod"
        new_user, _, *new_cert = (tmp_path / "app.txt").read_text().splitlines()
        assert new_user == user
        assert _serial("\n".join(new_cert)) == serial
        assert postgres.can_login(user, password)
        assert watch.stop() == 0
    wait_for(lambda: not postgres.role_exists(user), timeout_s=10, what="the role to be revoked at exit")


def _kv_dir(bao: Bao, prefix: str, workdir: Path, key: bytes) -> str:
    """A KV secret, a template reading it and a config with a state dir (token auth); the value."""
    value = secret_value()
    bao.kv_put(f"{prefix}/app", password=value)
    write(workdir / "a.j2", f"{{{{ secret('{prefix}/app').password }}}}\n")
    (workdir / "state.key").write_bytes(key)
    write(workdir / "inject.toml", '[state]\ndir = "state"\nkey_file = "state.key"\n')
    return value


def _render(bao: Bao, workdir: Path) -> subprocess.CompletedProcess[str]:
    return run_inject("render", "-c", "inject.toml", "-t", "a.j2:a.txt", env=inject_env(bao), cwd=workdir)


def test_wrong_key_and_changed_file_are_one_line_and_ignored(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A state sealed with another key, or changed by one bit, is named in one warning, ignored, and replaced by a good one."""
    value = _kv_dir(bao, prefix, tmp_path, KEY)
    assert _render(bao, tmp_path).returncode == 0
    state_file = tmp_path / "state" / "inject.state"
    assert value.encode() not in state_file.read_bytes()

    (tmp_path / "state.key").write_bytes(b"another passphrase\n")
    wrong = _render(bao, tmp_path)
    assert wrong.returncode == 0, wrong.stderr
    assert (tmp_path / "a.txt").read_text() == value + "\n"
    assert "sealed with a raw 32-byte key, but the key given is a passphrase; ignored" in wrong.stderr

    data = bytearray(state_file.read_bytes())
    data[-5] ^= 1
    state_file.write_bytes(bytes(data))
    changed = _render(bao, tmp_path)
    assert changed.returncode == 0, changed.stderr
    warnings = [line for line in changed.stderr.splitlines() if "inject.state" in line and "ignored" in line]
    assert len(warnings) == 1, changed.stderr
    assert "cannot be decrypted" in warnings[0]

    again = _render(bao, tmp_path)
    assert "ignored" not in again.stderr, "the bad state was replaced by a good one"
    assert "read the state" in again.stderr


def test_a_state_of_another_user_or_mode_is_refused(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A state file others could read is refused (one line) and replaced 0600."""
    _kv_dir(bao, prefix, tmp_path, KEY)
    assert _render(bao, tmp_path).returncode == 0
    state_file = tmp_path / "state" / "inject.state"
    state_file.chmod(0o644)
    result = _render(bao, tmp_path)
    assert result.returncode == 0
    assert "has mode 0644; other users could read it (0600 expected); ignored" in result.stderr
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600


WRITER = """
import os, sys, time
from vault_inject.files import sealed, statefile
key = sealed.Key.of(bytes(range(32)))
n = 0
while True:
    n += 1
    payload = (b"%d " % n) * (1 + n % 50000)
    statefile.save(sys.argv[1], sealed.seal(key, b"binding", payload))
    print(n, flush=True)
"""


def test_kill_9_during_state_writes_never_leaves_an_undecryptable_state(tmp_path: Path) -> None:
    """A writer killed with SIGKILL at random points of a loop of state writes always leaves a state that decrypts."""
    from vault_inject.files import sealed, statefile

    key = sealed.Key.of(KEY)
    for round_number in range(8):
        with subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "state")], stdout=subprocess.PIPE, text=True
        ) as writer:
            assert writer.stdout is not None
            while int(writer.stdout.readline()) < 3 + 5 * round_number:
                pass  # the kill lands in a later write (its temp file, fsync or rename)
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait(timeout=10)
        data = statefile.load(str(tmp_path / "state"))
        assert data is not None
        plaintext = sealed.unseal(key, b"binding", data)
        number = plaintext.split(b" ", 1)[0]
        assert plaintext == (number + b" ") * (1 + int(number) % 50000)
