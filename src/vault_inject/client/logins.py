"""The login calls per auth method (hvac's ``auth`` API) and the unwrapping of a
response-wrapped secret_id: what ``VaultClient.login`` and ``unwrap`` send."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol
from urllib.parse import quote

from ..errors import AuthError, PermissionDenied, SecretError, SecretNotFound, UsageError
from .answers import dict_of


class TlsFiles(Protocol):
    """The client certificate and key a cert login presents (``ServerSettings``)."""

    @property
    def client_cert(self) -> str: ...
    @property
    def client_key(self) -> str: ...


class Unwrapper(Protocol):
    """What unwrapping needs of ``VaultClient``."""

    @property
    def hvac(self) -> Any: ...
    @property
    def token(self) -> str: ...
    @property
    def address(self) -> str: ...

    def set_token(self, token: str) -> None: ...

    def call(
        self, what: str, budget_s: float | None, since: float | None = None
    ) -> AbstractContextManager[None]:
        """Within this block requests are ``what``, retried within ``budget_s``."""
        ...  # pragma: no cover - a protocol


def request(auth: Any, settings: TlsFiles, method: str, mount: str, credentials: Mapping[str, str]) -> Any:
    """The login call of ``method`` (hvac's ``auth`` API) at ``mount``; use_token=False: the
    token is checked (and then set) by ``VaultClient.login``."""
    if method == "approle":
        return auth.approle.login(
            credentials["role_id"], credentials["secret_id"], use_token=False, mount_point=mount
        )
    if method == "jwt":
        return auth.jwt.jwt_login(credentials["role"], credentials["jwt"], use_token=False, path=mount)
    if method == "kubernetes":
        return auth.kubernetes.login(
            credentials["role"], credentials["jwt"], use_token=False, mount_point=mount
        )
    if method == "userpass":
        username = quote(credentials["username"], safe="@.-_+")  # one path segment
        return auth.userpass.login(username, credentials["password"], use_token=False, mount_point=mount)
    if method == "cert":
        # The session presents the certificate in the TLS handshake; hvac only checks the
        # files exist (the adapter keeps its own TLS settings).
        return auth.cert.login(
            name=credentials.get("role", ""),
            cert_pem=settings.client_cert,
            key_pem=settings.client_key,
            mount_point=mount,
            use_token=False,
        )
    raise UsageError(f"unknown auth method {method!r}")


def unwrap(client: Unwrapper, wrapping_token: str, *, what: str, budget_s: float | None) -> dict[str, Any]:
    """The data of the response wrapped in ``wrapping_token``, which this uses up. The
    wrapping token is the request's token (as Vault's own client sends it), so no other
    token is needed; the client's token is put back afterwards. AuthError when the
    server refuses it (already unwrapped, expired, or never issued).
    (POST /sys/wrapping/unwrap)"""
    own = client.token
    client.set_token(wrapping_token)
    try:
        with client.call(what, budget_s):
            body = dict_of(client.hvac.sys.unwrap())
    except SecretError as exc:
        raise AuthError(f"{what} refused by {client.address}: {refusal(exc)}") from None
    finally:
        client.set_token(own)
    return dict_of(body.get("data"))


def refusal(exc: Exception) -> str:
    """How a refused login or renewal is named: the kind of refusal, never the server's text."""
    if isinstance(exc, PermissionDenied):
        return "permission denied"
    if isinstance(exc, SecretNotFound):
        return "no such auth mount or role"
    return "rejected"
