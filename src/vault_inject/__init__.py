"""vault-inject: Vault/OpenBao secrets into files and env vars; runs the app, keeps them fresh.

As a library (``from vault_inject import Secrets``) it gives a running Python service the
same settings, auth methods, lease handling and redaction. ``Secrets`` and ``Lease`` are
loaded on first use, so importing the package loads no HTTP client, CLI or file watcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AuthError,
    InjectError,
    PermissionDenied,
    SecretError,
    SecretNotFound,
    UnreachableError,
    UsageError,
)

if TYPE_CHECKING:
    from .runtime.cache import Lease
    from .runtime.secrets import Secrets

from ._version import __version__ as __version__

__all__ = [
    "AuthError",
    "InjectError",
    "Lease",
    "PermissionDenied",
    "SecretError",
    "SecretNotFound",
    "Secrets",
    "UnreachableError",
    "UsageError",
]
_LAZY = frozenset({"Lease", "Secrets"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from .runtime import secrets as runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'vault_inject' has no attribute {name!r}")
