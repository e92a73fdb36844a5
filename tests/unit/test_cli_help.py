"""Each command's help screen, from the real command group: only the options that apply to
the command, in sections (server, auth, outputs, keeping fresh, child, logging), each value
with the form it takes (DURATION, SIGNAL, HOST:PORT, the choices) and never TEXT; an option
of another command is refused (exit 2) naming the commands that take it."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from vault_inject.cli import commands as cli
from vault_inject.cli import options
from vault_inject.config import settings

SERVER = [
    "--address",
    "--namespace",
    "--ca-cert",
    "--client-cert",
    "--client-key",
    "--tls-skip-verify",
    "--retry-timeout",
]
AUTH = ["--auth", "--token-file"]
OUTPUTS = ["--config", "--template", "--env", "--trust-config"]
FRESH = ["--poll-interval", "--splay", "--listen"]
CHILD = ["--on-change", "--reload-signal", "--kill-signal", "--kill-timeout"]
LOGGING = ["--log-format", "--log-level", "--verbose", "--quiet", "--debug"]
STATE = ["--state-dir", "--hand-over"]
ONLY_RUN = ["--no-watch", "--mask-output"]
EVERY = {*SERVER, *AUTH, *STATE, *OUTPUTS, "--user", *FRESH, *CHILD, *ONLY_RUN, *LOGGING, "--secrets"}

TAKES = {
    "run": {*SERVER, *AUTH, *STATE, *OUTPUTS, "--user", *FRESH, *CHILD, *ONLY_RUN, *LOGGING},
    "render": {*SERVER, *AUTH, *STATE, *OUTPUTS, "--user", *LOGGING},
    "watch": {*SERVER, *AUTH, *STATE, *OUTPUTS, "--user", *FRESH, *LOGGING},
    "check": {*SERVER, *AUTH, *OUTPUTS, *LOGGING},
    "plan": {*SERVER, *AUTH, *OUTPUTS, *LOGGING},
    "dev": {"--secrets", *OUTPUTS, "--user", *FRESH, *CHILD, *LOGGING},
}
SECTIONS = {
    "run": ["Server", "Auth", "Outputs", "Keeping fresh", "Child", "Logging", "Other"],
    "render": ["Server", "Auth", "Outputs", "Logging", "Other"],
    "watch": ["Server", "Auth", "Outputs", "Keeping fresh", "Logging", "Other"],
    "check": ["Server", "Auth", "Outputs", "Logging", "Other"],
    "plan": ["Server", "Auth", "Outputs", "Logging", "Other"],
    "dev": ["Dev server", "Outputs", "Keeping fresh", "Child", "Logging", "Other"],
}
METAVARS = {
    "--address": "URL",
    "--namespace": "NAMESPACE",
    "--client-cert": "FILE",
    "--client-key": "FILE",
    "--ca-cert": "FILE",
    "--retry-timeout": "DURATION",
    "--auth": "[token|approle|jwt|kubernetes|cert|userpass]",
    "--token-file": "FILE",
    "--state-dir": "DIR",
    "--config": "FILE",
    "--template": "SRC:DEST",
    "--env": "NAME=VALUE",
    "--user": "USER[:GROUP]",
    "--poll-interval": "DURATION",
    "--splay": "DURATION",
    "--listen": "HOST:PORT",
    "--on-change": "[restart|signal|none]",
    "--reload-signal": "SIGNAL",
    "--kill-signal": "SIGNAL",
    "--kill-timeout": "DURATION",
    "--log-format": "[text|json]",
    "--log-level": "[debug|info|warning|error]",
    "--secrets": "FILE",
}


def help_screen(command: str) -> str:
    """``inject COMMAND --help`` from the real command group."""
    result = CliRunner().invoke(cli.cli, [command, "--help"], prog_name="inject")
    assert result.exit_code == 0, result.output
    return result.output


def listed(screen: str) -> dict[str, str]:
    """Every long option on a help screen -> the metavar after it ("" for a flag)."""
    found = re.findall(r"^  (?:-\w, )?(--[\w-]+)(?: (\S+))?", screen, flags=re.MULTILINE)
    return dict(found)


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_help_lists_only_the_options_the_command_takes(command: str) -> None:
    """Each help screen lists exactly its command's options (and --help)."""
    assert set(listed(help_screen(command))) - {"--help"} == TAKES[command]
    assert EVERY - TAKES[command] - {"--help"}, "every command lacks some option"


