"""Logging: redaction of known secret values and JSON lines (SPEC sections 8, 9)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from vault_inject import log

SECRET = "s3cr3t-Value-91xQ"
OTHER = "tok.abcdefXYZ-123"


@pytest.fixture(autouse=True)
def _forget_registered_secrets() -> Iterator[None]:
    """Values registered by a test are forgotten after it, so tests do not leak masks."""
    before = set(log._known)
    yield
    with log._lock:
        log._known.intersection_update(before)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """log.setup pointed at a StringIO; the vault_inject logger is restored afterwards."""
    root = logging.getLogger("vault_inject")
    saved = (root.handlers[:], root.level, root.propagate)
    buffer = io.StringIO()
    log.register_secret(SECRET)
    log.register_secret(OTHER)
    try:
        yield buffer
    finally:
        root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]


def test_secret_in_args_is_masked(stream: io.StringIO) -> None:
    """A registered secret passed as a %s argument is replaced by the mask."""
    log.setup(level="debug", stream=stream)
    logging.getLogger("vault_inject.test").info("password is %s for %s", SECRET, "db")
    output = stream.getvalue()
    assert SECRET not in output
    assert f"password is {log.MASK} for db" in output


def test_secret_in_message_is_masked(stream: io.StringIO) -> None:
    """A registered secret inside the message text itself is masked, as is a second one."""
    log.setup(level="debug", stream=stream)
    logging.getLogger("vault_inject.x").warning(f"oops {SECRET} and {OTHER}")
    output = stream.getvalue()
    assert SECRET not in output
    assert OTHER not in output
    assert output.count(log.MASK) == 2


def test_secret_in_exception_text_is_masked(stream: io.StringIO) -> None:
    """A registered secret inside a logged traceback is masked."""
    log.setup(level="debug", stream=stream)
    try:
        raise ValueError(f"bad value {SECRET}")
    except ValueError:
        logging.getLogger("vault_inject.x").exception("failed")
    output = stream.getvalue()
    assert "ValueError" in output
    assert SECRET not in output


def test_longest_secret_is_masked_first() -> None:
    """When one secret contains another, the longer one is masked whole."""
    log.register_secret("abcd1234")
    log.register_secret("abcd1234-extended")
    assert log.redact("x abcd1234-extended y") == f"x {log.MASK} y"


def test_short_values_are_not_registered() -> None:
    """Values shorter than MIN_REDACT_LEN are not masked (they would mangle every message)."""
    log.register_secret("ab")
    assert log.redact("a b ab abc") == "a b ab abc"


def test_text_format_prefixes_and_levels(stream: io.StringIO) -> None:
    """Text format: 'inject: msg' for info, 'inject: level: msg' otherwise; one line each."""
    log.setup(level="info", stream=stream)
    logger = logging.getLogger("vault_inject.t")
    logger.info("wrote %s", "/app/x")
    logger.warning("slow")
    logger.debug("hidden at info")
    assert stream.getvalue().splitlines() == ["inject: wrote /app/x", "inject: warning: slow"]


def test_json_format_one_object_per_line(stream: io.StringIO) -> None:
    """JSON format emits one valid JSON object per line with time, level, logger and msg."""
    log.setup(level="debug", fmt="json", stream=stream)
    logging.getLogger("vault_inject.vault").debug("read %s v%d", "secret/app", 3)
    logging.getLogger("vault_inject.app").error('quote " and\nnewline')
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) >= {"time", "level", "logger", "msg"}
    assert (first["level"], first["logger"], first["msg"]) == (
        "debug",
        "vault_inject.vault",
        "read secret/app v3",
    )
    assert (second["level"], second["msg"]) == ("error", 'quote " and\nnewline')
    assert first["time"].endswith("Z")


def test_json_format_is_redacted(stream: io.StringIO) -> None:
    """JSON lines are redacted too."""
    log.setup(fmt="json", stream=stream)
    logging.getLogger("vault_inject.x").info("value=%s", SECRET)
    entry = json.loads(stream.getvalue())
    assert entry["msg"] == f"value={log.MASK}"


def test_level_filters_records(stream: io.StringIO) -> None:
    """Records below the configured level are dropped."""
    log.setup(level="error", stream=stream)
    logging.getLogger("vault_inject.x").warning("nope")
    logging.getLogger("vault_inject.x").error("yes")
    assert stream.getvalue() == "inject: error: yes\n"
