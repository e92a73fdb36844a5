"""The command line: click only. Parse, set up logging, call app, map errors to exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from .._version import __version__
from ..errors import EXIT_USAGE
from . import options
from .launch import execute

F = TypeVar("F", bound=Callable[..., Any])
COMMANDS = ("run", "render", "watch", "check", "plan", "dev")
CHILD_ARGV = click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="-- COMMAND [ARG]...")
DEV_ARGV = click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND [ARG]...]")
OTHER = "Other"
_COL_MAX = 30  # click's own limit for the first column of a help screen
_SECTION_OF = {option.attr: option.section for option in options.OPTIONS}


class SectionedCommand(click.Command):
    """A command whose help lists its options by section (server, auth, outputs, ...), and
    whose "No such option" names the commands that do take the option."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """One help section per option section, in ``options.SECTIONS`` order."""
        rows: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                rows.setdefault(_SECTION_OF.get(param.name or "", OTHER), []).append(record)
        # One first column for every section: the longest term, at most click's limit (a
        # longer term gets a line of its own, its text starting at that column).
        width = min(max((len(term) for found in rows.values() for term, _ in found), default=0), _COL_MAX)
        for title in (*options.SECTIONS, OTHER):
            if title in rows:
                with formatter.section(title):
                    formatter.write_dl(
                        [(term.ljust(width), text) for term, text in rows[title]], col_max=_COL_MAX
                    )

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """click's parse; an option another command takes is named as such."""
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            takers = options.commands_taking(exc.option_name)
            if not takers:
                raise
            message = (
                f"No such option '{exc.option_name}' for {self.name}: it is an option of {_listed(takers)}."
            )
            raise click.NoSuchOption(exc.option_name, message, ctx=ctx) from None


def _listed(commands: list[str]) -> str:
    """``inject 'run', 'watch' and 'dev'``."""
    words = [f"'{name}'" for name in commands]
    return "inject " + (", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0])


def with_options(command: str) -> Callable[[F], F]:
    """Decorate a command function with the options ``command`` takes (``options.OPTIONS``)."""

    def decorate(func: F) -> F:
        for option in reversed(options.options_of(command)):
            func = _click_option(option)(func)
        return func

    return decorate


def _click_option(option: options.Option) -> Callable[[F], F]:
    settings: dict[str, Any] = {"help": option.help}
    if option.kind == "value":
        settings.update(default=None, metavar=option.metavar)
    elif option.kind == "multiple":
        settings.update(multiple=True, metavar=option.metavar)
    elif option.kind == "flag":
        settings.update(is_flag=True, default=None)
    else:
        settings.update(is_flag=True)
    return click.option(*option.names, option.attr, **settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="inject")
def cli() -> None:
    """Render Vault/OpenBao secrets into files and env vars, run the app, keep them fresh.

    \b
    inject [OPTIONS] -- COMMAND [ARG]...   (the same as: inject run [OPTIONS] -- COMMAND)
    inject COMMAND --help                  (the options of COMMAND)
    """


@cli.command("run", cls=SectionedCommand)
@with_options("run")
@CHILD_ARGV
def run_cmd(**kwargs: Any) -> None:
    """Render, start COMMAND, keep secrets fresh (the default command)."""
    from . import app

    execute(kwargs, lambda config, environ: app.cmd_run(config, environ, kwargs["command"]))


@cli.command("render", cls=SectionedCommand)
@with_options("render")
def render_cmd(**kwargs: Any) -> None:
    """Render once, write the files, exit 0 (init container, CI)."""
    from . import app

    execute(kwargs, app.cmd_render)


@cli.command("watch", cls=SectionedCommand)
@with_options("watch")
def watch_cmd(**kwargs: Any) -> None:
    """Render and keep re-rendering; no child (sidecar)."""
    from . import app

    execute(kwargs, app.cmd_watch)


@cli.command("plan", cls=SectionedCommand)
@with_options("plan")
def plan_cmd(**kwargs: Any) -> None:
    """Show which files and env names would change, and why; never values."""
    from . import app

    execute(kwargs, app.cmd_plan)


@cli.command("check", cls=SectionedCommand)
@with_options("check")
def check_cmd(**kwargs: Any) -> None:
    """Validate config, templates and read access; write nothing."""
    from . import app

    execute(kwargs, app.cmd_check)


@cli.command("dev", cls=SectionedCommand)
@with_options("dev")
@DEV_ARGV
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
