"""More logins end to end against OpenBao's real engines: userpass (password in a file),
TLS certificate auth (a test CA registered with ``auth/cert``, the certificate of
``--client-cert``/``--client-key`` presented to a ``-dev-tls`` server), and an AppRole
secret_id handed over response-wrapped (``secret_id_wrapped_file``: unwrapped once through
``sys/wrapping/unwrap``, the file removed; a token unwrapped before is refused saying so).
Each logs in again when its token reaches its max TTL (seconds here).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.auth_helpers import (
    NO_TOKEN,
    AppRole,
    approle_config,
    kv_read,
    login_env,
    make_approle,
    reader_policy,
    unique,
)
from tests.e2e.helpers_e2e import closed_port, error_line, make_certificates, write
from tests.e2e.supervise_helpers import SignalChild
from tests.support import (
    Bao,
    bao_server,
    forbid,
    inject_argv,
    inject_env,
    record_output,
    run_inject,
    secret_value,
    supervise,
    wait_for,
)
from vault_inject import Secrets


def _config(directory: Path, *lines: str) -> None:
    write(directory / "inject.toml", "\n".join(["[auth]", *lines]) + "\n")


def _template(server: Bao, path: str, directory: Path) -> str:
    """A secret at ``path`` and ./t.j2 rendering it; the value."""
    value = secret_value()
    server.kv_put(path, v=value)
    write(directory / "t.j2", f"{{{{ secret('{path}').v }}}}")
    return value


def _relogins_and_follows_changes(server: Bao, path: str, directory: Path, env: dict[str, str]) -> None:
    """inject running a child with ./t.j2 rendered (a token of 3s, max 5s): it logs in again
    twice without restarting the child, a later KV change still arrives, and at exit inject
    revokes its token (its own, as it logged in)."""
    child = SignalChild.create(directory)
    argv = [*inject_argv("-v", "--poll-interval", "300ms", "-t", "t.j2:out.txt"), "--", *child.argv()]
    with supervise(argv, env=env, cwd=directory, stray=child.pids) as inject:
        pid = child.wait_starts(1)[0]["pid"]
        inject.wait_log("logged in again", count=2, timeout_s=14)
        assert child.pids() == [pid], "a new token alone must not restart the child"
        new = secret_value()
        server.kv_put(path, v=new)
        wait_for(lambda: (directory / "out.txt").read_text() == new, timeout_s=5, what="the new value")
        problems = [line for line in inject.stderr().splitlines() if "error" in line or "warning" in line]
        assert problems == [], "the token must be replaced before it expires"
    assert inject.lines("revoked inject's token"), "a token inject logged in for is its own to revoke"


# --- userpass ------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """A userpass user whose password (added to the leak check) is in ``password_file``."""

    mount: str
    name: str
    password: str


@pytest.fixture(scope="module")
def userpass_mount(bao: Bao) -> str:
    """A userpass auth mount unique to this module."""
    mount = unique("userpass")
    bao.api("POST", f"sys/auth/{mount}", json={"type": "userpass"})
    return mount


def _user(bao: Bao, mount: str, policy: str, *, ttl: str = "1h", max_ttl: str = "2h") -> User:
    user = User(mount, unique("app"), secret_value("pw"))
    bao.api(
        "POST",
        f"auth/{mount}/users/{user.name}",
        json={
            "password": user.password,
            "token_policies": [policy],
            "token_ttl": ttl,
            "token_max_ttl": max_ttl,
        },
    )
    return user


def _userpass_in(directory: Path, user: User) -> None:
    _config(
        directory,
        'method = "userpass"',
        f'mount = "{user.mount}"',
        f'username = "{user.name}"',
        'password_file = "password"',
    )


def test_userpass_login_renders(bao: Bao, userpass_mount: str, prefix: str, tmp_path: Path) -> None:
    """userpass logs in as `username` with the password read from `password_file` and renders the secret."""
    path = f"{prefix}/app"
    value = _template(bao, path, tmp_path)
    user = _user(bao, userpass_mount, reader_policy(bao, kv_read(path)))
    write(tmp_path / "password", user.password + "\n")
    _userpass_in(tmp_path, user)
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == value
    assert "logged in with userpass" in result.stderr


@pytest.mark.parametrize(("content", "says"), [(None, "not found"), ("\n", "is empty")])
def test_userpass_password_file_missing_or_empty_is_one_line_exit_4(
    bao: Bao, userpass_mount: str, tmp_path: Path, content: str | None, says: str
) -> None:
    """A missing or empty password file: exit 4 with one line naming the file; nothing rendered."""
    write(tmp_path / "t.j2", "{{ secret('secret/none').v }}")
    if content is not None:
        write(tmp_path / "password", content)
    _userpass_in(tmp_path, User(userpass_mount, "nobody", ""))
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 4
    line = error_line(result)
    assert f"password file {tmp_path / 'password'}" in line
    assert says in line
    assert not (tmp_path / "out.txt").exists()


def test_userpass_wrong_password_is_refused_without_echoing_it(
    bao: Bao, userpass_mount: str, prefix: str, tmp_path: Path
) -> None:
    """A wrong password: exit 4, one line naming the login (never the password)."""
    path = f"{prefix}/app"
    _template(bao, path, tmp_path)
    user = _user(bao, userpass_mount, reader_policy(bao, kv_read(path)))
    write(tmp_path / "password", secret_value("wrong") + "\n")
    _userpass_in(tmp_path, user)
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 4
    assert f"userpass login as '{user.name}' refused" in error_line(result)


def test_userpass_relogin_past_max_ttl(bao: Bao, userpass_mount: str, prefix: str, tmp_path: Path) -> None:
    """A 3s/5s userpass token is replaced by logging in again (twice) with the password file; the child keeps running and a later change arrives."""
    path = f"{prefix}/app"
    _template(bao, path, tmp_path)
    user = _user(bao, userpass_mount, reader_policy(bao, kv_read(path)), ttl="3s", max_ttl="5s")
    write(tmp_path / "password", user.password + "\n")
    _userpass_in(tmp_path, user)
    _relogins_and_follows_changes(bao, path, tmp_path, login_env(bao))


def test_library_logs_in_with_userpass_from_inject_variables(
    bao: Bao, userpass_mount: str, prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`Secrets()` logs in with userpass set by INJECT_AUTH, INJECT_AUTH_MOUNT, INJECT_USERNAME and INJECT_PASSWORD_FILE."""
    caplog.set_level(logging.DEBUG, logger="vault_inject")
    path = f"{prefix}/lib"
    value = secret_value()
    bao.kv_put(path, v=value)
    user = _user(bao, userpass_mount, reader_policy(bao, kv_read(path)))
    write(tmp_path / "password", user.password + "\n")
    environ = {
        "VAULT_ADDR": bao.address,
        "HOME": "/nonexistent-home",
        "INJECT_AUTH": "userpass",
        "INJECT_AUTH_MOUNT": user.mount,
        "INJECT_USERNAME": user.name,
        "INJECT_PASSWORD_FILE": str(tmp_path / "password"),
    }
    try:
        with Secrets(environ=environ) as secrets:
            assert secrets.get(path, "v") == value
    finally:
        record_output(caplog.text)


