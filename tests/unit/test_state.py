"""The encrypted state's pure parts: the sealed format (AES-256-GCM, header, key kinds),
what a state holds and the decisions about it (take over, stale values, when to write),
and the ``[state]`` settings."""

from __future__ import annotations

import pytest

from vault_inject.client import handover
from vault_inject.config import CliOptions, build_config
from vault_inject.errors import UsageError
from vault_inject.files import sealed
from vault_inject.model import KvRead, PkiIssue, Secret, TransitDecrypt, computed_in_template

RAW = bytes(range(32))


def test_sealed_round_trip_with_a_raw_key_and_with_a_passphrase() -> None:
    """What is sealed with a raw key or a passphrase opens with the same key and binding."""
    for key in (sealed.Key.of(RAW), sealed.Key.of(b"correct horse battery staple\n")):
        data = sealed.seal(key, b"bind", b"payload")
        assert b"payload" not in data
        assert sealed.unseal(key, b"bind", data) == b"payload"


def test_a_passphrase_state_keeps_its_salt_so_the_key_is_derived_once() -> None:
    """Sealing again with the salt read from the file reuses the derived key (one scrypt per run)."""
    key = sealed.Key.of(b"passphrase")
    first = sealed.seal(key, b"b", b"one")
    second = sealed.seal(key, b"b", b"two", salt=sealed.salt_of(first))
    assert sealed.salt_of(first) == sealed.salt_of(second)
    assert len(key._derived) == 1
    assert sealed.unseal(sealed.Key.of(b"passphrase"), b"b", second) == b"two"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "cannot be decrypted"),
        (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "cannot be decrypted"),  # the salt (header)
        (lambda d: d[:40], "truncated"),
        (lambda d: b"NOTSTATE" + d[8:], "not an inject state file"),
        (
            lambda d: d[:8] + bytes([9]) + d[9:],
            "written by a newer inject (format 9; this one reads up to 1)",
        ),
    ],
)
def test_a_changed_or_foreign_file_is_refused_with_the_reason(change, why) -> None:  # type: ignore[no-untyped-def]
    """A flipped bit anywhere, a truncated file, another magic or a newer format: Refused, saying which."""
    key = sealed.Key.of(RAW)
    data = sealed.seal(key, b"bind", b"payload")
    with pytest.raises(sealed.Refused, match=why.replace("(", r"\(").replace(")", r"\)")):
        sealed.unseal(key, b"bind", change(data))


def test_a_wrong_key_or_another_binding_is_refused() -> None:
    """Another raw key, or the right key for another server or login, cannot open the state."""
    data = sealed.seal(sealed.Key.of(RAW), b"bind", b"payload")
    with pytest.raises(sealed.Refused, match="cannot be decrypted"):
        sealed.unseal(sealed.Key.of(bytes(32)), b"bind", data)
    with pytest.raises(sealed.Refused, match="cannot be decrypted"):
        sealed.unseal(sealed.Key.of(RAW), b"other", data)
    with pytest.raises(
        sealed.Refused, match="sealed with a raw 32-byte key, but the key given is a passphrase"
    ):
        sealed.unseal(sealed.Key.of(b"phrase"), b"bind", data)


def test_an_empty_key_is_refused() -> None:
    """A key file or variable of whitespace is not a passphrase."""
    with pytest.raises(sealed.Refused, match="empty"):
        sealed.Key.of(b" \n")


# --- what a state holds --------------------------------------------------------------------

DB = KvRead("database/creds/app")
CERT = PkiIssue("pki/issue/web", (("common_name", "a.localhost"),))
KV = KvRead("secret/data/app")
PLAIN = computed_in_template(TransitDecrypt("transit/decrypt/k", "vault:v1:abc"))


def _secrets() -> dict[KvRead | PkiIssue | TransitDecrypt, Secret]:
    return {
        DB: Secret(
            "database/creds/app", {"username": "u", "password": "p"}, lease_id="db/1", lease_duration_s=100
        ),
        CERT: Secret(
            "pki/issue/web", {"certificate": "C", "private_key": "K"}, expires_at=2000.0, issued_at=900.0
        ),
        KV: Secret("secret/data/app", {"a": ["x", {"b": 1}]}, version=3, kv_version=2, created_time="t"),
        PLAIN: Secret("transit/decrypt/k", {"plaintext": "hello"}),
    }


def test_a_state_survives_encode_and_decode_whole() -> None:
    """Token, every request kind (computed ones named as computed) and every answer come back equal."""
    state = handover.snapshot(_secrets(), token="tok", now=1000.0)
    back = handover.decode(handover.encode(state))
    assert back == state
    assert handover.secrets_of(back.secrets) == _secrets()
    assert next(s.request for s in back.secrets if isinstance(s.request, TransitDecrypt)).computed


