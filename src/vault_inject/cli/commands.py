"""The command line: click only. Parse, set up logging, call app, map errors to exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from .._version import __version__
from ..errors import EXIT_USAGE
from .launch import VALUE_OPTIONS, execute

F = TypeVar("F", bound=Callable[..., Any])
COMMANDS = ("run", "render", "watch", "check", "plan", "dev")
CHILD_ARGV = click.argument("command", nargs=-1, type=click.UNPROCESSED)


def shared_options(func: F) -> F:
    """The options every rendering command takes."""
    for names, attr, help_text in reversed(VALUE_OPTIONS):
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
        click.option(
            "--trust-config",
            "trust_config",
            is_flag=True,
            default=None,
            help="As root, read a config file or template that another user could write"
            " (env INJECT_TRUST_CONFIG=1; default: refused).",
        ),
        click.option(
            "--hand-over",
            "hand_over",
            is_flag=True,
            default=None,
            help="Leave inject's token and leases unrevoked at exit, in the state (--state-dir),"
            " for the next inject to reuse (env INJECT_HAND_OVER=1).",
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


@cli.command("run", context_settings={"ignore_unknown_options": False})
@shared_options
@CHILD_ARGV
def run_cmd(**kwargs: Any) -> None:
    """Render, start COMMAND, keep secrets fresh (the default command)."""
    from . import app

    execute(kwargs, lambda config, environ: app.cmd_run(config, environ, kwargs["command"]))


@cli.command("render")
@shared_options
def render_cmd(**kwargs: Any) -> None:
    """Render once, write the files, exit 0 (init container, CI)."""
    from . import app

    execute(kwargs, app.cmd_render)


@cli.command("watch")
@shared_options
def watch_cmd(**kwargs: Any) -> None:
    """Render and keep re-rendering; no child (sidecar)."""
    from . import app

    execute(kwargs, app.cmd_watch)


@cli.command("plan")
@shared_options
def plan_cmd(**kwargs: Any) -> None:
    """Show which files and env names would change, and why; never values."""
    from . import app

    execute(kwargs, app.cmd_plan)


@cli.command("check")
@shared_options
def check_cmd(**kwargs: Any) -> None:
    """Validate config, templates and read access; write nothing."""
    from . import app

    execute(kwargs, app.cmd_check)


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

    execute(
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
