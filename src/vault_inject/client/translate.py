"""hvac's exceptions into inject's error tree: the one boundary (``VaultClient``'s
operations) where a refusal from the server becomes a message in our words.

The adapter raises hvac's exception for each refusal status (``hvac.utils.raise_for_error``)
with our own reason as its message and the parsed body as ``json``; no server text ever
reaches a message here (a body may echo request data).
"""

from __future__ import annotations

from hvac import exceptions as hvac_errors

from ..errors import AuthError, InjectError, PermissionDenied, SecretError, SecretNotFound


class NoRoute(SecretNotFound):
    """A 404 for a path no secrets engine (or auth method) is mounted at."""


class Refused(SecretError):
    """Any other refusal; ``reason`` is the status and our reading of it (``HTTP 400 (...)``),
    for a caller that words the message itself (a login)."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"server refused {what}: {reason}")
        self.reason = reason


def translated(exc: hvac_errors.VaultError, what: str) -> InjectError:
    """Our error for hvac's ``exc``, raised while doing ``what``."""
    errors = _errors(exc)
    if isinstance(exc, hvac_errors.InvalidPath):
        if any("no handler for route" in error for error in errors):
            return NoRoute(f"nothing is mounted for {what}")
        return SecretNotFound(f"no secret at {what}")
    if isinstance(exc, hvac_errors.Forbidden):
        # The server answers a bare "permission denied" for an unknown token and wraps the
        # ACL refusal of a valid token ("1 error occurred: ... permission denied").
        return PermissionDenied(
            f"permission denied reading {what}", token_rejected=errors == ["permission denied"]
        )
    if isinstance(exc, hvac_errors.Unauthorized):
        return AuthError(f"not authenticated for {what} (the token is missing or was rejected)")
    reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
    return Refused(what, reason)


def _errors(exc: hvac_errors.VaultError) -> list[str]:
    body = exc.json if isinstance(exc.json, dict) else {}
    errors = body.get("errors")
    return [str(error) for error in errors] if isinstance(errors, list) else []
