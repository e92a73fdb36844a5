"""Fuzzing the pure parsers with hypothesis: references, durations, signals and the config
loader (TOML text and the merge of CLI, environment and file) raise only our own errors
(UsageError and the rest of the InjectError tree), never another exception."""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault_inject.config.durations import parse_duration
from vault_inject.config.settings import CliOptions, Config, build_config, parse_signal, parse_toml
from vault_inject.errors import InjectError
from vault_inject.refs import Ref, parse_ref

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Digits that str.isdigit() accepts but int() or ASCII checks may not, and a lot of them.
TRICKY_DIGITS = "0123456789\u00b2\u00b3\u00b9\u0663\u06f5\u07c7\u0966\uff11"  # ²³¹ and others
digits = st.text(alphabet=TRICKY_DIGITS, min_size=1, max_size=20) | st.integers(4000, 6000).map(
    lambda n: "7" * n  # past int()'s 4300-digit limit
)


def only_our_errors(call: Callable[[], Any]) -> Any:
    """Run ``call``; an InjectError is an acceptable answer, anything else fails the test."""
    try:
        return call()
    except InjectError:
        return None


# --- references ---------------------------------------------------------------------------

ref_text = st.one_of(
    st.text(),
    st.builds(lambda p, rest: p + rest, st.sampled_from(["vault:", "bao:"]), st.text()),
    st.builds(
        lambda p, path, key, ver: f"{p}{path}#{key}#{ver}",
        st.sampled_from(["vault:", "bao:"]),
        st.text(alphabet=string.ascii_lowercase + "/.# ", max_size=30),
        st.text(max_size=10),
        digits | st.text(max_size=10),
    ),
)


@FUZZ
@given(ref_text)
def test_parse_ref_raises_only_usage_errors(text: str) -> None:
    """Any text given as a reference parses to a Ref with a usable path, or is a UsageError."""
    ref = only_our_errors(lambda: parse_ref(text, where="env X"))
    if ref is not None:
        assert isinstance(ref, Ref)
        assert ref.path
        assert ".." not in ref.path.split("/")
        assert ref.key
        assert ref.version is None or ref.version >= 1


# --- durations and signals ----------------------------------------------------------------

toml_scalars = st.one_of(
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
)
duration_inputs = st.one_of(
    toml_scalars,
    st.integers(),  # beyond TOML's range: a CLI or caller could still pass one
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.from_regex(r"\A\s*((\d{1,5}(\.\d{1,3})?)(ms|s|m|h|d))+\s*\Z"),
    st.builds(lambda n, u: f"{n}{u}", digits, st.sampled_from(["", "s", "ms", "h", "e9", "e999"])),
)


@FUZZ
@given(duration_inputs)
def test_parse_duration_raises_only_usage_errors(value: Any) -> None:
    """Any value given as a duration is a finite, non-negative number of seconds or a UsageError."""
    seconds = only_our_errors(lambda: parse_duration(value, where="--poll-interval"))
    if seconds is not None:
        assert isinstance(seconds, float)
        assert math.isfinite(seconds)
        assert seconds >= 0


@FUZZ
@given(st.one_of(toml_scalars, digits, st.builds(lambda d: "SIG" + d, digits)))
def test_parse_signal_raises_only_usage_errors(value: Any) -> None:
    """Any value given as a signal is a valid signal number or a UsageError."""
    number = only_our_errors(lambda: parse_signal(value, "--kill-signal"))
    if number is not None:
        assert 0 < number < 65


# --- the config loader --------------------------------------------------------------------

KNOWN_KEYS = {
    "vault": [
        "address",
        "namespace",
        "ca_cert",
        "client_cert",
        "client_key",
        "tls_skip_verify",
        "retry_timeout",
    ],
    "auth": [
        "method",
        "mount",
        "token_file",
        "role_id_file",
        "secret_id_file",
        "remove_secret_id_file",
        "secret_id_wrapped_file",
        "role",
        "jwt_file",
        "username",
        "password_file",
    ],
    "watch": ["poll_interval", "wait", "lease_reread_threshold"],
    "child": [
        "on_change",
        "reload_signal",
        "kill_signal",
        "kill_timeout",
        "user",
        "check",
        "pass_env",
        "no_watch",
        "revoke_on_exit",
    ],
    "log": ["format", "level"],
}
OPTION_KEYS = [(name, key) for name, keys in KNOWN_KEYS.items() for key in keys]
TEMPLATE_KEYS = [
    "source",
    "contents",
    "destination",
    "perms",
    "allow_symlink",
    "command",
    "command_timeout",
    "user",
]
ENV_VARS = [
    "VAULT_ADDR",
    "VAULT_SKIP_VERIFY",
    "VAULT_NAMESPACE",
    "INJECT_AUTH",
    "INJECT_POLL_INTERVAL",
    "INJECT_RETRY_TIMEOUT",
    "INJECT_KILL_SIGNAL",
    "INJECT_RELOAD_SIGNAL",
    "INJECT_KILL_TIMEOUT",
    "INJECT_ON_CHANGE",
    "INJECT_PASS_ENV",
    "INJECT_NO_WATCH",
    "INJECT_LEASE_REREAD_THRESHOLD",
    "INJECT_LOG_FORMAT",
    "INJECT_LOG_LEVEL",
    "INJECT_TOKEN_FILE",
]
CLI_ATTRS = [
    "poll_interval_s",
    "retry_timeout_s",
    "kill_signal",
    "reload_signal",
    "kill_timeout_s",
    "on_change",
    "auth_method",
    "log_format",
    "tls_skip_verify",
    "no_watch",
    "token_file",
]

