"""The address list option (an HA cluster's nodes): ``--address`` repeated,
``INJECT_ADDRESSES``, ``[vault] addresses``; resolved with ``address`` / ``VAULT_ADDR`` as one
setting (highest layer wins), validated, and a single address kept as it was."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from vault_inject.client.adapter import ServerSettings
from vault_inject.config.settings import CliOptions, Config, build_config, parse_toml
from vault_inject.errors import UsageError

A, B, C = "http://a:8200", "http://b:8200", "https://c:8200"


def build(
    *, cli: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None, toml: str = ""
) -> Config:
    """build_config from readable pieces."""
    return build_config(
        CliOptions(values=dict(cli or {})),
        dict(environ or {}),
        parse_toml(toml, "inject.toml"),
        config_path="inject.toml",
        cwd="/srv",
    )


def test_inject_addresses_is_a_comma_separated_list() -> None:
    """INJECT_ADDRESSES=a, b,c gives the list in order; address is its first entry."""
    config = build(environ={"INJECT_ADDRESSES": f"{A}, {B},{C}"})
    assert config.addresses == (A, B, C)
    assert config.address == A


def test_file_addresses_is_a_toml_array() -> None:
    """[vault] addresses = [...] gives the list."""
    config = build(toml=f'[vault]\naddresses = ["{A}", "{B}"]\n')
    assert config.addresses == (A, B)


def test_repeated_cli_address_is_the_list() -> None:
    """--address given several times (the CLI hands a tuple) is the list."""
    assert build(cli={"addresses": (B, A)}).addresses == (B, A)


def test_duplicates_and_trailing_slashes_are_dropped() -> None:
    """The same node twice is one entry; a trailing slash is not a different node."""
    assert build(environ={"INJECT_ADDRESSES": f"{A}/,{B},{A}"}).addresses == (A, B)


@pytest.mark.parametrize(
    ("cli", "environ", "toml", "expected"),
    [
        ({"address": C}, {"INJECT_ADDRESSES": f"{A},{B}"}, "", (C,)),
        ({}, {"INJECT_ADDRESSES": f"{A},{B}", "VAULT_ADDR": C}, "", (A, B)),
        ({}, {"VAULT_ADDR": C}, f'[vault]\naddresses = ["{A}", "{B}"]\n', (C,)),
        ({}, {}, f'[vault]\naddress = "{C}"\n', (C,)),
        ({}, {}, "", ()),
    ],
    ids=[
        "cli-address-beats-env-list",
        "list-beats-vault-addr",
        "env-beats-file-list",
        "file-address",
        "none",
    ],
)
def test_the_highest_layer_giving_an_address_wins(
    cli: dict[str, Any], environ: dict[str, str], toml: str, expected: tuple[str, ...]
) -> None:
    """CLI > environment > file for address and addresses together; within a layer the list."""
    config = build(cli=cli, environ=environ, toml=toml)
    assert config.addresses == expected
    assert config.address == (expected[0] if expected else "")


def test_vault_addr_alone_is_kept_as_given() -> None:
    """VAULT_ADDR alone works as before: used as given, not validated or rewritten."""
    config = build(environ={"VAULT_ADDR": "http://127.0.0.1:8200/"})
    assert config.address == "http://127.0.0.1:8200/"
    assert config.addresses == ("http://127.0.0.1:8200/",)


def test_both_address_and_addresses_in_one_file_is_an_error() -> None:
    """[vault] with both keys is ambiguous: a UsageError naming both."""
    with pytest.raises(UsageError, match="both 'address' and 'addresses'"):
        build(toml=f'[vault]\naddress = "{A}"\naddresses = ["{B}"]\n')


@pytest.mark.parametrize(
    ("environ", "cli", "where"),
    [
        ({"INJECT_ADDRESSES": "a:8200,http://b:8200"}, {}, "environment INJECT_ADDRESSES"),
        ({"INJECT_ADDRESSES": " , "}, {}, "environment INJECT_ADDRESSES"),
        ({}, {"addresses": (A, "ftp://x")}, "option --address"),
    ],
)
def test_a_bad_entry_names_where_it_came_from(
    environ: dict[str, str], cli: dict[str, Any], where: str
) -> None:
    """An entry that is not an http(s) URL with a host is a UsageError naming its source."""
    with pytest.raises(UsageError, match=where):
        build(cli=cli, environ=environ)


def test_settings_put_the_address_first_then_the_rest() -> None:
    """ServerSettings.candidates: address first, then the other listed addresses, once each."""
    settings = ServerSettings(address=B, addresses=(A, B, C))
    assert settings.candidates == (B, A, C)
    assert ServerSettings(address=A).candidates == (A,)


def test_a_list_without_the_address_is_not_used() -> None:
    """An address replaced without its list (inject dev's throwaway server) is used alone:
    its token must never fail over to a real cluster's nodes."""
    assert ServerSettings(address="http://127.0.0.1:8299", addresses=(A, B)).candidates == (
        "http://127.0.0.1:8299",
    )