def test_render_help_offers_nothing_of_a_long_running_command() -> None:
    """`inject render --help` offers no watching, child, splay or listen options."""
    shown = listed(help_screen("render"))
    for name in [
        "--no-watch",
        "--on-change",
        "--reload-signal",
        "--kill-signal",
        "--kill-timeout",
        "--splay",
        "--listen",
        "--poll-interval",
    ]:
        assert name not in shown


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_help_groups_options_in_sections_in_order(command: str) -> None:
    """Options come in titled sections, always in the same order."""
    screen = help_screen(command)
    titles = re.findall(r"^(\S[^:\n]*):$", screen, flags=re.MULTILINE)
    assert titles == SECTIONS[command]


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_help_shows_what_each_value_takes_never_text(command: str) -> None:
    """Each value option shows its form or its choices; flags show none; nothing says TEXT."""
    screen = help_screen(command)
    shown = listed(screen)
    for name, metavar in shown.items():
        assert metavar == METAVARS.get(name, ""), name
    assert "TEXT" not in screen


def test_dev_help_puts_secrets_first() -> None:
    """`inject dev --help` starts its options with --secrets."""
    assert next(iter(listed(help_screen("dev")))) == "--secrets"


def test_help_sections_share_one_column() -> None:
    """Every option's text starts at one column across sections (long terms on their own line)."""
    screen = help_screen("run")
    starts = {
        len(line) - len(line[2:].split("  ", 1)[1].lstrip())
        for line in screen.splitlines()
        if line.startswith("  -") and "  " in line[2:].strip()
    }
    assert len(starts) == 1, starts


def test_choices_shown_are_the_ones_config_accepts() -> None:
    """The choices in the metavars are config's own lists."""
    shown = {option.attr: option.metavar for option in options.OPTIONS}
    assert shown["auth_method"] == "[" + "|".join(settings.AUTH_METHODS) + "]"
    assert shown["on_change"] == "[" + "|".join(settings.ON_CHANGE) + "]"
    assert shown["log_format"] == "[" + "|".join(settings.LOG_FORMATS) + "]"
    assert shown["log_level"] == "[" + "|".join(settings.LOG_LEVELS) + "]"


@pytest.mark.parametrize(
    ("args", "takers"),
    [
        (["render", "--listen", "127.0.0.1:9102", "--splay", "5s"], "'run', 'watch' and 'dev'"),
        (["check", "--no-watch"], "'run'"),
        (["dev", "--address", "http://x:8200"], "'run', 'render', 'watch', 'check' and 'plan'"),
    ],
)
def test_an_option_of_another_command_is_refused_naming_who_takes_it(args: list[str], takers: str) -> None:
    """Given to a command that does not take it, an option is click's usage error (exit 2),
    naming the commands that do."""
    result = CliRunner().invoke(cli.cli, args, prog_name="inject")
    assert result.exit_code == 2
    assert f"No such option '{args[1]}' for {args[0]}: it is an option of inject {takers}." in result.output


def test_a_misspelt_option_still_gets_clicks_suggestion() -> None:
    """An option no command has keeps click's "Did you mean" suggestion."""
    result = CliRunner().invoke(cli.cli, ["render", "--adress", "x"], prog_name="inject")
    assert result.exit_code == 2
    assert "No such option '--adress'" in result.output
    assert "'--address'" in result.output
