"""The plain command lines (``inject -- CMD``, ``inject render -c FILE``, ...) run without
click: the options they run with are exactly the ones click would parse from them, and
every other shape is left to click."""

from __future__ import annotations

from typing import Any

import click
import pytest

from vault_inject.cli import commands as cli
from vault_inject.cli import launch, options

CLICK_COMMANDS: dict[str, click.Command] = {
    "run": cli.run_cmd,
    "render": cli.render_cmd,
    "watch": cli.watch_cmd,
    "check": cli.check_cmd,
    "plan": cli.plan_cmd,
}


def clicks_parse(args: list[str]) -> tuple[str, dict[str, Any]]:
    """The command and params click gives ``inject ARGS`` (the default command included)."""
    full = cli._with_default_command(args)
    command = CLICK_COMMANDS[full[0]]
    return full[0], command.make_context(full[0], full[1:]).params


@pytest.mark.parametrize(
    "args",
    [
        ["--", "true"],
        ["--", "sh", "-c", "exit 3"],
        ["--", "app", "--", "-v", "--config", "x"],
        ["--"],
        ["run", "--", "true"],
        ["-c", "inject.toml", "--", "app"],
        ["--config", "/etc/inject/inject.toml", "--", "app", "-c", "other"],
        ["run", "--config=inject.toml", "--", "app"],
        ["-cinject.toml", "--", "app"],
        ["render"],
        ["render", "-c", "/tmp/rb/inject-50.toml"],
        ["render", "--config", "a b.toml"],
        ["render", "--config=inject.toml"],
        ["render", "-c=odd.toml"],  # click takes "=odd.toml" as the value too
        ["watch", "-c", "inject.toml"],
        ["check"],
        ["plan", "--config", "inject.toml"],
    ],
)
def test_plain_command_lines_parse_as_click_parses_them(args: list[str]) -> None:
    assert launch.plain_command(args) == clicks_parse(args)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["--version"],
        ["render", "--help"],
        ["render", "-v"],
        ["render", "-c"],
        ["render", "--config"],
        ["render", "-c", ""],
        ["render", "--config="],
        ["render", "-c", "a.toml", "-c", "b.toml"],
        ["render", "-c", "-v"],
        ["render", "-t", "a.j2:a.txt"],
        ["render", "--", "x"],
        ["render", "extra"],
        ["run"],
        ["run", "-c", "a.toml"],
        ["python", "app.py"],
        ["-e", "A=vault:secret/a#b", "--", "app"],
        ["--no-watch", "--", "app"],
        ["dev", "--", "app"],
    ],
)
def test_any_other_command_line_is_left_to_click(args: list[str]) -> None:
    assert launch.plain_command(args) is None


@pytest.mark.parametrize("name", cli.COMMANDS)
def test_each_command_has_exactly_the_options_of_the_table(name: str) -> None:
    """The option table (``options``) is the one cli builds each command's click options
    from: the same names, and the plain path's defaults are click's."""
    command = cli.cli.commands[name]
    taken = {param.name for param in command.params if isinstance(param, click.Option)} - {"help"}
    assert taken == {option.attr for option in options.options_of(name)}
    defaults = command.make_context(name, ["--", "x"] if name in ("run", "dev") else []).params
    defaults.pop("command", None)
    assert defaults == options.unset_options(name)


def test_every_plain_command_is_a_click_command() -> None:
    assert set(launch.PLAIN_COMMANDS) == set(CLICK_COMMANDS)
    assert set(launch.PLAIN_COMMANDS) <= set(cli.COMMANDS)
