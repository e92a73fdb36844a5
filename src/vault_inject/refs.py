"""Secret references: ``vault:PATH#KEY`` and ``vault:PATH#KEY#VERSION`` (also ``bao:``).

Pure parsing, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

PREFIXES = ("vault:", "bao:")
MAX_VERSION_DIGITS = 18  # fits an int64 (and stays far below int()'s digit limit)


@dataclass(frozen=True)
class Ref:
    """A parsed reference to one key of one secret."""

    path: str
    key: str
    version: int | None = None

    def __str__(self) -> str:
        suffix = f"#{self.version}" if self.version is not None else ""
        return f"vault:{self.path}#{self.key}{suffix}"


def looks_like_ref(value: str) -> bool:
    """True when ``value`` starts with a reference prefix (it may still be malformed)."""
    return value.startswith(PREFIXES)


def normalize_path(path: str) -> str:
    """Strip surrounding slashes and collapse empty segments: ``/secret//a/`` -> ``secret/a``."""
    return "/".join(part for part in path.split("/") if part)


def parse_ref(value: str, *, where: str = "reference") -> Ref:
    """Parse ``vault:PATH#KEY[#VERSION]``; raise UsageError naming ``where`` when malformed."""
    prefix = next((p for p in PREFIXES if value.startswith(p)), None)
    if prefix is None:
        raise UsageError(f"{where}: not a reference (expected vault:PATH#KEY[#VERSION])")
    parts = value[len(prefix) :].split("#")
    if len(parts) not in (2, 3):
        raise UsageError(f"{where}: malformed reference, expected vault:PATH#KEY[#VERSION]")
    path, key = normalize_path(parts[0]), parts[1].strip()
    if not path:
        raise UsageError(f"{where}: reference has an empty path")
    if any(seg in (".", "..") for seg in path.split("/")):
        raise UsageError(f"{where}: reference path '{path}' contains '.' or '..'")
    if not key:
        raise UsageError(f"{where}: reference to '{path}' has an empty key")
    return Ref(path=path, key=key, version=_parse_version(parts, where))


def _parse_version(parts: list[str], where: str) -> int | None:
    if len(parts) < 3:
        return None
    text = parts[2].strip()
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_VERSION_DIGITS or int(text) < 1:
        raise UsageError(f"{where}: version must be a positive integer")
    return int(text)
