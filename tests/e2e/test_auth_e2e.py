"""Auth methods end to end against OpenBao's real approle and jwt engines: logging in,
removing the secret_id file, re-login when the token hits its max TTL (seconds here),
JWTs signed with a key pair the test generates, kubernetes through the jwt engine,
and 403 messages that name the path and the token's policies.

Kubernetes auth proper needs a cluster's TokenReview API to validate the service
account token, which a test machine does not have; its login flow (role + token file,
POST to ``auth/<mount>/login``) is the same as jwt's, so it is tested against a jwt
mount with ``[auth] mount``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.e2e.auth_helpers import (
    approle_config,
    approle_in,
    kv_read,
    login_env,
    make_approle,
    reader_policy,
    unique,
)
from tests.e2e.helpers_e2e import error_line, write
from tests.e2e.pg_helpers import Postgres, add_role, enable_database, needs_postgres, postgres
from tests.e2e.supervise_helpers import SignalChild
from tests.support import (
    Bao,
    Running,
    forbid,
    holds_for,
    inject_argv,
    inject_env,
    run_inject,
    secret_value,
    supervise,
    wait_for,
)

__all__ = ["postgres"]  # the session fixture, imported so pytest finds it here

AUDIENCE = "inject-e2e"


# --- AppRole -----------------------------------------------------------------------------


def test_approle_login_renders_and_removes_secret_id_file(
    bao: Bao, approle_mount: str, prefix: str, tmp_path: Path
) -> None:
    """AppRole login from role_id/secret_id files renders the secret; `remove_secret_id_file` deletes the secret_id file."""
    path = f"{prefix}/app"
    password = secret_value()
    bao.kv_put(path, password=password)
    approle_in(
        tmp_path,
        make_approle(bao, approle_mount, reader_policy(bao, kv_read(path))),
        "remove_secret_id_file = true",
    )
    write(tmp_path / "t.j2", f"{{{{ secret('{path}').password }}}}")
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == password
    assert not (tmp_path / "secret_id").exists()
    assert (tmp_path / "role_id").exists()
    assert "logged in with approle" in result.stderr


def test_approle_keeps_secret_id_file_by_default(
    bao: Bao, approle_mount: str, prefix: str, tmp_path: Path
) -> None:
    """Without `remove_secret_id_file` the secret_id file is left in place."""
    path = f"{prefix}/app"
    bao.kv_put(path, password=secret_value())
    approle_in(tmp_path, make_approle(bao, approle_mount, reader_policy(bao, kv_read(path))))
    write(tmp_path / "t.j2", f"{{{{ secret('{path}').password }}}}")
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "secret_id").exists()


def test_refused_approle_login_says_refused_once_naming_the_server(
    bao: Bao, approle_mount: str, prefix: str, tmp_path: Path
) -> None:
    """A secret_id the server does not know exits 4 with one line: the login, the server,
    the HTTP status, "refused" said once, and never the secret_id."""
    approle = make_approle(bao, approle_mount, reader_policy(bao, kv_read(f"{prefix}/app")))
    approle.write_files(tmp_path)
    write(tmp_path / "secret_id", forbid("wrong-" + secret_value("sid")) + "\n")
    approle_config(tmp_path, approle)
    write(tmp_path / "t.j2", f"{{{{ secret('{prefix}/app').password }}}}")
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 4
    line = error_line(result)
    assert f"approle login refused by {bao.address}: HTTP 400" in line
    assert line.count("refused") == 1
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize(
    ("missing", "hint"),
    [
        (
            "secret_id_file",
            "[auth] secret_id_file (env INJECT_SECRET_ID_FILE)"
            " or [auth] secret_id_wrapped_file (env INJECT_SECRET_ID_WRAPPED_FILE)",
        ),
        ("role_id_file", "[auth] role_id_file (env INJECT_ROLE_ID_FILE)"),
    ],
)
def test_missing_approle_setting_names_the_file_key_and_the_env_var(
    bao: Bao, tmp_path: Path, missing: str, hint: str
) -> None:
    """An approle config without a credential file exits 2 naming both ways to give it:
    the config key and the environment variable."""
    lines = ["[auth]", 'method = "approle"', 'role_id_file = "role_id"', 'secret_id_file = "secret_id"']
    write(tmp_path / "inject.toml", "\n".join(line for line in lines if missing not in line) + "\n")
    write(tmp_path / "role_id", "r\n")
    write(tmp_path / "secret_id", "s\n")
    write(tmp_path / "t.j2", "x")
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 2
    assert error_line(result).endswith(f"auth method approle needs {hint}")


def test_jwt_without_role_names_the_file_key_and_the_env_var(bao: Bao, tmp_path: Path) -> None:
    """jwt auth without a role exits 2 naming [auth] role and INJECT_ROLE."""
    write(tmp_path / "inject.toml", '[auth]\nmethod = "jwt"\njwt_file = "token.jwt"\n')
    write(tmp_path / "t.j2", "x")
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 2
    assert error_line(result).endswith("auth method jwt needs [auth] role (env INJECT_ROLE)")


def test_no_token_anywhere_names_every_way_to_give_one(bao: Bao, tmp_path: Path) -> None:
    """With no token anywhere, inject exits 4 naming the env vars, the option, the config key
    and the file it looked for."""
    env = {k: v for k, v in inject_env(bao).items() if k not in ("VAULT_TOKEN", "BAO_TOKEN")}
    write(tmp_path / "t.j2", "x")
    result = run_inject("render", "-t", "t.j2:out.txt", env=env, cwd=tmp_path)
    assert result.returncode == 4
    line = error_line(result)
    for way in [
        "VAULT_TOKEN",
        "--token-file",
        "[auth] token_file",
        "INJECT_TOKEN_FILE",
        "~/.vault-token",
        "INJECT_AUTH",
    ]:
        assert way in line, line


def test_forbidden_path_names_path_and_token_policies(
    bao: Bao, approle_mount: str, prefix: str, tmp_path: Path
) -> None:
    """A 403 exits 4 with one line naming the denied path and the token's policies."""
    allowed, denied = f"{prefix}/allowed", f"{prefix}/denied"
    bao.kv_put(allowed, v=secret_value())
    bao.kv_put(denied, v=secret_value())
    policy = reader_policy(bao, kv_read(allowed))
    approle_in(tmp_path, make_approle(bao, approle_mount, policy))
    write(tmp_path / "t.j2", f"{{{{ secret('{allowed}').v }}}}\n{{{{ secret('{denied}').v }}}}\n")
    result = run_inject("render", "-q", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 4
    line = error_line(result)
    assert "permission denied" in line
    assert denied in line
    assert allowed not in line
    assert "token policies: " in line
    assert policy in line.split("token policies: ", 1)[1]
    assert not (tmp_path / "out.txt").exists()


def test_token_auth_403_names_policies_from_lookup(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """With token auth the 403 message lists the policies the token lookup reported."""
    denied = f"{prefix}/denied"
    bao.kv_put(denied, v=secret_value())
    policy = reader_policy(bao, kv_read(f"{prefix}/other"))
    token = forbid(bao.token_with(policy, "default"))
    result = run_inject(
        "-e", f"V=vault:{denied}#v", "--", "true", env=inject_env(bao, token=token), cwd=tmp_path
    )
    assert result.returncode == 4
    line = error_line(result)
    assert denied in line
    assert f"token policies: default, {policy}" in line or f"token policies: {policy}, default" in line


def test_approle_relogin_past_max_ttl_keeps_polling_without_restart(
    bao: Bao, approle_mount: str, prefix: str, tmp_path: Path
) -> None:
    """A 3s/5s AppRole token is replaced by logging in again (twice), KV secrets are not re-rendered for it, and a later KV change still arrives."""
    path = f"{prefix}/app"
    bao.kv_put(path, v=secret_value())
    approle_in(
        tmp_path, make_approle(bao, approle_mount, reader_policy(bao, kv_read(path)), ttl="3s", max_ttl="5s")
    )
    write(tmp_path / "t.j2", f"{{{{ secret('{path}').v }}}}")
    child = SignalChild.create(tmp_path)
    argv = inject_argv("-v", "--poll-interval", "300ms", "-t", "t.j2:out.txt", "-e", f"APP_V=vault:{path}#v")
    argv += ["--", *child.argv("APP_V")]
    with supervise(argv, env=login_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        pid = child.wait_starts(1)[0]["pid"]
        inode = (tmp_path / "out.txt").stat().st_ino
        inject.wait_log("logged in again", count=2, timeout_s=14)
        assert child.pids() == [pid], "a new token alone must not restart the child"
        assert (tmp_path / "out.txt").stat().st_ino == inode, "nor rewrite the file"

        new = secret_value()
        bao.kv_put(path, v=new)
        second = child.wait_starts(2, timeout_s=5)[1]
        assert second["env"]["APP_V"] == new
        assert (tmp_path / "out.txt").read_text() == new
        problems = [line for line in inject.stderr().splitlines() if "error" in line or "warning" in line]
        assert problems == [], "the token must be replaced before it expires"


@needs_postgres
def test_dynamic_creds_stay_valid_across_approle_relogin(
    bao: Bao, postgres: Postgres, approle_mount: str, tmp_path: Path
) -> None:
    """Database credentials read with a 3s/5s AppRole token are never left revoked: the rendered user exists at every moment across re-logins."""
    engine = enable_database(bao, postgres)
    role = add_role(bao, engine, default_ttl_s=30, max_ttl_s=60)
    creds = engine.creds_path(role)
    policy = reader_policy(
        bao,
        f'path "{creds}" {{ capabilities = ["read"] }}',
        'path "sys/leases/revoke" { capabilities = ["update"] }',
    )
    approle_in(tmp_path, make_approle(bao, approle_mount, policy, ttl="3s", max_ttl="5s"))
    write(tmp_path / "db.j2", f"{{{{ secret('{creds}').username }}}}\n")
    child = SignalChild.create(tmp_path)
    argv = [*inject_argv("-v", "-t", "db.j2:db.txt"), "--", *child.argv()]
    with supervise(argv, env=login_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)

        def in_use_exists() -> bool:
            return postgres.role_exists((tmp_path / "db.txt").read_text().strip())

        # past the first token's max TTL and one more re-login
        holds_for(
            in_use_exists, duration_s=9, what="the rendered credentials' role (never revoked while in use)"
        )
        assert inject.lines("logged in again")


def _accessor_of(bao: Bao, role_name: str) -> str:
    """The accessor of the token an AppRole role ``role_name`` logged in for (the one alive)."""
    accessors = bao.api("LIST", "auth/token/accessors").json()["data"]["keys"]
    for accessor in accessors:
        answer = _lookup_accessor(bao, accessor)
        if (
            answer.status_code == 200
            and (answer.json()["data"].get("meta") or {}).get("role_name") == role_name
        ):
            return str(accessor)
    raise AssertionError(f"no live token of role {role_name}")


def _lookup_accessor(bao: Bao, accessor: str) -> requests.Response:
    return bao.session.post(
        f"{bao.address}/v1/auth/token/lookup-accessor",
        json={"accessor": accessor},
        headers={"X-Vault-Token": bao.token},
        timeout=10,
    )


@needs_postgres
def test_exit_revokes_its_own_token_and_the_leases_go_with_it(
    bao: Bao, postgres: Postgres, approle_mount: str, tmp_path: Path
) -> None:
    """Logged in with AppRole under a policy that has no sys/leases/revoke: stopping inject revokes its token (auth/token/revoke-self, in the default policy), the database lease goes with it (role gone from pg_roles), and nothing fails to revoke."""
    engine = enable_database(bao, postgres)
    creds = engine.creds_path(add_role(bao, engine, default_ttl_s=300, max_ttl_s=600))
    policy = reader_policy(bao, f'path "{creds}" {{ capabilities = ["read"] }}')
    approle = make_approle(bao, approle_mount, policy)
    approle_in(tmp_path, approle)
    write(tmp_path / "db.j2", f"{{{{ secret('{creds}').username }}}}\n")
    child = SignalChild.create(tmp_path)
    argv = [*inject_argv("-v", "-t", "db.j2:db.txt"), "--", *child.argv()]
    with supervise(argv, env=login_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)
        user = (tmp_path / "db.txt").read_text().strip()
        assert postgres.role_exists(user)
        accessor = _accessor_of(bao, approle.role)
    assert inject.lines("revoked inject's token")
    assert inject.lines("could not revoke") == []
    assert _lookup_accessor(bao, accessor).status_code in (400, 403), "inject's token is still alive"
    assert not postgres.role_exists(user), "the lease outlived the token inject revoked"


def test_a_token_the_user_gave_is_never_revoked_at_exit(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """With VAULT_TOKEN (the user's token), exit revokes leases only: the token still works afterwards."""
    path = f"{prefix}/given"
    bao.kv_put(path, v=secret_value())
    token = forbid(bao.token_with(reader_policy(bao, kv_read(path)), "default"))
    write(tmp_path / "t.j2", f"{{{{ secret('{path}').v }}}}\n")
    child = SignalChild.create(tmp_path)
    argv = [*inject_argv("-t", "t.j2:t.txt"), "--", *child.argv()]
    with supervise(argv, env=inject_env(bao, token=token), cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)
    assert inject.lines("revoked inject's token") == []
    assert bao.api("GET", "auth/token/lookup-self", token=token).json()["data"]["ttl"] > 0


@dataclass(frozen=True)
class TokenFileScene:
    """Dynamic DB credentials in ./db.txt, read with the token in ./token; two tokens that may read them."""

    workdir: Path
    first: str
    second: str
    child: SignalChild
    inject: Running

    def swap_token(self) -> None:
        """Replace ./token with the second token, atomically (as a secret mount does)."""
        staged = write(self.workdir / "token.new", self.second + "\n")
        staged.replace(self.workdir / "token")


@pytest.fixture
def token_file_scene(bao: Bao, postgres: Postgres, tmp_path: Path) -> Iterator[TokenFileScene]:
    """A database role with 30s/60s leases, a reader policy, two tokens, and inject running
    with the first one (its child started once); stopped at the end."""
    engine = enable_database(bao, postgres)
    creds = engine.creds_path(add_role(bao, engine, default_ttl_s=30, max_ttl_s=60))
    policy = reader_policy(
        bao,
        f'path "{creds}" {{ capabilities = ["read"] }}',
        'path "sys/leases/revoke" { capabilities = ["update"] }',
    )
    first, second = (forbid(bao.token_with(policy, "default")) for _ in range(2))
    write(tmp_path / "token", first + "\n")
    write(tmp_path / "db.j2", f"{{{{ secret('{creds}').username }}}}\n{{{{ secret('{creds}').password }}}}\n")
    child = SignalChild.create(tmp_path)
    argv = [*inject_argv("--token-file", "token", "-t", "db.j2:db.txt"), "--", *child.argv()]
    with supervise(argv, env=login_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)
        yield TokenFileScene(tmp_path, first, second, child, inject)


@needs_postgres
def test_new_token_from_token_file_keeps_still_valid_lease(
    bao: Bao, postgres: Postgres, tmp_path: Path, token_file_scene: TokenFileScene
) -> None:
    """A swapped token file gives inject a new token without re-reading a lease that is still alive: same DB user, no restart."""
    scene, (pid,) = token_file_scene, token_file_scene.child.pids()
    child, inject = scene.child, scene.inject
    user, password = (tmp_path / "db.txt").read_text().splitlines()
    forbid(password)
    scene.swap_token()
    inject.wait_log("logged in again", timeout_s=5)
    assert (tmp_path / "db.txt").read_text().splitlines() == [user, password]
    assert child.pids() == [pid]
    assert postgres.can_login(user, password)
    assert not inject.lines("ended with the old token")


@needs_postgres
def test_new_token_rereads_lease_that_died_with_the_old_one(
    bao: Bao, postgres: Postgres, tmp_path: Path, token_file_scene: TokenFileScene
) -> None:
    """When the old token was revoked (taking its leases along), the new token re-reads them: new DB user that logs in, child restarted."""
    scene = token_file_scene
    old_user = (tmp_path / "db.txt").read_text().splitlines()[0]
    bao.api("POST", "auth/token/revoke", json={"token": scene.first})
    wait_for(lambda: not postgres.role_exists(old_user), timeout_s=5, what="the old token's role to go")
    scene.swap_token()
    scene.child.wait_starts(2, timeout_s=5)
    new_user, new_password = (tmp_path / "db.txt").read_text().splitlines()
    forbid(new_password)
    assert new_user != old_user
    assert postgres.can_login(new_user, new_password)
    assert scene.inject.lines("ended with the old token")


# --- JWT and "kubernetes" ------------------------------------------------------------------


@dataclass(frozen=True)
class JwtIssuer:
    """An RSA key pair made with openssl; signs RS256 JWTs."""

    key_file: Path
    public_pem: str

    def sign(self, **claims: object) -> str:
        """An RS256 JWT with ``claims`` (defaults: sub, aud, iat, nbf, exp) added to the leak check."""
        now = int(time.time())
        body = {"sub": "app", "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + 600, **claims}
        signing_input = f"{_b64url(json.dumps({'alg': 'RS256', 'typ': 'JWT'}).encode())}.{_b64url(json.dumps(body).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key_file)],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        return forbid(f"{signing_input}.{_b64url(signature)}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _issuer(directory: Path) -> JwtIssuer:
    key = directory / "key.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    public = subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return JwtIssuer(key, public)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> JwtIssuer:
    """The key pair whose public half the jwt mount trusts."""
    return _issuer(tmp_path_factory.mktemp("jwt-keys"))


@pytest.fixture(scope="module")
def jwt_mount(bao: Bao, issuer: JwtIssuer) -> str:
    """A jwt auth mount (unique to this module) that trusts ``issuer``'s public key."""
    mount = unique("jwt")
    bao.api("POST", f"sys/auth/{mount}", json={"type": "jwt"})
    bao.api("POST", f"auth/{mount}/config", json={"jwt_validation_pubkeys": [issuer.public_pem]})
    return mount


def _jwt_role(bao: Bao, mount: str, policy: str) -> str:
    role = unique("svc")
    bao.api(
        "POST",
        f"auth/{mount}/role/{role}",
        json={
            "role_type": "jwt",
            "bound_audiences": [AUDIENCE],
            "user_claim": "sub",
            "token_policies": [policy],
            "token_ttl": "1h",
        },
    )
    return role


def _jwt_config(directory: Path, method: str, mount: str, role: str) -> None:
    write(
        directory / "inject.toml",
        f'[auth]\nmethod = "{method}"\nmount = "{mount}"\nrole = "{role}"\njwt_file = "token.jwt"\n',
    )


@pytest.mark.parametrize("method", ["jwt", "kubernetes"])
def test_jwt_login_renders(
    bao: Bao, jwt_mount: str, issuer: JwtIssuer, prefix: str, tmp_path: Path, method: str
) -> None:
    """`jwt` (and `kubernetes`, pointed at a jwt mount) log in with role + JWT file and render the secret."""
    path = f"{prefix}/app"
    password = secret_value()
    bao.kv_put(path, password=password)
    role = _jwt_role(bao, jwt_mount, reader_policy(bao, kv_read(path)))
    write(tmp_path / "token.jwt", issuer.sign() + "\n")
    _jwt_config(tmp_path, method, jwt_mount, role)
    write(tmp_path / "t.j2", f"{{{{ secret('{path}').password }}}}")
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == password
    assert f"logged in with {method}" in result.stderr


@pytest.mark.parametrize("bad", ["other-key", "wrong-audience", "expired", "garbage"])
def test_bad_jwt_is_a_one_line_auth_error(
    bao: Bao, jwt_mount: str, issuer: JwtIssuer, prefix: str, tmp_path: Path, bad: str
) -> None:
    """A JWT the server rejects exits 4 with one line naming the login, never the JWT, and writes nothing."""
    path = f"{prefix}/app"
    bao.kv_put(path, password=secret_value())
    role = _jwt_role(bao, jwt_mount, reader_policy(bao, kv_read(path)))
    tokens = {
        "other-key": lambda: _issuer(tmp_path).sign(),
        "wrong-audience": lambda: issuer.sign(aud="someone-else"),
        "expired": lambda: issuer.sign(exp=int(time.time()) - 600, iat=int(time.time()) - 1200),
        "garbage": lambda: forbid("not-a-jwt-" + secret_value("jwt")),
    }
    jwt = tokens[bad]()
    write(tmp_path / "token.jwt", jwt + "\n")
    _jwt_config(tmp_path, "jwt", jwt_mount, role)
    write(tmp_path / "t.j2", f"{{{{ secret('{path}').password }}}}")
    result = run_inject("render", "-t", "t.j2:out.txt", env=login_env(bao), cwd=tmp_path)
    assert result.returncode == 4
    line = error_line(result)
    assert "jwt login" in line
    assert role in line
    for part in jwt.split("."):
        assert part not in result.stderr
    assert not (tmp_path / "out.txt").exists()


def test_rotated_jwt_file_logs_in_again(
    bao: Bao, jwt_mount: str, issuer: JwtIssuer, prefix: str, tmp_path: Path
) -> None:
    """Replacing the JWT file (a rotated service-account token) makes a running inject log in again with it."""
    path = f"{prefix}/app"
    bao.kv_put(path, v=secret_value())
    role = _jwt_role(bao, jwt_mount, reader_policy(bao, kv_read(path)))
    write(tmp_path / "token.jwt", issuer.sign() + "\n")
    _jwt_config(tmp_path, "jwt", jwt_mount, role)
    write(tmp_path / "t.j2", f"{{{{ secret('{path}').v }}}}")
    child = SignalChild.create(tmp_path)
    argv = inject_argv("--poll-interval", "300ms", "-t", "t.j2:out.txt", "--", *child.argv())
    with supervise(argv, env=login_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)  # the file watcher starts before the child
        replacement = tmp_path / "token.jwt.new"
        write(replacement, issuer.sign(jti=uuid.uuid4().hex) + "\n")
        replacement.replace(tmp_path / "token.jwt")
        inject.wait_log("logged in again", timeout_s=5)
        new = secret_value()
        bao.kv_put(path, v=new)
        wait_for(lambda: (tmp_path / "out.txt").read_text() == new, timeout_s=5, what="the new value")
        assert inject.lines("logged in with jwt")[1:], "a second login happened"
