"""The exception tree of vault-inject.

Every failure inject itself reports is one of these, and each kind has its own
documented exit code (see ``EXIT_*`` and the README; success is 0, a child's own exit
code is passed through, a signal death is 128+N)::

    InjectError                    (exit 1: an unexpected internal failure)
    ├── UsageError                 (exit 2: bad option, config file, reference, duration)
    ├── RenderError                (exit 3: a template or env template failed to render)
    ├── SecretError                (exit 4: auth or secret problem)
    │   ├── AuthError              (no usable token, login refused, token expired)
    │   ├── PermissionDenied       (HTTP 403 on a path; ``token_rejected``: the token itself)
    │   └── SecretNotFound         (no secret at a path, or no such key / version)
    ├── UnreachableError           (exit 5: the server did not answer before the deadline)
    │   └── TransientError         (one failed attempt worth repeating: connection, 429, 5xx)
    ├── FileWriteError             (exit 6: a destination could not be written safely)
    └── CommandError               (exit 126/127: the command could not be started)

Messages name the thing (file, template and line, path, key) and the fix, and never
contain a secret value, a token or a server's response body.

Third-party exceptions are translated into these at one boundary each, and whether the
original is chained is decided by what it can carry:

* ``raise Ours(...) from exc`` where the cause cannot carry a secret: ``OSError`` of a
  file or socket we opened (it holds a path and an errno), ``KeyError``/``ValueError``
  of a config value or option (the value is already quoted in our message), TOML syntax
  errors of our config files (line and column), ``pwd``/``grp`` lookups.
* ``raise Ours(...) from None`` where the cause could carry a secret or a response body:
  anything from requests/hvac or the adapter (bodies, URLs with query strings), Jinja
  and the sandbox (a message can quote a value computed from a secret), a
  ``UnicodeDecodeError``/``UnicodeEncodeError`` (it holds the bytes: of a credential
  file, of rendered text), base64 decoding of a secret, and an ``InjectError`` raised
  again with more context (its message is re-masked; the original is not kept).

A chained cause only shows in a traceback (``--debug``); the one line inject prints is
always our own message.
"""

from __future__ import annotations

EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_RENDER = 3
EXIT_SECRET = 4
EXIT_UNREACHABLE = 5
EXIT_FILE = 6
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_SIGNAL_BASE = 128


class InjectError(Exception):
    """Base of every error inject reports; ``exit_code`` is what the process exits with."""

    exit_code = EXIT_INTERNAL


class UsageError(InjectError):
    """Raised for bad command-line options, config files, references or durations."""

    exit_code = EXIT_USAGE


class RenderError(InjectError):
    """Raised when a template or an env template fails to render (names template and line)."""

    exit_code = EXIT_RENDER


class SecretError(InjectError):
    """Raised when a secret cannot be read for a reason other than the network."""

    exit_code = EXIT_SECRET


class AuthError(SecretError):
    """Raised when no usable token exists or the server refuses the login."""


class PermissionDenied(SecretError):
    """Raised when the server answers 403 for a path (``token_rejected``: the token itself
    was refused, not just this path)."""

    def __init__(self, message: str, *, token_rejected: bool = False) -> None:
        super().__init__(message)
        self.token_rejected = token_rejected


class SecretNotFound(SecretError):
    """Raised when a path holds no secret, or the secret has no such key or version."""


class UnreachableError(InjectError):
    """Raised when the server did not answer (or kept failing) until the retry deadline."""

    exit_code = EXIT_UNREACHABLE


class TransientError(UnreachableError):
    """One failed attempt that may succeed if repeated (connection error, 429, 5xx)."""


class FileWriteError(InjectError):
    """Raised when a destination cannot be written safely; nothing was replaced."""

    exit_code = EXIT_FILE


class CommandError(InjectError):
    """Raised when the child command cannot be executed (not found: 127, not executable: 126)."""

    def __init__(self, message: str, *, exit_code: int = EXIT_NOT_FOUND) -> None:
        super().__init__(message)
        self.exit_code = exit_code
