"""Logging to stderr as text or JSON lines, with a redaction filter.

Every secret value and token inject learns is registered here; the filter masks any
of them that still reaches a log record (a last line of defence: messages are
written not to contain values in the first place).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import TextIO

MIN_REDACT_LEN = 4
MASK = "[redacted]"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_known: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember ``value`` so the redaction filter masks it wherever it appears."""
    if len(value) >= MIN_REDACT_LEN:
        with _lock:
            _known.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by a mask (longest first)."""
    with _lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Formats the message once, masks known secrets, and freezes the result."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class TextFormatter(logging.Formatter):
    """``inject: warning: message`` (info has no level word, like most CLIs)."""

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        prefix = "inject: " if record.levelno == logging.INFO else f"inject: {level}: "
        text = prefix + record.getMessage()
        if record.exc_info:
            text += "\n" + redact(self.formatException(record.exc_info))
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg (and exc with --debug)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
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