toml_values = st.recursive(
    toml_scalars | digits,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
env_text = st.text().filter(lambda t: "\0" not in t) | digits  # no process environment holds NUL
BASE_TEMPLATE = {"destination": "out.txt", "contents": "x"}


def _build(data: Any, options: CliOptions | None = None, env: dict[str, str] | None = None) -> Config:
    return build_config(options or CliOptions(), env or {}, data, config_path="fuzz.toml", cwd="/srv/app")


def _check_config(config: Config | None) -> None:
    if config is not None:
        assert isinstance(config, Config)
        assert config.poll_interval_s > 0
        assert all("\0" not in (t.destination + (t.source or "")) for t in config.templates)


@FUZZ
@given(st.sampled_from(OPTION_KEYS), toml_values)
def test_any_value_of_any_option_is_a_config_or_usage_error(option: tuple[str, str], value: Any) -> None:
    """Every [section] key of the config file, given any TOML value, merges or is a UsageError."""
    section, key = option
    _check_config(only_our_errors(lambda: _build({section: {key: value}})))


@FUZZ
@given(st.sampled_from(TEMPLATE_KEYS), toml_values)
def test_any_value_of_any_template_key_is_a_config_or_usage_error(key: str, value: Any) -> None:
    """Every [[template]] key, given any TOML value, merges or is a UsageError."""
    _check_config(only_our_errors(lambda: _build({"template": [{**BASE_TEMPLATE, key: value}]})))


@FUZZ
@given(st.dictionaries(st.text(max_size=8) | digits, toml_values, max_size=3) | toml_values)
def test_any_env_table_is_a_config_or_usage_error(table: Any) -> None:
    """Any [env] table (names and values of any type) merges or is a UsageError."""
    _check_config(only_our_errors(lambda: _build({"env": table})))


@FUZZ
@given(
    st.dictionaries(st.sampled_from(ENV_VARS), env_text, max_size=3),
    st.dictionaries(st.sampled_from(CLI_ATTRS), env_text, max_size=3),
    st.lists(env_text, max_size=2),
    st.lists(env_text, max_size=2),
)
def test_any_environment_and_cli_text_is_a_config_or_usage_error(
    env: dict[str, str], values: dict[str, str], templates: list[str], env_opts: list[str]
) -> None:
    """Any text in inject's environment variables and command-line options merges or is a UsageError."""
    options = CliOptions(values=values, templates=tuple(templates), env=tuple(env_opts))
    _check_config(only_our_errors(lambda: _build({}, options, env)))


key_or_noise = st.text(max_size=6)
file_data = st.fixed_dictionaries(
    {},
    optional={
        **{
            name: st.dictionaries(st.sampled_from(keys) | key_or_noise, toml_values, max_size=4) | toml_values
            for name, keys in KNOWN_KEYS.items()
        },
        "template": st.lists(
            st.dictionaries(st.sampled_from(TEMPLATE_KEYS) | key_or_noise, toml_values, max_size=5),
            max_size=3,
        )
        | toml_values,
        "env": st.dictionaries(st.text(max_size=8), toml_values, max_size=3) | toml_values,
        "noise": toml_values,
    },
)


@FUZZ
@given(file_data)
def test_any_parsed_file_is_a_config_or_usage_error(data: dict[str, Any]) -> None:
    """Any shape of parsed TOML data (sections, unknown keys, wrong types) merges or is a UsageError."""
    _check_config(only_our_errors(lambda: _build(data)))


TOML_ALPHABET = string.ascii_lowercase[:6] + string.digits + " []{}=,.\"'\n#_-+:T\\u"
toml_lines = st.lists(
    st.one_of(
        st.sampled_from(["[vault]", "[watch]", "[child]", "[[template]]", "[env]", "[auth]", "[log]"]),
        st.builds(
            lambda k, v: f"{k} = {v}",
            st.sampled_from([key for _, key in OPTION_KEYS] + TEMPLATE_KEYS + ["X"]),
            st.text(alphabet=TOML_ALPHABET, max_size=20),
        ),
        st.text(alphabet=TOML_ALPHABET, max_size=30),
        st.builds(lambda n, o: "x = " + o * n, st.integers(1, 3000), st.sampled_from(["[", "{a=", "[{b="])),
    ),
    max_size=8,
).map("\n".join)


@FUZZ
@given(toml_lines | st.text())
def test_any_config_text_is_a_config_or_usage_error(text: str) -> None:
    """Any config file text parses and merges into a Config, or is a UsageError naming the file."""
    message = ""
    try:
        _check_config(_build(parse_toml(text, "fuzz.toml")))
    except InjectError as exc:
        message = str(exc)
    assert not message or "fuzz.toml" in message
