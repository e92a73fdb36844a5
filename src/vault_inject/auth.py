"""Finding inject's token (token auth). Other auth methods log in through vault.py.

Order: a configured token file (``--token-file`` / ``[auth] token_file``), then
``VAULT_TOKEN``, then ``BAO_TOKEN``, then ``~/.vault-token``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .config import Config
from .errors import AuthError

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
        "no token: set VAULT_TOKEN (or BAO_TOKEN), give --token-file, "
        "write ~/.vault-token, or configure [auth] method"
    )


def read_token_file(path: str) -> str:
    """The token in ``path`` (surrounding whitespace removed); AuthError naming the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise AuthError(f"cannot read token file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise AuthError(f"token file {path} is not text") from None
    if not token:
        raise AuthError(f"token file {path} is empty")
    return token
