"""The server client: hvac with inject's adapter (deadlines, failover, TLS), the Vault
operations as hvac calls, logins, revocation at exit, and the pure lease and backoff decisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._face import lazy_names

if TYPE_CHECKING:
    from .auth import Authenticator, logged_in
    from .leases import Plan
    from .revocation import release
    from .vault import Login, ServerSettings, VaultClient, server_settings

__all__ = [
    "Authenticator",
    "Login",
    "Plan",
    "ServerSettings",
    "VaultClient",
    "logged_in",
    "release",
    "server_settings",
]
__getattr__ = lazy_names(
    __name__,
    {
        "Authenticator": "auth",
        "logged_in": "auth",
        "Login": "vault",
        "Plan": "leases",
        "release": "revocation",
        "server_settings": "vault",
        "ServerSettings": "vault",
        "VaultClient": "vault",
    },
)
