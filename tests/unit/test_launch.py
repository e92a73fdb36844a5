"""``inject -- CMD`` runs without click: the options it runs with are exactly the ones click
would give ``inject run -- CMD``."""

from __future__ import annotations

import pytest

from vault_inject import cli, launch


@pytest.mark.parametrize(
    "command", [["true"], ["sh", "-c", "exit 3"], ["app", "--", "-v", "--config", "x"], []]
)
def test_plain_options_match_clicks_parse_of_run(command: list[str]) -> None:
    """launch.plain_options(CMD) equals the params click parses for `run -- CMD`."""
    context = cli.run_cmd.make_context("run", ["--", *command])
    assert launch.plain_options(command) == context.params


def test_every_value_option_of_the_table_is_a_click_option() -> None:
    """The option table launch keeps is the one cli builds its click options from."""
    names = {param.name for param in cli.run_cmd.params}
    assert {attr for _, attr, _ in launch.VALUE_OPTIONS} <= names
    assert set(launch.NO_OPTIONS) <= names