def test_ends_count_from_when_a_lease_was_first_seen() -> None:
    """A lease ends lease_duration after it was first saved (a later save keeps that); a certificate at its expiry; a value never."""
    first = handover.snapshot(_secrets(), token="", now=1000.0)
    later = handover.snapshot(_secrets(), token="", now=1050.0, previous=first)
    ends = {s.request: s.ends_at for s in later.secrets}
    assert ends == {DB: 1100.0, CERT: 2000.0, KV: None, PLAIN: None}


def test_only_live_leases_and_certificates_are_taken_over() -> None:
    """Values are read again; a lease or certificate ending within the margin is not taken over."""
    state = handover.snapshot(_secrets(), token="", now=1000.0)
    assert set(handover.to_take_over(state, 1000.0)) == {DB, CERT}
    assert set(handover.to_take_over(state, 1100.0 - handover.REUSE_MARGIN_S + 1)) == {CERT}
    assert handover.to_take_over(state, 2000.0) == {}
    taken = handover.with_remaining(handover.to_take_over(state, 1000.0)[DB], 42)
    assert taken.lease_duration_s == 42


def test_without_hand_over_drops_the_token_and_leases_only() -> None:
    """What was revoked (or not handed over) leaves; certificates and values stay."""
    state = handover.snapshot(_secrets(), token="tok", now=1000.0).without_hand_over()
    assert state.token == ""
    assert {s.request for s in state.secrets} == {CERT, KV, PLAIN}


def test_stale_values_never_past_their_end_nor_older_than_max_age() -> None:
    """A stale start uses what has not ended, and nothing when the state is too old."""
    state = handover.snapshot(_secrets(), token="", now=1000.0)
    assert set(handover.stale_values(state, 1050.0, 3600) or {}) == {DB, CERT, KV, PLAIN}
    assert set(handover.stale_values(state, 1500.0, 3600) or {}) == {CERT, KV, PLAIN}
    assert handover.stale_values(state, 1000.0 + 3601, 3600) is None


def test_a_stale_start_hands_each_lease_the_time_it_has_left() -> None:
    """A lease comes back with what is left of it (the loop plans from that); a certificate and a value as saved."""
    state = handover.snapshot(_secrets(), token="", now=1000.0)
    values = handover.stale_values(state, 1060.0, 3600) or {}
    assert values[DB].lease_duration_s == 40
    assert values[DB].data == {"username": "u", "password": "p"}
    assert values[CERT] == _secrets()[CERT]
    assert values[KV] == _secrets()[KV]


def test_an_expired_lease_or_certificate_is_never_served_stale() -> None:
    """Past its end (even by a second) a lease or certificate is left out; with only those, nothing is usable."""
    only_leased = {k: v for k, v in _secrets().items() if k in (DB, CERT)}
    state = handover.snapshot(only_leased, token="", now=1000.0)
    assert set(handover.stale_values(state, 1099.0, 3600) or {}) == {DB, CERT}
    assert set(handover.stale_values(state, 1100.0, 3600) or {}) == {CERT}
    assert handover.stale_values(state, 2000.0, 3600) == {}


def test_stale_start_settings() -> None:
    """start_stale and max_age from the file (a duration) and the environment; max_age defaults to a day."""
    config = _config(dir='"s"', key_file='"k"', start_stale="true", max_age='"2h"')
    assert (config.start_stale, config.state_max_age_s) == (True, 7200.0)  # type: ignore[attr-defined]
    env = {"INJECT_STATE_DIR": "/e", "INJECT_STATE_KEY_ENV": "KEY", "INJECT_START_STALE": "1"}
    from_env = build_config(
        CliOptions(), {**env, "INJECT_STATE_MAX_AGE": "90m"}, {}, config_path=None, cwd="/"
    )
    assert (from_env.start_stale, from_env.state_max_age_s) == (True, 5400.0)
    assert build_config(CliOptions(), env, {}, config_path=None, cwd="/").state_max_age_s == 86400.0


def test_a_state_is_written_when_it_changed_or_its_age_is_due() -> None:
    """Unchanged content is not written again until refresh_s has passed."""
    assert handover.worth_saving(None, b"a", 0.0, 10.0, 60.0)
    assert handover.worth_saving(b"a", b"b", 5.0, 10.0, 60.0)
    assert not handover.worth_saving(b"a", b"a", 5.0, 10.0, 60.0)
    assert handover.worth_saving(b"a", b"a", 5.0, 65.0, 60.0)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b'{"version": 2}',
        b'{"version": 1, "saved_at": 1, "secrets": [{"request": {"kind": "x"}}]}',
    ],
)
def test_what_is_not_a_state_is_a_value_error(data: bytes) -> None:
    """A shape this inject does not read is rejected whole."""
    with pytest.raises(ValueError, match="not a state"):
        handover.decode(data)


