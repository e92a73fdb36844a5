"""Settings: the TOML file, the environment and the command line merged into one frozen
``Config`` (pure; durations parsed here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._face import lazy_names

if TYPE_CHECKING:
    from .settings import (
        AUTH_ENV_VARS,
        SYSTEMD_ENV_VARS,
        CliOptions,
        Config,
        build_config,
        parse_toml,
        resolve_config_path,
        setting_hint,
        split_listen,
        template_commands,
        trust_config,
    )

__all__ = [
    "AUTH_ENV_VARS",
    "SYSTEMD_ENV_VARS",
    "CliOptions",
    "Config",
    "build_config",
    "parse_toml",
    "resolve_config_path",
    "setting_hint",
    "split_listen",
    "template_commands",
    "trust_config",
]
__getattr__ = lazy_names(
    __name__,
    {
        "AUTH_ENV_VARS": "settings",
        "SYSTEMD_ENV_VARS": "settings",
        "build_config": "settings",
        "CliOptions": "settings",
        "Config": "settings",
        "parse_toml": "settings",
        "resolve_config_path": "settings",
        "setting_hint": "settings",
        "split_listen": "settings",
        "template_commands": "settings",
        "trust_config": "settings",
    },
)
