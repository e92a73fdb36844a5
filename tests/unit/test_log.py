"""Logging: redaction of known secret values and JSON lines."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from vault_inject import log
from vault_inject.model import KvRead, Secret
from vault_inject.render.renderer import Rendered

SECRET = "s3cr3t-Value-91xQ"
OTHER = "tok.abcdefXYZ-123"


@pytest.fixture(autouse=True)
def _forget_registered_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test registers into a fresh redactor, so tests do not leak masks."""
    monkeypatch.setattr(log, "_redactor", log.Redactor())


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
    """Values shorter than MIN_SECRET_CHARS are not masked (they would mangle every message)."""
    log.register_secret("ab")
    assert log.redact("a b ab abc") == "a b ab abc"


TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def untimed(text: str) -> list[str]:
    """The lines of ``text`` without their leading timestamp (each must have one)."""
    lines = text.splitlines()
    assert all(re.match(TIME + " ", line) for line in lines), lines
    return [line.split(" ", 1)[1] for line in lines]


def test_text_format_prefixes_and_levels(stream: io.StringIO) -> None:
    """Text format: 'TIME inject: msg' for info, 'TIME inject: level: msg' otherwise; one line each."""
    log.setup(level="info", stream=stream)
    logger = logging.getLogger("vault_inject.t")
    logger.info("wrote %s", "/app/x")
    logger.warning("slow")
    logger.debug("hidden at info")
    assert untimed(stream.getvalue()) == ["inject: wrote /app/x", "inject: warning: slow"]


def test_text_lines_carry_the_time_as_json_lines_do(stream: io.StringIO) -> None:
    """A text line starts with the record's UTC time to the millisecond, as the JSON "time" field."""
    log.setup(stream=stream)
    record = logging.LogRecord("vault_inject.t", logging.INFO, __file__, 1, "hello", None, None)
    record.created, record.msecs = 1_700_000_000.25, 250.0
    logging.getLogger("vault_inject.t").handle(record)
    assert stream.getvalue() == "2023-11-14T22:13:20.250Z inject: hello\n"
    assert log.JsonFormatter().format(record).startswith('{"time": "2023-11-14T22:13:20.250Z"')


def test_json_format_one_object_per_line(stream: io.StringIO) -> None:
    """JSON format emits one valid JSON object per line with time, level, logger and msg."""
    log.setup(level="debug", fmt="json", stream=stream)
    logging.getLogger("vault_inject.client.vault").debug("read %s v%d", "secret/app", 3)
    logging.getLogger("vault_inject.cli.app").error('quote " and\nnewline')
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) >= {"time", "level", "logger", "msg"}
    assert (first["level"], first["logger"], first["msg"]) == (
        "debug",
        "vault_inject.client.vault",
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
    assert untimed(stream.getvalue()) == ["inject: error: yes"]


# --- pruning and one threshold (issue 11) ------------------------------------------------


def test_replaced_secret_values_stop_being_masked() -> None:
    """replace_secrets(owner, new) drops the owner's old values and masks the new ones."""
    log.replace_secrets(("secret/db", None), ["old-password-1"])
    log.replace_secrets(("secret/db", None), ["new-password-2"])
    assert log.redact("old-password-1 new-password-2") == f"old-password-1 {log.MASK}"


def test_a_value_shared_by_two_owners_stays_masked_until_both_drop_it() -> None:
    """A value two secrets hold (or one registered for good) is kept while anyone holds it."""
    log.replace_secrets("a", ["shared-value-9"])
    log.replace_secrets("b", ["shared-value-9"])
    log.forget_secrets("a")
    assert log.redact("shared-value-9") == log.MASK
    log.forget_secrets("b")
    assert log.redact("shared-value-9") == "shared-value-9"
    log.register_secret("token-abcdef")
    log.replace_secrets("c", ["token-abcdef"])
    log.forget_secrets("c")
    assert log.redact("token-abcdef") == log.MASK


def test_unregister_removes_a_permanent_value() -> None:
    """unregister_secret stops masking a value given to register_secret."""
    log.register_secret("retired-token-77")
    log.unregister_secret("retired-token-77")
    assert log.redact("retired-token-77") == "retired-token-77"


def test_values_are_sorted_once_per_change_not_per_line() -> None:
    """Redacting reuses the sorted values (the same tuple) until the set changes."""
    log.register_secret("abcd1234")
    log.register_secret("abcd1234-extended")
    before = log._redactor.values
    for _ in range(3):
        log.redact("abcd1234-extended abcd1234")
    assert log._redactor.values is before
    assert before == ("abcd1234-extended", "abcd1234")
    log.register_secret("x" * 30)
    assert log._redactor.values[0] == "x" * 30


@pytest.mark.parametrize("value", ["k", "k9", "k9z", "k9zq", "k9zq5"])
def test_a_key_computed_from_a_value_is_never_quoted_whatever_its_length(value: str) -> None:
    """The log filter masks values from one minimum length; a template error never quotes a
    key the template computed (issue 24 #7), however short the value it was computed from."""
    from tests.unit.test_render import FakeReader
    from vault_inject.errors import RenderError
    from vault_inject.render.renderer import Renderer

    log.register_secret(value)
    in_log = log.redact(f"key {value}!") != f"key {value}!"
    renderer = Renderer({})
    text = "{{ secret('secret/a')[secret('secret/a').name] }}"
    template = renderer.compile("t.j2", text)
    with pytest.raises(RenderError) as info:
        renderer.render_all({"/o": ("t.j2", template)}, [], FakeReader({("secret/a", None): {"name": value}}))
    assert in_log == (len(value) >= log.MIN_SECRET_CHARS)
    assert f"'{value}'" not in str(info.value)
    assert "has no key (computed in the template)" in str(info.value)


def test_a_missing_computed_path_does_not_quote_the_value_it_was_built_from() -> None:
    """secret('secret/' ~ value) that does not exist: the error masks the value in the path."""
    from tests.unit.test_render import FakeReader
    from vault_inject.errors import SecretNotFound
    from vault_inject.render.renderer import Renderer

    renderer = Renderer({})
    template = renderer.compile("t.j2", "{{ secret('secret/' ~ secret('secret/a').tenant) }}")
    reader = FakeReader({("secret/a", None): {"tenant": "acme-tenant-42"}})
    with pytest.raises(SecretNotFound) as info:
        renderer.render_all({"/o": ("t.j2", template)}, [], reader)
    assert "acme-tenant-42" not in str(info.value)
    assert "(a path computed in the template)" in str(info.value)


def test_plan_lines_mask_a_path_segment_that_is_a_secret_value() -> None:
    """`inject plan` output never shows a secret value, even as a segment of a path it read."""
    from vault_inject.cli.app import plan_lines

    tenant = "acme-tenant-42"
    rendered = Rendered(
        files={"/out/app.yml": "x"},
        env={"DB": "y"},
        secrets={
            KvRead("secret/a"): Secret(path="secret/a", data={"tenant": tenant}, version=1),
            KvRead(f"secret/{tenant}/db"): Secret(
                path=f"secret/{tenant}/db", data={"p": "pw-123456"}, version=2
            ),
        },
        deps={
            "/out/app.yml": frozenset({KvRead("secret/a"), KvRead(f"secret/{tenant}/db")}),
            "env:DB": frozenset({KvRead(f"secret/{tenant}/db")}),
        },
    )
    lines = plan_lines(rendered, lambda _path: None, {})
    assert lines
    assert not [line for line in lines if tenant in line]
    assert f"secret/{log.MASK}/db" in lines[0]
