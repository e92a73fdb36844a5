"""Durations: ``500ms``, ``1.5s``, ``10s``, ``5m``, ``1h``, ``1h30m``, or bare seconds. Pure."""

from __future__ import annotations

import math
import re

from ..errors import UsageError

_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_MAX_S = 10 * 365 * 86400.0


def parse_duration(text: str | float | int, *, where: str = "duration") -> float:
    """Return seconds for a duration; raise UsageError naming ``where`` when it is not one."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise UsageError(f"{where}: expected a duration like 10s, got {type(text).__name__}")
    if isinstance(text, int | float):
        return _checked(_as_float(text), where, str(text))
    raw = text.strip().lower()
    try:
        return _checked(float(raw), where, text)
    except ValueError:
        pass
    return _checked(_sum_parts(raw, where, text), where, text)


def _as_float(number: int | float) -> float:
    try:
        return float(number)
    except OverflowError:  # an int beyond a float's range: certainly too long
        return math.inf


def _sum_parts(raw: str, where: str, original: str) -> float:
    pos, total = 0, 0.0
    while pos < len(raw):
        match = _PART.match(raw, pos)
        if match is None:
            raise UsageError(f"{where}: invalid duration {original!r} (use e.g. 500ms, 10s, 1h30m)")
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if not raw:
        raise UsageError(f"{where}: empty duration")
    return total


def _checked(seconds: float, where: str, original: str) -> float:
    if not math.isfinite(seconds) or seconds < 0 or seconds > _MAX_S:
        raise UsageError(f"{where}: invalid duration {original!r}")
    return seconds
