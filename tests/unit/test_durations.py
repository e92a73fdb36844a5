"""Durations: ``500ms``, ``1.5s``, ``10s``, ``5m``, ``1h``, ``1h30m`` or bare seconds."""

from __future__ import annotations

import pytest

from vault_inject.config.durations import parse_duration
from vault_inject.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("2h15m30s500ms", 2 * 3600 + 15 * 60 + 30.5),
        ("1d", 86400.0),
        ("0s", 0.0),
        ("10", 10.0),
        ("2.5", 2.5),
        ("0", 0.0),
        (" 10s ", 10.0),
        ("10S", 10.0),
        ("1H30M", 5400.0),
        ("3650d", 3650 * 86400.0),
    ],
)
def test_parse_duration_text(text: str, seconds: float) -> None:
    """Every documented duration form gives the right number of seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "seconds"), [(10, 10.0), (0, 0.0), (0.25, 0.25), (1.5, 1.5)])
def test_parse_duration_numbers_are_seconds(value: float, seconds: float) -> None:
    """Ints and floats (e.g. from TOML) are taken as seconds and returned as float."""
    result = parse_duration(value)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",
        "10x",
        "s",
        "ms",
        "1.s",
        ".5s",
        "1h 30m",
        "-1s",
        "-1",
        "+1s",
        "1e3s",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "infinity",
        "1e400",
        "3651d",
        "99999999h",
        "9" * 400 + "s",
    ],
)
def test_parse_duration_invalid_text_raises_usage_error(text: str) -> None:
    """Malformed, negative, non-finite and absurdly large durations are a UsageError."""
    with pytest.raises(UsageError):
        parse_duration(text)


@pytest.mark.parametrize("value", [-1, -0.5, float("nan"), float("inf"), 1e300, True, False])
def test_parse_duration_invalid_numbers_raise_usage_error(value: float) -> None:
    """Negative, non-finite, huge and boolean numbers are a UsageError."""
    with pytest.raises(UsageError):
        parse_duration(value)


def test_parse_duration_error_names_where_and_value() -> None:
    """The error names the option it came from and the text given, with an example of a valid one."""
    with pytest.raises(UsageError) as info:
        parse_duration("10x", where="option --poll-interval")
    message = str(info.value)
    assert message.startswith("option --poll-interval: ")
    assert "'10x'" in message
    assert "10s" in message


def test_parse_duration_empty_error_names_where() -> None:
    """An empty duration names ``where`` too."""
    with pytest.raises(UsageError, match=r"^\[watch\] poll_interval: "):
        parse_duration("", where="[watch] poll_interval")
