"""How a ``Secrets`` gets its settings and its token: the CLI's own rules, for a library.

Settings come from the same layers as inject's (keyword overrides > ``VAULT_*``/``BAO_*``
and ``INJECT_*`` environment > ``config=`` / ``INJECT_CONFIG`` / ``./inject.toml`` >
defaults), and the token from the same ``auth.Authenticator`` (token, approle, jwt,
kubernetes, cert, userpass). Nothing here installs logging handlers or touches the templates of the file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..client import Login, VaultClient, auth
from ..config import CliOptions, Config, build_config, parse_toml, resolve_config_path, trust_config
from ..errors import UsageError
from ..files import read_text
from ..log import register_secret


@dataclass(frozen=True)
class Connection:
    """A logged-in client, the authenticator that can log in again, and the token's grant."""

    config: Config
    client: VaultClient
    authenticator: auth.Authenticator
    grant: Login


def load_config(
    config_path: str | None, overrides: Mapping[str, Any], environ: Mapping[str, str], cwd: str
) -> Config:
    """The merged Config; ``overrides`` play the part of command-line options."""
    path = resolve_config_path(config_path, environ, os.path.isfile)
    cli = CliOptions(values={k: v for k, v in overrides.items() if v is not None})
    data: dict[str, object] = {}
    if path is not None:  # as root, refused when another user could write it (as inject's)
        data = parse_toml(
            read_text(path, "config file", refuse_untrusted=not trust_config(cli, environ)), path
        )
    return build_config(cli, environ, data, config_path=path, cwd=cwd)


def with_token(
    config: Config, environ: Mapping[str, str], token: str | None
) -> tuple[Config, dict[str, str]]:
    """An explicit ``token=`` wins over every other way of finding one."""
    if token is None:
        return config, dict(environ)
    if not token.strip():
        raise UsageError("token= is empty")
    register_secret(token)
    config = dataclasses.replace(config, auth_method="token", token_file="")
    return config, {**environ, "VAULT_TOKEN": token.strip()}


def connect(config: Config, environ: Mapping[str, str]) -> Connection:
    """Log in once (retried while the server is unreachable, up to the retry timeout)."""
    authenticator = auth.Authenticator(config, environ)
    client, grant = auth.logged_in(config, authenticator)
    return Connection(config, client, authenticator, grant)
