"""Running one command once its options are known: config, logging, the app call, and
errors mapped to exit codes. No click here (``commands`` parses and calls ``execute``).

``inject -- CMD`` (what the container image's entrypoint runs, options in the environment
or the config file) and ``inject render -c inject.toml`` (an init container) have almost
nothing for click to parse: a command, perhaps a config file, and after ``--`` only CMD's
words. ``plain_command`` parses exactly those shapes into the options click would give
(anything else is click's to parse, and to explain when it is wrong), so the commonest
starts neither import click nor build its parser.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import log
from ..config import CliOptions, Config
from ..errors import EXIT_INTERNAL, InjectError
from . import options

logger = logging.getLogger("vault_inject.cli")  # the name operators' filters already use

Action = Callable[[Config, dict[str, str]], int]

_NOT_CONFIG = frozenset(
    {"config_path", "templates", "env", "verbose", "quiet", "debug", "command", "secrets"}
)


# The commands a plain command line can name; ``run`` is also what none names.
PLAIN_COMMANDS = ("run", "render", "watch", "check", "plan")
_CONFIG_FLAGS = ("-c", "--config")


def plain_options(command: str, child: Sequence[str] = ()) -> dict[str, Any]:
    """The keyword arguments click gives ``command`` with no option on the command line
    (``child``: the words after ``--`` of ``run``; the others take no COMMAND)."""
    unset = options.unset_options(command)
    return {**unset, "command": tuple(child)} if command == "run" else unset


def plain_command(args: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
    """``[COMMAND] [-c PATH | --config PATH | --config=PATH | -cPATH] [-- CMD...]`` (``--``
    for run only, and required there): the command and what click would pass it. None for
    any other shape, a repeated or empty config, or a value that looks like an option."""
    command, rest = (
        (args[0], list(args[1:])) if args[:1] and args[0] in PLAIN_COMMANDS else ("run", list(args))
    )
    end = rest.index("--") if "--" in rest else len(rest)
    flags, child = rest[:end], rest[end + 1 :]
    if (command == "run") != (end < len(rest)):
        return None  # run needs `-- CMD`; the others take no COMMAND
    plain, config = _config_path(flags)
    if not plain:
        return None
    kwargs = plain_options(command, child)
    kwargs["config_path"] = config
    return command, kwargs


def _config_path(flags: Sequence[str]) -> tuple[bool, str | None]:
    """(True, the config path or None) when ``flags`` are nothing or one config option;
    (False, None) when they are anything else."""
    if not flags:
        return True, None
    if len(flags) == 2 and flags[0] in _CONFIG_FLAGS:
        value = flags[1]
    elif len(flags) == 1 and flags[0].startswith("--config="):
        value = flags[0].removeprefix("--config=")
    elif len(flags) == 1 and flags[0].startswith("-c") and not flags[0].startswith("--"):
        value = flags[0][2:]
    else:
        return False, None
    if not value or value.startswith("-"):
        return False, None
    return True, value


def run_plain(command: str, kwargs: Mapping[str, Any]) -> None:
    """Run ``command`` with the options ``plain_command`` parsed, as click would."""
    from . import app

    actions: dict[str, Action] = {
        "run": lambda config, environ: app.cmd_run(config, environ, kwargs["command"]),
        "render": app.cmd_render,
        "watch": app.cmd_watch,
        "check": app.cmd_check,
        "plan": app.cmd_plan,
    }
    execute(kwargs, actions[command])


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
        if config.templates or config.env:  # something to render: the server will be asked
            app.load_client()
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
