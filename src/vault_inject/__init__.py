"""vault-inject: Vault/OpenBao secrets into files and env vars; runs the app, keeps them fresh.

As a library (``from vault_inject import Secrets``) it gives a running Python service the
same settings, auth methods, lease handling and redaction. ``Secrets`` and ``Lease`` are
loaded on first use, so importing the package loads no HTTP client, CLI or file watcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._face import lazy_names
from ._version import __version__ as __version__
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
    from .runtime import Lease, Secrets

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
__getattr__ = lazy_names(__name__, {"Lease": "runtime", "Secrets": "runtime"})
