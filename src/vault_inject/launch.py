"""Running one command once its options are known: config, logging, the app call, and
errors mapped to exit codes. No click here (``cli`` parses and calls ``execute``).

``inject -- CMD`` (what the container image's entrypoint runs, options in the environment
or the config file) has nothing for click to parse: after ``--`` every word is CMD's.
``run_plain`` runs it with the same options click would give ``inject run -- CMD``, so
the plain PID 1 does not import click (about 10 ms) and build its parser (about 3 ms).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import log
from .config import CliOptions, Config
from .errors import EXIT_INTERNAL, InjectError

logger = logging.getLogger("vault_inject.cli")  # the name operators' filters already use

Action = Callable[[Config, dict[str, str]], int]

# name on the command line -> Config attribute
VALUE_OPTIONS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("--namespace",), "namespace", "Namespace (env VAULT_NAMESPACE / BAO_NAMESPACE)."),
    (("--ca-cert",), "ca_cert", "CA bundle to verify the server (env VAULT_CACERT)."),
    (("--client-cert",), "client_cert", "Client certificate for TLS (env VAULT_CLIENT_CERT)."),
    (("--client-key",), "client_key", "Client key for TLS (env VAULT_CLIENT_KEY)."),
    (("--auth",), "auth_method", "Auth method: token (default), approle, jwt, kubernetes."),
    (("--token-file",), "token_file", "Read inject's token from this file."),
    (
        ("--retry-timeout",),
        "retry_timeout_s",
        "Keep retrying an unreachable server this long (default 60s).",
    ),
    (("--poll-interval",), "poll_interval_s", "How often KV secrets are checked (default 60s)."),
    (("--on-change",), "on_change", "restart | signal | none (default restart)."),
    (("--reload-signal",), "reload_signal", "Signal for --on-change signal (default SIGHUP)."),
    (("--kill-signal",), "kill_signal", "Signal that stops the child (default SIGTERM)."),
    (("--kill-timeout",), "kill_timeout_s", "Wait this long before SIGKILL (default 10s)."),
    (("--user",), "user", "Run the child as USER[:GROUP]; files are owned by it."),
    (("--splay",), "splay_s", "Act on a change after a random delay up to this (default 0)."),
    (
        ("--listen",),
        "listen",
        "Serve /healthz and /metrics on HOST:PORT, e.g. 127.0.0.1:9102 (env INJECT_LISTEN; default off).",
    ),
    (("--log-format",), "log_format", "text (default) or json."),
    (("--log-level",), "log_level", "debug, info (default), warning, error."),
)


# What click gives a command for an option that is not on the command line (see
# cli.shared_options); test_launch checks this against click's own parse.
NO_OPTIONS: Mapping[str, Any] = {
    "config_path": None,
    "address": (),  # repeatable (an HA cluster's nodes), so a tuple
    "templates": (),
    "env": (),
    "tls_skip_verify": None,
    "no_watch": None,
    "verbose": False,
    "quiet": False,
    "debug": False,
}
_NOT_CONFIG = frozenset(
    {"config_path", "templates", "env", "verbose", "quiet", "debug", "command", "secrets"}
)


def plain_options(command: Sequence[str]) -> dict[str, Any]:
    """The keyword arguments of ``inject run -- COMMAND`` with no option given."""
    unset = dict.fromkeys(attr for _, attr, _ in VALUE_OPTIONS)
    return {**unset, **NO_OPTIONS, "command": tuple(command)}


def run_plain(command: Sequence[str]) -> None:
    """``inject -- COMMAND``: exactly ``inject run -- COMMAND``, without click."""
    from . import app

    kwargs = plain_options(command)
    execute(kwargs, lambda config, environ: app.cmd_run(config, environ, kwargs["command"]))


def cli_options(kwargs: Mapping[str, Any]) -> CliOptions:
    """The options that override the environment and the config file."""
    values = {k: v for k, v in kwargs.items() if k not in _NOT_CONFIG and v is not None}
    values.update(_addresses(values.pop("address", ())))
    return CliOptions(values=values, templates=tuple(kwargs["templates"]), env=tuple(kwargs["env"]))


def _addresses(given: tuple[str, ...]) -> dict[str, Any]:
    """One ``--address`` is used as given (as before lists); several are the address list."""
    if len(given) == 1:
        return {"address": given[0]}
    return {"addresses": given} if given else {}


def log_level(kwargs: Mapping[str, Any], config: Config | None) -> str:
    """-v/--debug, then -q, then the config's (or --log-level before the config is read)."""
    if kwargs.get("debug") or kwargs.get("verbose"):
        return "debug"
    if kwargs.get("quiet"):
        return "warning"
    return config.log_level if config else (kwargs.get("log_level") or "info")


def execute(kwargs: Mapping[str, Any], action: Action) -> None:
    """Load config, set up logging, run ``action``; exit with its code or the error's."""
    from . import app  # deferred: keeps `inject --help` fast

    environ = dict(os.environ)
    log.setup(level=log_level(kwargs, None), fmt=kwargs.get("log_format") or "text")
    try:
        config = app.load_config(cli_options(kwargs), kwargs["config_path"], environ, os.getcwd())
        log.setup(level=log_level(kwargs, config), fmt=config.log_format)
        code = action(config, environ)
    except InjectError as exc:
        logger.error("%s", exc, exc_info=bool(kwargs.get("debug")))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        logger.error(
            "internal error: %s (run with --debug for a traceback)",
            type(exc).__name__,
            exc_info=bool(kwargs.get("debug")),
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(code)
