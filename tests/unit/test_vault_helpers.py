"""Small pure helpers of the server client: Retry-After parsing (replies), TLS reasons (wire),
KV v2 messages and redaction of values (vault)."""

from __future__ import annotations

import email.utils
import time

import pytest

from vault_inject.client import answers, kv, replies, wire


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, 0.0), ("", 0.0), ("2", 2.0), (" 10 ", 10.0), ("abc", 0.0), ("²", 0.0), ("-3", 0.0)],
)
def test_retry_after_seconds(header: str | None, expected: float) -> None:
    """Retry-After in delta-seconds is taken as is; absent, odd or non-ASCII digits give 0."""
    assert replies.retry_after(header) == expected


def test_retry_after_is_capped() -> None:
    """A huge Retry-After (seconds or a far date) is capped at MAX_RETRY_AFTER_S, never infinity."""
    assert replies.retry_after("9" * 400) == replies.MAX_RETRY_AFTER_S
    far = email.utils.formatdate(time.time() + 10 * 86400, usegmt=True)
    assert replies.retry_after(far) == replies.MAX_RETRY_AFTER_S


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    """An HTTP date already past means 'retry now'."""
    assert replies.retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "--ca-cert"),
        ("[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required", "--client-cert"),
        ("something else", "TLS handshake failed"),
    ],
)
def test_tls_reasons_name_the_fix(text: str, needle: str) -> None:
    """TLS failures are explained with the option that fixes them, never the raw SSL text."""
    reason = wire._tls_reason(Exception(text))
    assert needle in reason
    assert "SSL:" not in reason


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"destroyed": True}, "'secret/a' was destroyed"),
        ({"deletion_time": "2026-01-01T00:00:00Z"}, "'secret/a' was deleted"),
        ({}, "no secret at 'secret/a'"),
    ],
)
def test_kv2_missing_messages(metadata: dict[str, object], expected: str) -> None:
    """A KV v2 404 says whether the version was deleted, destroyed or never written."""
    assert kv.kv2_missing_message("'secret/a'", None, metadata) == expected


def test_kv2_missing_message_names_the_version() -> None:
    """A pinned version is named in the message."""
    assert (
        kv.kv2_missing_message("'secret/a'", 3, {"destroyed": True})
        == "version 3 of 'secret/a' was destroyed"
    )


def test_values_inside_lists_are_registered_for_redaction() -> None:
    """A KV value that is a JSON array (or nested in one) is masked in logs like any string value."""
    from vault_inject.log import MASK, redact

    answers.register_values(
        {"keys": ["list-held-secret-1", {"inner": "nested-held-secret-2"}]}, owner=("secret", "a", None)
    )
    assert redact("a list-held-secret-1 b nested-held-secret-2") == f"a {MASK} b {MASK}"


def test_a_reread_replaces_the_values_masked_for_that_path() -> None:
    """Values are kept per path read: a new version's values replace the old ones, so the set
    stays the size of what is in use; a value another path still holds stays masked."""
    from vault_inject.log import MASK, redact

    answers.register_values(
        {"v": "rotated-away-value", "s": "shared-held-value"}, owner=("secret", "a", None)
    )
    answers.register_values({"v": "shared-held-value"}, owner=("secret", "b", None))
    answers.register_values({"v": "the-new-value-1"}, owner=("secret", "a", None))
    assert redact("rotated-away-value") == "rotated-away-value"
    assert redact("shared-held-value the-new-value-1") == f"{MASK} {MASK}"


def test_kv2_missing_message_of_a_computed_path_shows_no_version() -> None:
    """A template computed the path (and maybe the version, from a value): neither is shown."""
    from vault_inject.model import COMPUTED_PATH

    assert kv.kv2_missing_message(COMPUTED_PATH, 19, {}) == f"no secret at {COMPUTED_PATH}"