# --- TLS certificates ----------------------------------------------------------------------


@dataclass(frozen=True)
class CertServer:
    """A ``-dev-tls`` server (its CA in ``server_ca``) with a cert auth mount, and a test CA
    (not the server's) whose client certificate is in ``certs``."""

    bao: Bao
    server_ca: Path
    certs: Path
    mount: str

    def env(self) -> dict[str, str]:
        """inject's environment: the server's CA, the client certificate and key."""
        return inject_env(
            self.bao,
            {
                "VAULT_CACERT": str(self.server_ca),
                "VAULT_CLIENT_CERT": str(self.certs / "client.pem"),
                "VAULT_CLIENT_KEY": str(self.certs / "client.key"),
            },
            token=NO_TOKEN,
        )

    def role(self, policy: str, *, ttl: str = "1h", max_ttl: str = "2h", mount: str = "") -> str:
        """A cert role trusting the test CA with ``policy`` (on ``mount``, default the module's); its name."""
        name = unique("web")
        self.bao.api(
            "POST",
            f"auth/{mount or self.mount}/certs/{name}",
            json={
                "certificate": (self.certs / "ca.pem").read_text(),
                "token_policies": [policy],
                "token_ttl": ttl,
                "token_max_ttl": max_ttl,
            },
        )
        return name