def _config(**state: str) -> object:
    lines = "\n".join(f"{k} = {v}" for k, v in state.items())
    from vault_inject.config import parse_toml

    return build_config(
        CliOptions(), {}, parse_toml("[state]\n" + lines, "x.toml"), config_path=None, cwd="/w"
    )


def test_the_state_is_bound_to_the_server_and_the_login() -> None:
    """Another address or auth role gives another binding; the templates do not matter."""
    one = build_config(CliOptions(), {"VAULT_ADDR": "http://a:1"}, {}, config_path=None, cwd="/")
    other = build_config(CliOptions(), {"VAULT_ADDR": "http://b:1"}, {}, config_path=None, cwd="/")
    role = build_config(
        CliOptions(), {"VAULT_ADDR": "http://a:1", "INJECT_ROLE": "r"}, {}, config_path=None, cwd="/"
    )
    templated = build_config(
        CliOptions(templates=("a:b",)), {"VAULT_ADDR": "http://a:1"}, {}, config_path=None, cwd="/"
    )
    assert len({handover.binding(c) for c in (one, other, role)}) == 3
    assert handover.binding(one) == handover.binding(templated)


def test_state_settings_from_file_env_and_cli() -> None:
    """dir and key_file are paths from the file's directory; --state-dir and INJECT_STATE_DIR win."""
    config = _config(dir='"s"', key_file='"k"')
    assert (config.state_dir, config.state_key_file) == ("/w/s", "/w/k")  # type: ignore[attr-defined]
    env = {"INJECT_STATE_DIR": "/e", "INJECT_STATE_KEY_ENV": "KEY", "INJECT_HAND_OVER": "1"}
    from_env = build_config(CliOptions(), env, {}, config_path=None, cwd="/")
    assert (from_env.state_dir, from_env.state_key_env, from_env.hand_over) == ("/e", "KEY", True)
    cli = build_config(CliOptions(values={"state_dir": "c"}), env, {}, config_path=None, cwd="/w")
    assert cli.state_dir == "/w/c"


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"dir": '"s"'}, "exactly one of"),
        ({"dir": '"s"', "key_file": '"k"', "key_env": '"K"'}, "exactly one of"),
        ({"hand_over": "true"}, "hand_over needs"),
        ({"start_stale": "true"}, r"start_stale needs \[state\] dir"),
        ({"dir": '"s"', "key_file": '"k"', "max_age": '"0s"'}, "max_age must be greater than zero"),
        ({"dir": '"s"', "key_env": '"1X"'}, "not a variable name"),
        ({"key": '"x"'}, "unknown key 'state.key'"),
    ],
)
def test_bad_state_settings_are_one_usage_line(state: dict[str, str], message: str) -> None:
    """A state without a key, with two, hand-over or stale start without a directory: a usage error naming the setting."""
    with pytest.raises(UsageError, match=message):
        _config(**state)


def test_the_state_key_variable_never_reaches_the_child() -> None:
    """The variable named by key_env is removed from the child's environment (unless pass_env names it)."""
    from vault_inject.cli import app

    environ = {"INJECT_STATE_DIR": "/s", "INJECT_STATE_KEY_ENV": "MY_KEY", "MY_KEY": "phrase", "KEEP": "1"}
    config = build_config(CliOptions(), environ, {}, config_path=None, cwd="/")
    child = app.child_environ(config, environ, {})
    assert "MY_KEY" not in child
    assert child["KEEP"] == "1"


def test_the_last_known_good_reader_serves_only_the_state_s_values() -> None:
    """What the state holds is answered as saved; anything else is the start's UnreachableError, naming the secret."""
    from vault_inject.client import LastKnownGood
    from vault_inject.errors import UnreachableError

    cause = UnreachableError("http://127.0.0.1:1 did not answer token lookup within 2s")
    reader = LastKnownGood({KV: _secrets()[KV]}, cause)
    assert reader.fetch(KV) == _secrets()[KV]
    assert reader.read_many([KV]) == {KV: _secrets()[KV]}
    with pytest.raises(
        UnreachableError, match=r"did not answer token lookup.*'database/creds/app' is not in the state"
    ):
        reader.read_many([KV, DB])
