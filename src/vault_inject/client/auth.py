"""inject's own token: found (token auth) or obtained by login (approle, jwt, kubernetes).

Token auth order: a configured token file (``--token-file`` / ``[auth] token_file``),
then ``VAULT_TOKEN``, then ``BAO_TOKEN``, then ``~/.vault-token``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Protocol

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


DEFAULT_MOUNTS = {"approle": "approle", "jwt": "jwt", "kubernetes": "kubernetes"}
K8S_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path


class Client(Protocol):
    """What logging in needs from the server connection (VaultClient)."""

    def set_token(self, token: str) -> None: ...
    def lookup_self(self) -> TokenInfo: ...
    def login(self, method: str, mount: str, credentials: Mapping[str, str], *, what: str) -> Login: ...


class Authenticator:
    """Gets inject a token with the configured method, and again when it cannot be renewed.

    AppRole's secret_id is read once (with ``remove_secret_id_file`` the file is removed
    after reading, so nothing that gets the file system later can log in) and kept in
    memory for re-logins; a JWT is re-read from its file at every login, so a rotated
    service-account token is picked up.
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
        payload, what = self._payload()
        login = client.login(self.method, mount, payload, what=what)
        log.info("logged in with %s (token ttl %ds)", self.method, login.ttl_s)
        return login

    def _payload(self) -> tuple[dict[str, str], str]:
        if self.method == "approle":
            role_id = _need_file(self.config.role_id_file, "role_id_file", "role id file")
            return {"role_id": role_id, "secret_id": self._approle_secret_id()}, "approle login"
        role = self.config.role
        if not role:
            raise UsageError(f"auth method {self.method} needs {setting_hint('role')}")
        jwt = read_secret_file(self._jwt_path(), "JWT file")
        return {"role": role, "jwt": jwt}, f"{self.method} login as role '{role}'"

    def _approle_secret_id(self) -> str:
        if self._secret_id is None:
            path = self.config.secret_id_file
            self._secret_id = read_secret_file(_required(path, "secret_id_file"), "secret_id file")
            if self.config.remove_secret_id_file:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        return self._secret_id

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


def _required(path: str, attr: str) -> str:
    if not path:
        raise UsageError(f"auth method approle needs {setting_hint(attr)}")
    return path


def _need_file(path: str, attr: str, what: str) -> str:
    return read_secret_file(_required(path, attr), what)


def read_secret_file(path: str, what: str) -> str:
    """The stripped text of a credential file; AuthError naming the file (never its content)."""
    value = read_text(path, what, error=AuthError).strip()
    if not value:
        raise AuthError(f"{what} {path} is empty")
    register_secret(value)
    return value
