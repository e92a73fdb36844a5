"""Logging to stderr as text or JSON lines, with a redaction filter.

Every secret value and token inject learns is registered here; the filter masks any
of them that still reaches a log record (a last line of defence: messages are
written not to contain values in the first place).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import TextIO

# One minimum everywhere (log records, template errors, plan output). Values of 1-3
# characters are never masked: they are too short to be secret (guessable in a blink), and
# too common as parts of ordinary text ("app", "db", "443", "on"): masking them would
# mangle paths and messages in nearly every line, and would point out which short word
# is a secret value.
MIN_SECRET_CHARS = 4
MASK = "[redacted]"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class Redactor:
    """The values to mask: permanent ones (tokens) and sets owned by a key (one secret's
    values), so a replaced secret's old values can be dropped. Sorted longest first once
    per change, not per line (a value inside another is masked as part of the longer one)."""

    def __init__(self, *, min_chars: int = MIN_SECRET_CHARS) -> None:
        self._min_chars = min_chars
        self._lock = threading.Lock()
        self._permanent: set[str] = set()
        self._owned: dict[Hashable, frozenset[str]] = {}
        self._sorted: tuple[str, ...] = ()

    def register(self, value: str) -> None:
        """Mask ``value`` until it is unregistered."""
        if self.maskable(value) and value not in self._permanent:
            with self._lock:
                self._permanent.add(value)
                self._resort()

    def unregister(self, value: str) -> None:
        """Stop masking a value given to :meth:`register` (owned values are kept)."""
        with self._lock:
            if value in self._permanent:
                self._permanent.discard(value)
                self._resort()

    def replace(self, owner: Hashable, values: Iterable[str]) -> None:
        """``owner``'s values are now exactly ``values``: its previous ones stop being masked
        unless another owner, or a permanent registration, still holds them."""
        wanted = frozenset(v for v in values if self.maskable(v))
        with self._lock:
            if self._owned.get(owner) != wanted:
                if wanted:
                    self._owned[owner] = wanted
                else:
                    self._owned.pop(owner, None)
                self._resort()

    def forget(self, owner: Hashable) -> None:
        """Drop every value held by ``owner`` (a secret inject no longer uses)."""
        self.replace(owner, ())

    def maskable(self, value: str) -> bool:
        """True for values long enough to be masked (MIN_SECRET_CHARS)."""
        return len(value) >= self._min_chars

    @property
    def values(self) -> tuple[str, ...]:
        """Every value masked now, longest first."""
        return self._sorted

    def redact(self, text: str, *, also: Iterable[str] = ()) -> str:
        """``text`` with every value (and every maskable one in ``also``) replaced by the mask."""
        return self.masker(also)(text)

    def masker(self, also: Iterable[str] = ()) -> Callable[[str], str]:
        """A function masking every value now registered plus ``also`` (sorted once, for many lines)."""
        values = self._sorted
        extra = [v for v in also if self.maskable(v)]
        if extra:
            values = tuple(sorted({*values, *extra}, key=len, reverse=True))
        return lambda text: _mask_all(text, values)

    def _resort(self) -> None:  # with the lock held
        everything = self._permanent.union(*self._owned.values())
        self._sorted = tuple(sorted(everything, key=len, reverse=True))


def _mask_all(text: str, values: tuple[str, ...]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


_redactor = Redactor()


def register_secret(value: str) -> None:
    """Remember ``value`` so the redaction filter masks it wherever it appears."""
    _redactor.register(value)


def unregister_secret(value: str) -> None:
    """Stop masking a value given to :func:`register_secret` (e.g. a token inject replaced)."""
    _redactor.unregister(value)


def replace_secrets(owner: Hashable, values: Iterable[str]) -> None:
    """Mask exactly ``values`` for ``owner`` (e.g. a secret's path): its old values are dropped."""
    _redactor.replace(owner, values)


def forget_secrets(owner: Hashable) -> None:
    """Stop masking the values ``owner`` held (a secret no longer read)."""
    _redactor.forget(owner)


def secret_values() -> tuple[str, ...]:
    """Every value masked now, longest first (the same tuple until one is added or dropped)."""
    return _redactor.values


def redact(text: str, *, also: Iterable[str] = ()) -> str:
    """``text`` with every registered secret (and every value in ``also``) masked, longest first."""
    return _redactor.redact(text, also=also)


def masker(also: Iterable[str] = ()) -> Callable[[str], str]:
    """Like :func:`redact` for many texts: the values (registered and ``also``) are sorted once."""
    return _redactor.masker(also)


class RedactingFilter(logging.Filter):
    """Formats the message once, masks known secrets, and freezes the result."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def timestamp(record: logging.LogRecord) -> str:
    """When ``record`` was made, in UTC to the millisecond: ``2025-01-31T12:00:00.123Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """``2025-01-31T12:00:00.123Z inject: warning: message``: the time as JSON logs give it,
    then the level (info has no level word, like most CLIs)."""

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        prefix = "inject: " if record.levelno == logging.INFO else f"inject: {level}: "
        text = f"{timestamp(record)} {prefix}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + redact(self.formatException(record.exc_info))
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg (and exc with --debug)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        import json  # only JSON logs need it: not loaded at start-up for the text format

        return json.dumps(entry)


def setup(*, level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send the ``vault_inject`` loggers to stderr in the chosen format and level."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger("vault_inject")
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    root.propagate = False
