"""Secret references: ``vault:PATH#KEY[#VERSION]`` and ``bao:``."""

from __future__ import annotations

import pytest

from vault_inject.errors import UsageError
from vault_inject.refs import Ref, looks_like_ref, normalize_path, parse_ref


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("vault:secret/app#password", Ref("secret/app", "password")),
        ("bao:secret/app#password", Ref("secret/app", "password")),
        ("vault:secret/app#password#3", Ref("secret/app", "password", 3)),
        ("bao:database/creds/readonly#username", Ref("database/creds/readonly", "username")),
        ("vault:secret/data/infrastructure/postgres#pw", Ref("secret/data/infrastructure/postgres", "pw")),
        ("vault:/secret/app/#password", Ref("secret/app", "password")),
        ("vault://secret//app//#password#12", Ref("secret/app", "password", 12)),
    ],
)
def test_parse_ref_valid_forms(value: str, expected: Ref) -> None:
    """Both prefixes parse to path, key and optional version, with slashes normalised."""
    assert parse_ref(value) == expected


def test_parse_ref_version_is_an_int() -> None:
    """The version is returned as an int, not the text that was typed."""
    ref = parse_ref("vault:secret/app#k#7")
    assert ref.version == 7
    assert isinstance(ref.version, int)


def test_ref_str_is_the_canonical_vault_form() -> None:
    """str(Ref) gives the canonical ``vault:`` form, whatever prefix was parsed."""
    assert str(parse_ref("bao:/secret/app/#k#2")) == "vault:secret/app#k#2"
    assert str(parse_ref("vault:secret/app#k")) == "vault:secret/app#k"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("vault:x#y", True), ("bao:x#y", True), ("vault:", True), ("secret/x#y", False), ("VAULT:x#y", False)],
)
def test_looks_like_ref_checks_only_the_prefix(value: str, expected: bool) -> None:
    """looks_like_ref is true exactly for values starting with a reference prefix."""
    assert looks_like_ref(value) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [("secret/app", "secret/app"), ("/secret/app/", "secret/app"), ("//a///b//", "a/b"), ("///", "")],
)
def test_normalize_path_strips_and_collapses_slashes(path: str, expected: str) -> None:
    """normalize_path removes leading/trailing slashes and empty segments."""
    assert normalize_path(path) == expected


# (value, a fragment of it that must never be echoed back in the error message)
MALFORMED = [
    pytest.param("secret/app#S3CRETKEY", "S3CRETKEY", id="no-prefix"),
    pytest.param("vault:S3CRETPATHONLY", "S3CRETPATHONLY", id="no-hash"),
    pytest.param("vault:secret/app#", "vault:secret/app#", id="empty-key"),
    pytest.param("vault:secret/app#   ", "vault:secret/app#", id="blank-key"),
    pytest.param("vault:#S3CRETKEY", "S3CRETKEY", id="empty-path"),
    pytest.param("vault:///#S3CRETKEY", "S3CRETKEY", id="slashes-only-path"),
    pytest.param("vault:secret/app#S3CRETKEY#0", "S3CRETKEY", id="version-zero"),
    pytest.param("vault:secret/app#S3CRETKEY#-1", "S3CRETKEY", id="version-negative"),
    pytest.param("vault:secret/app#S3CRETKEY#latest", "latest", id="version-word"),
    pytest.param("vault:secret/app#S3CRETKEY#1.5", "S3CRETKEY", id="version-float"),
    pytest.param("vault:secret/app#S3CRETKEY#", "S3CRETKEY", id="version-empty"),
    pytest.param("vault:secret/app#S3CRETKEY#1#2", "S3CRETKEY", id="too-many-hashes"),
    pytest.param("vault:secret/app#S3CRETKEY#1#", "S3CRETKEY", id="trailing-hash"),
    pytest.param("vault:secret/../sys#S3CRETKEY", "S3CRETKEY", id="dotdot-segment"),
    pytest.param("vault:../secret#S3CRETKEY", "S3CRETKEY", id="leading-dotdot"),
    pytest.param("vault:secret/./app#S3CRETKEY", "S3CRETKEY", id="dot-segment"),
]


@pytest.mark.parametrize(("value", "hidden"), MALFORMED)
def test_parse_ref_malformed_raises_usage_error(value: str, hidden: str) -> None:
    """A malformed reference raises UsageError (never another exception type)."""
    with pytest.raises(UsageError):
        parse_ref(value, where="env DB_PASS")


@pytest.mark.parametrize(("value", "hidden"), MALFORMED)
def test_parse_ref_error_names_where(value: str, hidden: str) -> None:
    """The error message starts with the ``where`` argument so the user finds the bad value."""
    with pytest.raises(UsageError) as info:
        parse_ref(value, where="env DB_PASS")
    assert str(info.value).startswith("env DB_PASS: ")


@pytest.mark.parametrize(("value", "hidden"), MALFORMED)
def test_parse_ref_error_never_echoes_key_version_or_raw_value(value: str, hidden: str) -> None:
    """The message describes the reference shape only: no key, version text or raw value."""
    with pytest.raises(UsageError) as info:
        parse_ref(value, where="env DB_PASS")
    message = str(info.value)
    assert hidden not in message
    assert value not in message


def test_parse_ref_default_where_is_reference() -> None:
    """Without ``where`` the message still says it is about a reference."""
    with pytest.raises(UsageError, match=r"^reference: "):
        parse_ref("vault:nohash")


def test_parse_ref_superscript_digit_version_raises_usage_error() -> None:
    """A version str.isdigit() accepts but int() rejects (superscript two) is a UsageError, not a crash."""
    with pytest.raises(UsageError, match=r"^env X: "):
        parse_ref("vault:secret/app#key#\u00b2", where="env X")
