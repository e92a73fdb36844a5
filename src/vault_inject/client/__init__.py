"""The server client: hvac with inject's adapter (deadlines, failover, TLS), the Vault
operations as hvac calls, logins, revocation at exit, and the pure lease and backoff decisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._face import lazy_names

if TYPE_CHECKING:
    from .adopt import LastKnownGood, Reusing, reconnect, resumed, take_secrets, take_token
    from .auth import Authenticator, logged_in
    from .handover import State, binding, content, decode, encode, snapshot, stale_values, worth_saving
    from .leases import Plan
    from .revocation import release
    from .vault import Login, ServerSettings, VaultClient, server_settings

__all__ = [
    "Authenticator",
    "LastKnownGood",
    "Login",
    "Plan",
    "Reusing",
    "ServerSettings",
    "State",
    "VaultClient",
    "binding",
    "content",
    "decode",
    "encode",
    "logged_in",
    "reconnect",
    "release",
    "resumed",
    "server_settings",
    "snapshot",
    "stale_values",
    "take_secrets",
    "take_token",
    "worth_saving",
]
__getattr__ = lazy_names(
    __name__,
    {
        "Authenticator": "auth",
        "Reusing": "adopt",
        "LastKnownGood": "adopt",
        "reconnect": "adopt",
        "stale_values": "handover",
        "take_secrets": "adopt",
        "take_token": "adopt",
        "resumed": "adopt",
        "content": "handover",
        "worth_saving": "handover",
        "State": "handover",
        "binding": "handover",
        "decode": "handover",
        "encode": "handover",
        "snapshot": "handover",
        "logged_in": "auth",
        "Login": "vault",
        "Plan": "leases",
        "release": "revocation",
        "server_settings": "vault",
        "ServerSettings": "vault",
        "VaultClient": "vault",
    },
)
