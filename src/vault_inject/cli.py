"""The command line: click only. Parse, set up logging, call app, map errors to exit codes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from . import __version__, log
from .config import CliOptions, Config
from .errors import EXIT_INTERNAL, EXIT_USAGE, InjectError

logger = logging.getLogger("vault_inject.cli")

F = TypeVar("F", bound=Callable[..., Any])
COMMANDS = ("run", "render", "watch", "check", "plan", "dev")
CHILD_ARGV = click.argument("command", nargs=-1, type=click.UNPROCESSED)

# name on the command line -> Config attribute
_VALUE_OPTIONS: tuple[tuple[tuple[str, ...], str, str], ...] = (
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


def shared_options(func: F) -> F:
    """The options every rendering command takes."""
    for names, attr, help_text in reversed(_VALUE_OPTIONS):
        func = click.option(*names, attr, default=None, help=help_text)(func)
    decorators = [
        click.option(
            "-c",
            "--config",
            "config_path",
            default=None,
            help="TOML config (default ./inject.toml; env INJECT_CONFIG).",
        ),
        click.option(
            "-t",
            "--template",
            "templates",
            multiple=True,
            help="Render template SRC to DEST (SRC:DEST, repeatable).",
        ),
        click.option(
            "-e",
            "--env",
            "env",
            multiple=True,
            help="Child env var NAME=VALUE; VALUE a vault:PATH#KEY ref or Jinja (repeatable).",
        ),
        click.option(
            "--address",
            "address",
            multiple=True,
            help="Server address (env VAULT_ADDR, else BAO_ADDR); repeat for an HA cluster's"
            " nodes, used in order with failover (env INJECT_ADDRESSES=URL,URL).",
        ),
        click.option(
            "--tls-skip-verify",
            "tls_skip_verify",
            is_flag=True,
            default=None,
            help="Do not verify the server's TLS certificate.",
        ),
        click.option(
            "--no-watch",
            "no_watch",
            is_flag=True,
            default=None,
            help="Render, then exec the command in place of inject.",
        ),
        click.option("-v", "--verbose", "verbose", is_flag=True, help="Log debug messages."),
        click.option("-q", "--quiet", "quiet", is_flag=True, help="Log warnings and errors only."),
        click.option("--debug", "debug", is_flag=True, help="Debug logs and tracebacks."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="inject")
def cli() -> None:
    """Render Vault/OpenBao secrets into files and env vars, run the app, keep them fresh.

    inject [OPTIONS] -- COMMAND [ARG]...   (same as: inject run [OPTIONS] -- COMMAND)
    """


def _cli_options(kwargs: dict[str, Any]) -> CliOptions:
    skip = {"config_path", "templates", "env", "verbose", "quiet", "debug", "command", "secrets"}
    values = {k: v for k, v in kwargs.items() if k not in skip and v is not None}
    values.update(_addresses(values.pop("address", ())))
    return CliOptions(values=values, templates=tuple(kwargs["templates"]), env=tuple(kwargs["env"]))


def _addresses(given: tuple[str, ...]) -> dict[str, Any]:
    """One ``--address`` is used as given (as before lists); several are the address list."""
    if len(given) == 1:
        return {"address": given[0]}
    return {"addresses": given} if given else {}


def _log_level(kwargs: dict[str, Any], config: Config | None) -> str:
    if kwargs.get("debug") or kwargs.get("verbose"):
        return "debug"
    if kwargs.get("quiet"):
        return "warning"
    return config.log_level if config else (kwargs.get("log_level") or "info")


def _execute(kwargs: dict[str, Any], action: Callable[[Config, dict[str, str]], int]) -> None:
    """Load config, set up logging, run ``action``; exit with its code or the error's."""
    from . import app  # deferred: keeps `inject --help` fast

    environ = dict(os.environ)
    log.setup(level=_log_level(kwargs, None), fmt=kwargs.get("log_format") or "text")
    try:
        config = app.load_config(_cli_options(kwargs), kwargs["config_path"], environ, os.getcwd())
        log.setup(level=_log_level(kwargs, config), fmt=config.log_format)
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


@cli.command("run", context_settings={"ignore_unknown_options": False})
@shared_options
@CHILD_ARGV
def run_cmd(**kwargs: Any) -> None:
    """Render, start COMMAND, keep secrets fresh (the default command)."""
    from . import app

    _execute(kwargs, lambda config, environ: app.cmd_run(config, environ, kwargs["command"]))


@cli.command("render")
@shared_options
def render_cmd(**kwargs: Any) -> None:
    """Render once, write the files, exit 0 (init container, CI)."""
    from . import app

    _execute(kwargs, app.cmd_render)


@cli.command("watch")
@shared_options
def watch_cmd(**kwargs: Any) -> None:
    """Render and keep re-rendering; no child (sidecar)."""
    from . import app

    _execute(kwargs, app.cmd_watch)


@cli.command("plan")
@shared_options
def plan_cmd(**kwargs: Any) -> None:
    """Show which files and env names would change, and why; never values."""
    from . import app

    _execute(kwargs, app.cmd_plan)


@cli.command("check")
@shared_options
def check_cmd(**kwargs: Any) -> None:
    """Validate config, templates and read access; write nothing."""
    from . import app

    _execute(kwargs, app.cmd_check)


@cli.command("dev")
@shared_options
@click.option(
    "--secrets",
    "secrets",
    default=None,
    help="TOML file of secrets to load (default ./dev-secrets.toml).",
)
@CHILD_ARGV
def dev_cmd(**kwargs: Any) -> None:
    """Start an embedded OpenBao dev server seeded from a file, then run as `inject`."""
    from . import dev

    _execute(
        kwargs,
        lambda config, environ: dev.cmd_dev(config, environ, kwargs["secrets"], kwargs["command"]),
    )


def _with_default_command(args: Sequence[str]) -> list[str]:
    """``inject [OPTIONS] -- CMD`` means ``inject run [OPTIONS] -- CMD``."""
    args = list(args)
    if not args or args[0] in COMMANDS or args[0] in ("-h", "--help", "--version"):
        return args
    return ["run", *args]


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    args = _with_default_command(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="inject", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        sys.exit(130)
