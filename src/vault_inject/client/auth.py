"""inject's own token: found (token auth) or obtained by login (approle, jwt, kubernetes,
cert, userpass).

Token auth order: a configured token file (``--token-file`` / ``[auth] token_file``),
then ``VAULT_TOKEN``, then ``BAO_TOKEN``, then ``~/.vault-token``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any, Protocol

from ..config import Config, setting_hint
from ..errors import AuthError, UsageError
from ..files import read_text
from ..log import register_secret
from ..model import TokenInfo
from .vault import Login, VaultClient, server_settings

log = logging.getLogger(__name__)

TOKEN_ENV_VARS = ("VAULT_TOKEN", "BAO_TOKEN")
HOME_TOKEN_FILE = ".vault-token"  # noqa: S105 - a file name, not a token


def find_token(config: Config, environ: Mapping[str, str]) -> str:
    """The token to use, or AuthError saying where inject looked."""
    if config.token_file:
        return read_token_file(config.token_file)
    for name in TOKEN_ENV_VARS:
        if environ.get(name, "").strip():
            return environ[name].strip()
    home = environ.get("HOME") or os.path.expanduser("~")
    home_file = os.path.join(home, HOME_TOKEN_FILE)
    if os.path.isfile(home_file):
        return read_token_file(home_file)
    raise AuthError(
        "no token: set VAULT_TOKEN (or BAO_TOKEN), give --token-file (or [auth] token_file, env"
        " INJECT_TOKEN_FILE), write ~/.vault-token, or configure [auth] method (env INJECT_AUTH)"
    )


def read_token_file(path: str) -> str:
    """The token in ``path`` (surrounding whitespace removed); AuthError naming the file."""
    return read_secret_file(path, "token file")


DEFAULT_MOUNTS = {
    "approle": "approle",
    "jwt": "jwt",
    "kubernetes": "kubernetes",
    "cert": "cert",
    "userpass": "userpass",
}
K8S_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path


class Client(Protocol):
    """What logging in needs from the server connection (VaultClient)."""

    def set_token(self, token: str) -> None: ...
    def lookup_self(self) -> TokenInfo: ...
    def login(self, method: str, mount: str, credentials: Mapping[str, str], *, what: str) -> Login: ...
    def unwrap(self, wrapping_token: str, *, what: str) -> Mapping[str, Any]: ...


class Authenticator:
    """Gets inject a token with the configured method, and again when it cannot be renewed.

    AppRole's secret_id is read once (with ``remove_secret_id_file`` the file is removed
    after reading, so nothing that gets the file system later can log in), or unwrapped
    once from the response-wrapping token in ``secret_id_wrapped_file`` (that file is
    removed), and kept in memory for re-logins; a JWT and a userpass password are re-read
    from their files at every login, so a rotated one is picked up. cert logs in with the
    TLS client certificate of ``--client-cert``/``--client-key``.
    """

    def __init__(self, config: Config, environ: Mapping[str, str]) -> None:
        self.config = config
        self.method = config.auth_method
        self._environ = environ
        self._secret_id: str | None = None

    @property
    def can_relogin(self) -> bool:
        """True when a new token can be had without outside help (not for a fixed token)."""
        return self.method != "token" or bool(self.config.token_file)

    @property
    def owns_token(self) -> bool:
        """True when inject logged in itself: its token is its own to revoke at exit (a
        token the user gave is never revoked)."""
        return self.method != "token"

    @property
    def watched_file(self) -> str:
        """The file whose change means "log in again" (token file or JWT file), if any."""
        if self.method == "token":
            return self.config.token_file
        if self.method in ("jwt", "kubernetes"):
            return self._jwt_path()
        return ""

    def login(self, client: Client) -> Login:
        """Put a working token on ``client``; return it with its TTL."""
        if self.method == "token":
            client.set_token(find_token(self.config, self._environ))
            info = client.lookup_self()
            return Login(token="", ttl_s=info.ttl_s, renewable=info.renewable)
        mount = self.config.auth_mount or DEFAULT_MOUNTS[self.method]
        payload, what = self._payload(client)
        login = client.login(self.method, mount, payload, what=what)
        log.info("logged in with %s (token ttl %ds)", self.method, login.ttl_s)
        return login

    def _payload(self, client: Client) -> tuple[dict[str, str], str]:
        if self.method == "approle":
            role_id = _need_file(self.config.role_id_file, "role_id_file", self.method, "role id file")
            return {"role_id": role_id, "secret_id": self._approle_secret_id(client)}, "approle login"
        if self.method == "userpass":
            return self._userpass_payload()
        if self.method == "cert":
            return self._cert_payload()
        role = self.config.role
        if not role:
            raise UsageError(f"auth method {self.method} needs {setting_hint('role')}")
        jwt = read_secret_file(self._jwt_path(), "JWT file")
        return {"role": role, "jwt": jwt}, f"{self.method} login as role '{role}'"

    def _approle_secret_id(self, client: Client) -> str:
        if self._secret_id is None:
            path, wrapped = self.config.secret_id_file, self.config.secret_id_wrapped_file
            if path and wrapped:
                raise UsageError("[auth] secret_id_file and secret_id_wrapped_file are both set: give one")
            if wrapped:
                self._secret_id = unwrap_secret_id(client, wrapped)
                return self._secret_id
            if not path:
                raise UsageError(
                    f"auth method approle needs {setting_hint('secret_id_file')}"
                    f" or {setting_hint('secret_id_wrapped_file')}"
                )
            self._secret_id = read_secret_file(path, "secret_id file")
            if self.config.remove_secret_id_file:
                _remove(path)
        return self._secret_id

    def _userpass_payload(self) -> tuple[dict[str, str], str]:
        username = self.config.username
        if not username:
            raise UsageError(f"auth method userpass needs {setting_hint('username')}")
        password = _need_file(self.config.password_file, "password_file", self.method, "password file")
        return {"username": username, "password": password}, f"userpass login as '{username}'"

    def _cert_payload(self) -> tuple[dict[str, str], str]:
        """The certificate itself goes in the TLS handshake (the session's client certificate);
        the payload names the cert role, if any."""
        config = self.config
        if not (config.client_cert and config.client_key):
            raise UsageError(
                "auth method cert needs a client certificate and key"
                " (--client-cert and --client-key, or [vault] client_cert and client_key)"
            )
        plain = [a for a in server_settings(config).candidates if not a.lower().startswith("https:")]
        if plain:
            raise UsageError(
                "auth method cert needs https: the certificate is sent in the TLS handshake,"
                f" not to {plain[0]}"
            )
        read_text(config.client_cert, "client certificate", error=AuthError)
        read_text(config.client_key, "client key", error=AuthError)  # readable; requests loads it
        role = config.role
        return ({"role": role}, f"cert login as role '{role}'") if role else ({}, "cert login")

    def _jwt_path(self) -> str:
        if self.config.jwt_file:
            return self.config.jwt_file
        if self.method == "kubernetes":
            return K8S_TOKEN_PATH
        raise UsageError(f"auth method jwt needs {setting_hint('jwt_file')}")


def logged_in(config: Config, authenticator: Authenticator) -> tuple[VaultClient, Login]:
    """A new client for the configured server with a token from ``authenticator`` (the login
    retried while the server is unreachable); the client is closed if the login fails."""
    client = VaultClient(server_settings(config), "", retry_timeout_s=config.retry_timeout_s)
    try:
        grant = authenticator.login(client)
    except BaseException:
        client.close()
        raise
    log.debug("authenticated to %s (policies: %s)", client.address, ", ".join(client.policies))
    return client, grant


def unwrap_secret_id(client: Client, path: str) -> str:
    """The AppRole secret_id wrapped in the response-wrapping token in ``path``.

    A wrapping token unwraps once. Once the server has answered, the file is removed (the
    token is used up, or useless), as Vault Agent does; it is kept only when the server
    could not be reached, so a restart can try again. A token the server does not know was
    unwrapped before, or expired: if nobody else should have unwrapped it, someone
    intercepted the secret_id, so this is an error that says so."""
    token = wrapping_token(read_secret_file(path, "wrapped secret_id file"), path)
    try:
        data = client.unwrap(token, what=f"unwrapping of the secret_id in {path}")
    except AuthError:
        _remove(path)
        raise AuthError(
            f"the wrapping token in {path} is not valid: it was already unwrapped, or it expired."
            " If nothing else should have unwrapped it, the secret_id may have been intercepted:"
            " revoke that role's secret_ids and issue a new wrapped one"
        ) from None
    _remove(path)
    secret_id = data.get("secret_id")
    if not isinstance(secret_id, str) or not secret_id:
        raise AuthError(f"the wrapping token in {path} does not wrap an AppRole secret_id")
    register_secret(secret_id)
    log.info("unwrapped the secret_id in %s and removed the file", path)
    return secret_id


def wrapping_token(text: str, path: str) -> str:
    """The wrapping token of a wrapped secret_id file: the token alone, or the JSON that
    ``bao write -format=json -wrap-ttl=...`` prints (or its ``wrap_info`` alone, as Vault
    Agent reads it). AuthError naming the file (never its content) for anything else."""
    if not text.startswith("{"):
        return text
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    info = found.get("wrap_info", found) if isinstance(found, dict) else None
    token = info.get("token") if isinstance(info, dict) else None
    if not isinstance(token, str) or not token.strip():
        raise AuthError(f"wrapped secret_id file {path}: JSON without a wrap_info token")
    register_secret(token.strip())
    return token.strip()


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _required(path: str, attr: str, method: str) -> str:
    if not path:
        raise UsageError(f"auth method {method} needs {setting_hint(attr)}")
    return path


def _need_file(path: str, attr: str, method: str, what: str) -> str:
    return read_secret_file(_required(path, attr, method), what)


def read_secret_file(path: str, what: str) -> str:
    """The stripped text of a credential file; AuthError naming the file (never its content)."""
    value = read_text(path, what, error=AuthError).strip()
    if not value:
        raise AuthError(f"{what} {path} is empty")
    register_secret(value)
    return value