@pytest.fixture(scope="module")
def cert_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertServer]:
    """A TLS dev server of this module's own with cert auth enabled, and a client certificate."""
    certs = tmp_path_factory.mktemp("client-ca")
    make_certificates(certs)
    home = Path(tempfile.mkdtemp(prefix="inject-cert-"))  # short: the dev-tls files live here
    try:
        with bao_server(home, tls=True) as server:
            mount = unique("cert")
            server.api("POST", f"sys/auth/{mount}", json={"type": "cert"})
            yield CertServer(server, home / "vault-ca.pem", certs, mount)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _cert_in(directory: Path, server: CertServer, *extra: str, mount: str = "") -> None:
    _config(directory, 'method = "cert"', f'mount = "{mount or server.mount}"', *extra)


def test_cert_login_renders(cert_server: CertServer, tmp_path: Path) -> None:
    """cert logs in with the client certificate of VAULT_CLIENT_CERT/KEY as the named role and renders the secret."""
    server = cert_server.bao
    path = f"secret/{unique('cert')}"
    value = _template(server, path, tmp_path)
    role = cert_server.role(reader_policy(server, kv_read(path)))
    _cert_in(tmp_path, cert_server, f'role = "{role}"')
    result = run_inject("render", "-t", "t.j2:out.txt", env=cert_server.env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == value
    assert "logged in with cert" in result.stderr


def test_cert_login_without_role_uses_the_matching_one(cert_server: CertServer, tmp_path: Path) -> None:
    """Without `role` the server picks the cert role that matches the certificate (`--client-cert`/`--client-key` options)."""
    server = cert_server.bao
    path = f"secret/{unique('cert')}"
    value = _template(server, path, tmp_path)
    mount = unique("cert-one-role")  # the only role there is the one that must match
    server.api("POST", f"sys/auth/{mount}", json={"type": "cert"})
    cert_server.role(reader_policy(server, kv_read(path)), mount=mount)
    _cert_in(tmp_path, cert_server, mount=mount)
    env = {k: v for k, v in cert_server.env().items() if not k.startswith("VAULT_CLIENT_")}
    result = run_inject(
        "render", "--client-cert", str(cert_server.certs / "client.pem"),
        "--client-key", str(cert_server.certs / "client.key"), "-t", "t.j2:out.txt",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == value


def test_cert_login_without_a_client_certificate_is_a_usage_error(
    cert_server: CertServer, tmp_path: Path
) -> None:
    """method = "cert" without a client certificate and key: exit 2, one line saying what to give."""
    write(tmp_path / "t.j2", "{{ secret('secret/none').v }}")
    _cert_in(tmp_path, cert_server)
    env = {k: v for k, v in cert_server.env().items() if not k.startswith("VAULT_CLIENT_")}
    result = run_inject("render", "-t", "t.j2:out.txt", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "--client-cert and --client-key" in error_line(result)


def test_cert_login_with_an_unknown_role_is_refused(cert_server: CertServer, tmp_path: Path) -> None:
    """A cert role that does not exist: exit 4, one line naming the cert login."""
    write(tmp_path / "t.j2", "{{ secret('secret/none').v }}")
    _cert_in(tmp_path, cert_server, 'role = "no-such-role"')
    result = run_inject("render", "-t", "t.j2:out.txt", env=cert_server.env(), cwd=tmp_path)
    assert result.returncode == 4
    assert "cert login as role 'no-such-role' refused" in error_line(result)


def test_cert_relogin_past_max_ttl(cert_server: CertServer, tmp_path: Path) -> None:
    """A 3s/5s cert token is replaced by logging in again (twice) with the certificate; the child keeps running and a later change arrives."""
    server = cert_server.bao
    path = f"secret/{unique('cert')}"
    _template(server, path, tmp_path)
    role = cert_server.role(reader_policy(server, kv_read(path)), ttl="3s", max_ttl="5s")
    _cert_in(tmp_path, cert_server, f'role = "{role}"')
    _relogins_and_follows_changes(server, path, tmp_path, cert_server.env())


# --- a response-wrapped AppRole secret_id --------------------------------------------------


@pytest.fixture(scope="module")
def wrapped_mount(bao: Bao) -> str:
    """An approle auth mount unique to this module."""
    mount = unique("approle")
    bao.api("POST", f"sys/auth/{mount}", json={"type": "approle"})
    return mount


def _wrapped_secret_id(approle: AppRole) -> dict[str, Any]:
    """A new secret_id of ``approle``, response-wrapped (as `bao write -format=json -wrap-ttl=60s`):
    the server's answer, its wrapping token added to the leak check."""
    bao = approle.bao
    response = bao.session.post(
        f"{bao.address}/v1/auth/{approle.mount}/role/{approle.role}/secret-id",
        headers={"X-Vault-Token": bao.token, "X-Vault-Wrap-TTL": "60s"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    forbid(answer["wrap_info"]["token"])
    return answer


def _wrapped_in(directory: Path, approle: AppRole, *, as_json: bool = False) -> str:
    """role_id, a wrapped secret_id in ./secret_id.wrapped (the token, or with ``as_json`` the
    whole JSON answer) and an inject.toml using them; the wrapping token."""
    base = f"auth/{approle.mount}/role/{approle.role}"
    write(
        directory / "role_id",
        forbid(approle.bao.api("GET", f"{base}/role-id").json()["data"]["role_id"]) + "\n",
    )
    answer = _wrapped_secret_id(approle)
    token = str(answer["wrap_info"]["token"])
    write(directory / "secret_id.wrapped", (json.dumps(answer) if as_json else token) + "\n")
    _config(
        directory,
        'method = "approle"',
        f'mount = "{approle.mount}"',
        'role_id_file = "role_id"',
        'secret_id_wrapped_file = "secret_id.wrapped"',
    )
    return token


def test_wrapped_secret_id_is_unwrapped_once_and_its_file_removed(
    bao: Bao, wrapped_mount: str, prefix: str, tmp_path: Path
) -> None:
    """A response-wrapped secret_id logs in, the file is removed, and the wrapping token is used up (a second unwrap fails)."""
    path = f"{prefix}/app"
    value = _template(bao, path, tmp_path)
    token = _wrapped_in(tmp_path, make_approle(bao, wrapped_mount, reader_policy(bao, kv_read(path))))
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == value
    assert not (tmp_path / "secret_id.wrapped").exists()
    assert (tmp_path / "role_id").exists()
    again = bao.session.post(
        f"{bao.address}/v1/sys/wrapping/unwrap", headers={"X-Vault-Token": token}, timeout=10
    )
    assert again.status_code == 400, "the wrapping token must be used up"


def test_wrapped_secret_id_file_may_hold_the_json_answer(
    bao: Bao, wrapped_mount: str, prefix: str, tmp_path: Path
) -> None:
    """The file may hold the JSON that `bao write -format=json -wrap-ttl=...` prints: the login works, the file is removed."""
    path = f"{prefix}/app"
    value = _template(bao, path, tmp_path)
    approle = make_approle(bao, wrapped_mount, reader_policy(bao, kv_read(path)))
    _wrapped_in(tmp_path, approle, as_json=True)
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == value
    assert not (tmp_path / "secret_id.wrapped").exists()


def test_a_wrapping_token_already_unwrapped_is_refused_saying_so(
    bao: Bao, wrapped_mount: str, prefix: str, tmp_path: Path
) -> None:
    """A wrapping token someone else unwrapped first: exit 4, one line saying it was already unwrapped (possible interception); the file is removed."""
    path = f"{prefix}/app"
    _template(bao, path, tmp_path)
    token = _wrapped_in(tmp_path, make_approle(bao, wrapped_mount, reader_policy(bao, kv_read(path))))
    stolen = bao.session.post(
        f"{bao.address}/v1/sys/wrapping/unwrap", headers={"X-Vault-Token": token}, timeout=10
    )
    assert stolen.status_code == 200, stolen.text
    forbid(stolen.json()["data"]["secret_id"])
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 4
    line = error_line(result)
    assert str(tmp_path / "secret_id.wrapped") in line
    assert "already unwrapped" in line
    assert "intercepted" in line
    assert not (tmp_path / "out.txt").exists()
    assert not (tmp_path / "secret_id.wrapped").exists()


def test_secret_id_file_and_wrapped_file_together_is_a_usage_error(
    bao: Bao, wrapped_mount: str, prefix: str, tmp_path: Path
) -> None:
    """Both `secret_id_file` and `secret_id_wrapped_file`: exit 2, one line naming both; the wrapping token is not used."""
    path = f"{prefix}/app"
    _template(bao, path, tmp_path)
    approle = make_approle(bao, wrapped_mount, reader_policy(bao, kv_read(path)))
    _wrapped_in(tmp_path, approle)
    approle_config(tmp_path, approle, 'secret_id_wrapped_file = "secret_id.wrapped"')
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 2
    line = error_line(result)
    assert "secret_id_file" in line
    assert "secret_id_wrapped_file" in line
    assert (tmp_path / "secret_id.wrapped").exists()


def test_wrapped_secret_id_relogin_past_max_ttl(
    bao: Bao, wrapped_mount: str, prefix: str, tmp_path: Path
) -> None:
    """A 3s/5s token from a wrapped secret_id is replaced by logging in again (twice) with the secret_id kept in memory (its file is gone)."""
    path = f"{prefix}/app"
    _template(bao, path, tmp_path)
    approle = make_approle(bao, wrapped_mount, reader_policy(bao, kv_read(path)), ttl="3s", max_ttl="5s")
    _wrapped_in(tmp_path, approle)
    _relogins_and_follows_changes(bao, path, tmp_path, login_env(bao))
    assert not (tmp_path / "secret_id.wrapped").exists()


def test_wrapped_file_is_kept_when_the_server_cannot_be_reached(
    bao: Bao, wrapped_mount: str, tmp_path: Path
) -> None:
    """No server to unwrap with: exit 5 and the wrapped file is kept (the token is still good for the next start)."""
    approle = make_approle(bao, wrapped_mount, reader_policy(bao, kv_read("secret/none")))
    token = _wrapped_in(tmp_path, approle)
    write(tmp_path / "t.j2", "{{ secret('secret/none').v }}")
    env = inject_env(bao, {"VAULT_ADDR": f"http://127.0.0.1:{closed_port()}"}, token=NO_TOKEN)
    result = run_inject("render", "--retry-timeout", "1s", "-t", "t.j2:out.txt", env=env, cwd=tmp_path)
    assert result.returncode == 5
    assert "unwrapping of the secret_id" in error_line(result)
    assert (tmp_path / "secret_id.wrapped").read_text().strip() == token
