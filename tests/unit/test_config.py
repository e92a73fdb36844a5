"""Configuration: CLI > environment > config file > defaults, and validation."""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from typing import Any

import pytest

from vault_inject.config import settings as config_module
from vault_inject.config.settings import (
    DEFAULT_CONFIG_NAME,
    CliOptions,
    Config,
    TemplateSpec,
    build_config,
    parse_signal,
    parse_toml,
    resolve_config_path,
)
from vault_inject.errors import UsageError

CWD = "/work/app"
CONFIG_PATH = "/etc/inject/inject.toml"


def build(
    *,
    cli: Mapping[str, Any] | None = None,
    templates: tuple[str, ...] = (),
    env_opts: tuple[str, ...] = (),
    environ: Mapping[str, str] | None = None,
    toml: str = "",
    config_path: str | None = CONFIG_PATH,
    cwd: str = CWD,
) -> Config:
    """build_config from readable pieces (the TOML text is parsed like the app does)."""
    return build_config(
        CliOptions(values=dict(cli or {}), templates=templates, env=env_opts),
        dict(environ or {}),
        parse_toml(toml, config_path or "inject.toml"),
        config_path=config_path,
        cwd=cwd,
    )


# --- defaults and precedence ------------------------------------------------------------


def test_defaults_when_nothing_is_given() -> None:
    """With no CLI, env or file the documented defaults apply."""
    config = build(config_path=None)
    assert config.poll_interval_s == 60.0
    assert config.on_change == "restart"
    assert config.reload_signal == signal.SIGHUP
    assert config.kill_signal == signal.SIGTERM
    assert config.kill_timeout_s == 10.0
    assert config.retry_timeout_s == 60.0
    assert config.auth_method == "token"
    assert config.log_level == "info"
    assert config.log_format == "text"
    assert config.templates == ()
    assert config.env == ()
    assert config.config_file is None


ADDRESS_TOML = '[vault]\naddress = "http://file:8200"\n'


@pytest.mark.parametrize(
    ("cli", "environ", "expected"),
    [
        ({"address": "http://cli:8200"}, {"VAULT_ADDR": "http://vault-env:8200"}, "http://cli:8200"),
        (
            {},
            {"VAULT_ADDR": "http://vault-env:8200", "BAO_ADDR": "http://bao-env:8200"},
            "http://vault-env:8200",
        ),
        ({}, {"BAO_ADDR": "http://bao-env:8200"}, "http://bao-env:8200"),
        ({}, {"VAULT_ADDR": "", "BAO_ADDR": "http://bao-env:8200"}, "http://bao-env:8200"),
        ({}, {}, "http://file:8200"),
        ({"address": None}, {"VAULT_ADDR": ""}, "http://file:8200"),
    ],
)
def test_address_precedence(cli: dict[str, Any], environ: dict[str, str], expected: str) -> None:
    """--address beats VAULT_ADDR, which beats BAO_ADDR, which beats [vault] address; empty env is unset."""
    assert build(cli=cli, environ=environ, toml=ADDRESS_TOML).address == expected


POLL_TOML = '[watch]\npoll_interval = "5m"\n'


@pytest.mark.parametrize(
    ("cli", "environ", "toml", "expected"),
    [
        ({"poll_interval_s": "500ms"}, {"INJECT_POLL_INTERVAL": "10s"}, POLL_TOML, 0.5),
        ({}, {"INJECT_POLL_INTERVAL": "10s"}, POLL_TOML, 10.0),
        ({}, {}, POLL_TOML, 300.0),
        ({}, {}, "[watch]\npoll_interval = 15\n", 15.0),
        ({}, {}, "", 60.0),
    ],
)
def test_poll_interval_precedence(
    cli: dict[str, Any], environ: dict[str, str], toml: str, expected: float
) -> None:
    """Poll interval: CLI > INJECT_POLL_INTERVAL > [watch] poll_interval > 60s, parsed as a duration."""
    assert build(cli=cli, environ=environ, toml=toml).poll_interval_s == expected


ON_CHANGE_TOML = '[child]\non_change = "none"\n'


@pytest.mark.parametrize(
    ("cli", "environ", "expected"),
    [
        ({"on_change": "signal"}, {"INJECT_ON_CHANGE": "restart"}, "signal"),
        ({}, {"INJECT_ON_CHANGE": "Restart"}, "restart"),
        ({}, {}, "none"),
    ],
)
def test_on_change_precedence(cli: dict[str, Any], environ: dict[str, str], expected: str) -> None:
    """on_change: CLI > INJECT_ON_CHANGE > [child] on_change, case-insensitive."""
    assert build(cli=cli, environ=environ, toml=ON_CHANGE_TOML).on_change == expected


LOG_TOML = '[log]\nlevel = "warning"\nformat = "json"\n'


@pytest.mark.parametrize(
    ("cli", "environ", "expected"),
    [
        ({"log_level": "debug"}, {"INJECT_LOG_LEVEL": "error"}, "debug"),
        ({}, {"INJECT_LOG_LEVEL": "error"}, "error"),
        ({}, {}, "warning"),
    ],
)
def test_log_level_precedence(cli: dict[str, Any], environ: dict[str, str], expected: str) -> None:
    """log level: CLI > INJECT_LOG_LEVEL > [log] level."""
    config = build(cli=cli, environ=environ, toml=LOG_TOML)
    assert config.log_level == expected
    assert config.log_format == "json"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("SIGUSR1", signal.SIGUSR1),
        ("USR1", signal.SIGUSR1),
        ("usr1", signal.SIGUSR1),
        (" sigusr2 ", signal.SIGUSR2),
        ("1", signal.SIGHUP),
        ("15", signal.SIGTERM),
        (9, signal.SIGKILL),
    ],
)
def test_parse_signal_by_name_or_number(value: str | int, expected: signal.Signals) -> None:
    """Signals are accepted as SIGNAME, NAME, lowercase, or number."""
    assert parse_signal(value) == int(expected)


@pytest.mark.parametrize("value", ["SIGNOPE", "NOPE", "0", "999", "", "-1"])
def test_parse_signal_unknown_raises_usage_error_naming_where(value: str) -> None:
    """An unknown signal name or number is a UsageError naming where it came from."""
    with pytest.raises(UsageError, match=r"^option --kill-signal: "):
        parse_signal(value, "option --kill-signal")


def test_signals_precedence_across_layers() -> None:
    """reload/kill signals: CLI (number) > env (short name) > file (number or name)."""
    toml = '[child]\nreload_signal = 10\nkill_signal = "SIGINT"\n'
    assert build(toml=toml).reload_signal == signal.SIGUSR1
    assert build(toml=toml).kill_signal == signal.SIGINT
    from_env = build(toml=toml, environ={"INJECT_RELOAD_SIGNAL": "usr2", "INJECT_KILL_SIGNAL": "QUIT"})
    assert from_env.reload_signal == signal.SIGUSR2
    assert from_env.kill_signal == signal.SIGQUIT
    from_cli = build(
        toml=toml,
        environ={"INJECT_RELOAD_SIGNAL": "usr2"},
        cli={"reload_signal": "1", "kill_signal": "9"},
    )
    assert from_cli.reload_signal == signal.SIGHUP
    assert from_cli.kill_signal == signal.SIGKILL


def test_bad_cli_value_error_names_the_option() -> None:
    """An invalid CLI value is a UsageError naming the --option."""
    with pytest.raises(UsageError, match=r"^option --on-change: "):
        build(cli={"on_change": "reboot"})
    with pytest.raises(UsageError, match=r"^option --poll-interval: "):
        build(cli={"poll_interval_s": "soon"})


def test_bad_env_value_error_names_the_variable() -> None:
    """An invalid environment value is a UsageError naming the variable."""
    with pytest.raises(UsageError, match=r"^environment INJECT_LOG_LEVEL: "):
        build(environ={"INJECT_LOG_LEVEL": "loud"})


def test_bad_file_value_error_names_file_section_and_key() -> None:
    """An invalid file value is a UsageError naming the file, section and key."""
    with pytest.raises(UsageError) as info:
        build(toml='[child]\nkill_timeout = "forever"\n')
    message = str(info.value)
    assert CONFIG_PATH in message
    assert "[child] kill_timeout" in message


@pytest.mark.parametrize(
    ("environ", "toml", "expected"),
    [
        ({}, "", 10.0),
        ({}, '[watch]\nrender_timeout = "2s"\n', 2.0),
        ({"INJECT_RENDER_TIMEOUT": "500ms"}, '[watch]\nrender_timeout = "2s"\n', 0.5),
    ],
)
def test_render_timeout_precedence(environ: dict[str, str], toml: str, expected: float) -> None:
    """Render budget: INJECT_RENDER_TIMEOUT > [watch] render_timeout > 10s, parsed as a duration."""
    assert build(environ=environ, toml=toml).render_timeout_s == expected


def test_zero_render_timeout_is_rejected() -> None:
    """A render budget of zero is a UsageError (no template could render)."""
    with pytest.raises(UsageError, match="render_timeout"):
        build(environ={"INJECT_RENDER_TIMEOUT": "0s"})


def test_zero_poll_interval_is_rejected() -> None:
    """A poll interval of zero is a UsageError (it would spin)."""
    with pytest.raises(UsageError, match="poll interval"):
        build(cli={"poll_interval_s": "0s"})


@pytest.mark.parametrize(
    ("text", "expected"), [("1", True), ("true", True), ("on", True), ("0", False), ("false", False)]
)
def test_tls_skip_verify_from_env(text: str, expected: bool) -> None:
    """VAULT_SKIP_VERIFY accepts the usual boolean spellings."""
    assert build(environ={"VAULT_SKIP_VERIFY": text}).tls_skip_verify is expected


@pytest.mark.parametrize(
    ("environ", "toml", "expected"),
    [
        ({}, "", None),
        ({}, "[child]\nmask_output = true\n", True),
        ({"INJECT_MASK_OUTPUT": "false"}, "[child]\nmask_output = true\n", False),
        ({"INJECT_MASK_OUTPUT": "on"}, "", True),
    ],
)
def test_mask_output_precedence(environ: dict[str, str], toml: str, expected: bool | None) -> None:
    """Masked output: INJECT_MASK_OUTPUT > [child] mask_output > unset (None: the command's
    default, on under `inject dev` only)."""
    assert build(environ=environ, toml=toml).mask_output is expected


def test_a_bad_mask_output_names_the_key() -> None:
    """``mask_output = "maybe"`` is a UsageError naming the file's section and key."""
    with pytest.raises(UsageError, match=r"\[child\] mask_output: expected true or false"):
        build(toml='[child]\nmask_output = "maybe"\n')


def test_path_options_resolve_against_their_layer() -> None:
    """A relative file path from the config file is relative to its directory; from env, to cwd."""
    toml = '[vault]\nca_cert = "certs/ca.pem"\n[auth]\ntoken_file = "tok"\n'
    config = build(toml=toml, environ={"INJECT_TOKEN_FILE": "run/token"})
    assert config.ca_cert == "/etc/inject/certs/ca.pem"
    assert config.token_file == "/work/app/run/token"


def test_new_login_settings_from_file_and_env() -> None:
    """[auth] username, password_file and secret_id_wrapped_file (paths relative to the file), and their INJECT_* variables (relative to cwd)."""
    toml = (
        '[auth]\nmethod = "userpass"\nusername = "app"\npassword_file = "pw"\n'
        'secret_id_wrapped_file = "wrapped"\n'
    )
    config = build(toml=toml)
    assert (config.auth_method, config.username) == ("userpass", "app")
    assert config.password_file == "/etc/inject/pw"
    assert config.secret_id_wrapped_file == "/etc/inject/wrapped"
    environ = {
        "INJECT_AUTH": "cert",
        "INJECT_USERNAME": "other",
        "INJECT_PASSWORD_FILE": "run/pw",
        "INJECT_SECRET_ID_WRAPPED_FILE": "run/wrapped",
    }
    config = build(toml=toml, environ=environ)
    assert (config.auth_method, config.username) == ("cert", "other")
    assert config.password_file == "/work/app/run/pw"
    assert config.secret_id_wrapped_file == "/work/app/run/wrapped"


# --- unknown keys and bad TOML -------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[vualt]\naddress = "x"\n', "'vualt'"),
        ('address = "x"\n', "'address'"),
        ('[vault]\nadress = "x"\n', "'vault.adress'"),
        ('[watch]\npoll = "10s"\n', "'watch.poll'"),
        ('[child]\nonchange = "none"\n', "'child.onchange'"),
        ('[[template]]\nsorce = "a"\ndestination = "b"\n', "'sorce'"),
    ],
)
def test_unknown_key_error_names_key_and_file(toml: str, key: str) -> None:
    """Unknown top-level, section or template keys are a UsageError naming the key and the file."""
    with pytest.raises(UsageError) as info:
        build(toml=toml)
    message = str(info.value)
    assert key in message
    assert CONFIG_PATH in message


def test_section_that_is_not_a_table_is_rejected() -> None:
    """A section given as a scalar (``vault = 1``) is a UsageError naming it."""
    with pytest.raises(UsageError, match="'vault' must be a table"):
        build(toml="vault = 1\n")


def test_parse_toml_error_names_file_and_line() -> None:
    """Invalid TOML is a UsageError naming the file and the line of the mistake."""
    with pytest.raises(UsageError) as info:
        parse_toml('[vault]\naddress "http://x"\n', "/etc/inject/inject.toml")
    message = str(info.value)
    assert "/etc/inject/inject.toml" in message
    assert "line 2" in message


def test_parse_toml_valid_text_returns_tables() -> None:
    """Valid TOML is returned as nested dicts."""
    assert parse_toml('[vault]\naddress = "x"\n', "f") == {"vault": {"address": "x"}}


# --- templates ---------------------------------------------------------------------------


def test_file_template_relative_paths_resolve_against_config_dir() -> None:
    """[[template]] source and destination are relative to the config file's directory."""
    toml = '[[template]]\nsource = "templates/app.yml.j2"\ndestination = "out/app.yml"\n'
    (spec,) = build(toml=toml, config_path="conf/inject.toml", cwd="/srv").templates
    assert spec.source == "/srv/conf/templates/app.yml.j2"
    assert spec.destination == "/srv/conf/out/app.yml"


def test_file_template_absolute_paths_are_kept() -> None:
    """Absolute template paths in the config file are used as they are."""
    toml = '[[template]]\nsource = "/tpl/a.j2"\ndestination = "/app/config/a.yml"\n'
    (spec,) = build(toml=toml).templates
    assert (spec.source, spec.destination) == ("/tpl/a.j2", "/app/config/a.yml")


def test_cli_template_paths_resolve_against_cwd() -> None:
    """-t SRC:DEST paths are relative to the working directory, not the config file."""
    (spec,) = build(templates=("tpl/a.j2:out/a.yml",)).templates
    assert spec == TemplateSpec(source="/work/app/tpl/a.j2", destination="/work/app/out/a.yml")


def test_cli_template_splits_on_the_last_colon() -> None:
    """-t splits SRC:DEST at the last colon, so a source path may contain colons."""
    (spec,) = build(templates=("/tpl/we:ird.j2:/out/a",)).templates
    assert (spec.source, spec.destination) == ("/tpl/we:ird.j2", "/out/a")


@pytest.mark.parametrize("item", ["no-colon", ":dest", "src:", ":"])
def test_cli_template_malformed_is_usage_error(item: str) -> None:
    """-t without both SRC and DEST is a UsageError naming the option and the value."""
    with pytest.raises(UsageError) as info:
        build(templates=(item,))
    message = str(info.value)
    assert message.startswith("option --template ")
    assert repr(item) in message
    assert "SRC:DEST" in message


def test_file_template_contents_instead_of_source() -> None:
    """A [[template]] may carry inline ``contents`` instead of a source file."""
    toml = '[[template]]\ncontents = "x={{ 1 }}"\ndestination = "/o/x"\n'
    (spec,) = build(toml=toml).templates
    assert spec.contents == "x={{ 1 }}"
    assert spec.source is None


@pytest.mark.parametrize(
    "toml",
    [
        '[[template]]\nsource = "a.j2"\ncontents = "x"\ndestination = "/o/x"\n',
        '[[template]]\ndestination = "/o/x"\n',
    ],
)
def test_file_template_needs_exactly_one_of_source_or_contents(toml: str) -> None:
    """Both or neither of source/contents is a UsageError naming the template entry and file."""
    with pytest.raises(UsageError) as info:
        build(toml=toml)
    message = str(info.value)
    assert "exactly one of 'source' or 'contents'" in message
    assert "template #1" in message
    assert CONFIG_PATH in message


def test_file_template_destination_is_required() -> None:
    """A [[template]] without destination is a UsageError."""
    with pytest.raises(UsageError, match="'destination' is required"):
        build(toml='[[template]]\nsource = "a.j2"\n')


@pytest.mark.parametrize(
    ("perms", "expected"),
    [
        ('"0640"', 0o640),
        ('"640"', 0o640),
        ('"0600"', 0o600),
        ("0o640", 0o640),
        ("416", 0o640),
        ('"0755"', 0o755),
    ],
)
def test_file_template_perms_as_octal_string_or_int(perms: str, expected: int) -> None:
    """perms may be an octal string ("0640") or a TOML integer (0o640)."""
    toml = f'[[template]]\nsource = "a"\ndestination = "/o/x"\nperms = {perms}\n'
    (spec,) = build(toml=toml).templates
    assert spec.perms == expected


def test_template_perms_default_to_0600() -> None:
    """Templates default to mode 0600."""
    assert build(templates=("a:b",)).templates[0].perms == 0o600


@pytest.mark.parametrize("perms", ['"rw-r-----"', '"0999"', '""', "true", "-1", "70000", '"17777"'])
def test_file_template_bad_perms_is_usage_error(perms: str) -> None:
    """perms that are not an octal file mode are a UsageError naming the template."""
    toml = f'[[template]]\nsource = "a"\ndestination = "/o/x"\nperms = {perms}\n'
    with pytest.raises(UsageError, match=r"template #1: perms"):
        build(toml=toml)


def test_file_template_optional_fields() -> None:
    """allow_symlink, command and command_timeout are read from the template entry."""
    toml = (
        '[[template]]\nsource = "a"\ndestination = "/o/x"\n'
        'allow_symlink = true\ncommand = "nginx -s reload"\ncommand_timeout = "5s"\n'
    )
    (spec,) = build(toml=toml).templates
    assert spec.allow_symlink is True
    assert spec.command == "nginx -s reload"
    assert spec.command_timeout_s == 5.0


def test_cli_template_replaces_file_template_with_same_destination() -> None:
    """A -t template whose destination equals a [[template]] destination replaces it."""
    toml = (
        '[[template]]\nsource = "file.j2"\ndestination = "out/app.yml"\n'
        '[[template]]\nsource = "other.j2"\ndestination = "out/other.yml"\n'
    )
    config = build(
        toml=toml,
        config_path="/srv/inject.toml",
        cwd="/srv",
        templates=("cli.j2:out/./app.yml",),
    )
    by_dest = {spec.destination: spec for spec in config.templates}
    assert len(config.templates) == 2
    assert by_dest["/srv/out/other.yml"].source == "/srv/other.j2"
    replaced = [s for s in config.templates if s.destination.endswith("app.yml")]
    assert [s.source for s in replaced] == ["/srv/cli.j2"]


def test_template_name_is_source_basename_else_destination() -> None:
    """TemplateSpec.name is the source file's basename, or the destination for inline contents."""
    assert TemplateSpec(destination="/o/x", source="/t/app.yml.j2").name == "app.yml.j2"
    assert TemplateSpec(destination="/o/x", contents="c").name == "/o/x"


# --- env ---------------------------------------------------------------------------------


def test_env_table_merged_with_cli_env_cli_wins() -> None:
    """[env] and -e are merged; -e wins for the same name; order is file first."""
    toml = '[env]\nA = "vault:secret/a#x"\nB = "from-file"\n'
    config = build(toml=toml, env_opts=("B=from-cli", "C=c=with=equals"))
    assert dict(config.env) == {"A": "vault:secret/a#x", "B": "from-cli", "C": "c=with=equals"}
    assert [name for name, _ in config.env] == ["A", "B", "C"]


def test_cli_env_may_have_an_empty_value() -> None:
    """-e NAME= gives an empty value, not an error."""
    assert dict(build(env_opts=("EMPTY=",)).env) == {"EMPTY": ""}


@pytest.mark.parametrize("item", ["=value", "1ABC=x", "-X=y", "A\0B=z"])
def test_cli_env_invalid_name_is_usage_error(item: str) -> None:
    """-e with an invalid variable name is a UsageError naming the option."""
    with pytest.raises(UsageError, match=r"^option --env .*not a valid environment variable name"):
        build(env_opts=(item,))


def test_cli_env_without_equals_is_usage_error() -> None:
    """-e without '=' is a UsageError asking for NAME=VALUE."""
    with pytest.raises(UsageError, match="expected NAME=VALUE"):
        build(env_opts=("JUSTANAME",))


@pytest.mark.parametrize("name", ['"1ABC"', '"A=B"', '""', '"-x"'])
def test_file_env_invalid_name_is_usage_error(name: str) -> None:
    """An invalid name in [env] is a UsageError naming the file."""
    with pytest.raises(UsageError) as info:
        build(toml=f'[env]\n{name} = "v"\n')
    assert CONFIG_PATH in str(info.value)
    assert "not a valid environment variable name" in str(info.value)


def test_file_env_value_must_be_a_string() -> None:
    """A non-string [env] value is a UsageError naming the variable."""
    with pytest.raises(UsageError, match=r"\[env\] PORT: expected a string"):
        build(toml="[env]\nPORT = 8080\n")


# --- wait -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml_wait", "expected"),
    [
        ('{ min = "2s", max = "10s" }', (2.0, 10.0)),
        ('{ min = "2s" }', (2.0, 8.0)),
        ('{ min = 1, max = "1m" }', (1.0, 60.0)),
        ('"3s"', (3.0, 12.0)),
    ],
)
def test_wait_table(toml_wait: str, expected: tuple[float, float]) -> None:
    """[watch] wait accepts {min, max} (max defaults to 4*min, never below min) or one duration."""
    config = build(toml=f"[watch]\nwait = {toml_wait}\n")
    assert (config.wait_min_s, config.wait_max_s) == expected


def test_wait_defaults_to_zero() -> None:
    """Without [watch] wait there is no debounce delay."""
    config = build()
    assert (config.wait_min_s, config.wait_max_s) == (0.0, 0.0)


@pytest.mark.parametrize("toml_wait", ['{ min = "2s", mx = "10s" }', '{ min = "soon" }', "[1, 2]"])
def test_wait_invalid_is_usage_error(toml_wait: str) -> None:
    """A wait table with unknown keys, bad durations or the wrong type is a UsageError naming the file."""
    with pytest.raises(UsageError) as info:
        build(toml=f"[watch]\nwait = {toml_wait}\n")
    assert CONFIG_PATH in str(info.value)
    assert "wait" in str(info.value)


# --- config path --------------------------------------------------------------------------


def test_resolve_config_path_cli_wins() -> None:
    """-c wins over INJECT_CONFIG and ./inject.toml."""
    assert resolve_config_path("a.toml", {"INJECT_CONFIG": "b.toml"}, lambda _: True) == "a.toml"


def test_resolve_config_path_env_over_default() -> None:
    """INJECT_CONFIG wins over ./inject.toml when no -c is given."""
    assert resolve_config_path(None, {"INJECT_CONFIG": "b.toml"}, lambda _: True) == "b.toml"


def test_resolve_config_path_default_only_when_it_exists() -> None:
    """./inject.toml is used only when it exists; otherwise there is no config file."""
    asked: list[str] = []

    def exists(path: str) -> bool:
        asked.append(path)
        return path == DEFAULT_CONFIG_NAME

    assert resolve_config_path(None, {}, exists) == "inject.toml"
    assert asked == ["inject.toml"]
    assert resolve_config_path(None, {"INJECT_CONFIG": ""}, lambda _: False) is None


def test_config_file_is_recorded() -> None:
    """The Config remembers which file it came from."""
    assert build(config_path="/x/inject.toml").config_file == "/x/inject.toml"


def test_wait_max_shorter_than_min_is_an_error() -> None:
    """`wait = { min = "5s", max = "1s" }` is rejected, naming wait.max, instead of silently fixed."""
    with pytest.raises(UsageError, match=r"wait\.max is shorter than wait\.min"):
        build(toml='[watch]\nwait = { min = "5s", max = "1s" }\n')


def test_decimal_perms_integer_is_an_error() -> None:
    """`perms = 640` (a decimal 640, not 0o640) is rejected with a hint to quote it."""
    with pytest.raises(UsageError, match='"0640"'):
        build(toml='[[template]]\ncontents = "x"\ndestination = "out"\nperms = 640\n')


def test_template_commands_only_for_written_files() -> None:
    """template_commands lists (what, command, timeout) for templates whose files were written, in order."""
    from vault_inject.config.settings import template_commands

    config = build(
        toml='[[template]]\ncontents = "a"\ndestination = "a"\ncommand = "echo a"\ncommand_timeout = "5s"\n'
        '[[template]]\ncontents = "b"\ndestination = "b"\ncommand = "echo b"\n'
        '[[template]]\ncontents = "c"\ndestination = "c"\n'
    )
    a, b, c = (spec.destination for spec in config.templates)
    assert template_commands(config, [a, c]) == [(f"command for {a}", "echo a", 5.0)]
    assert [what for what, _, _ in template_commands(config, [b, a])] == [
        f"command for {a}",
        f"command for {b}",
    ]


def test_a_parser_returning_the_wrong_type_is_caught_before_config_is_built() -> None:
    """Config(**values) is fed from the option table: a value of the wrong type (or outside a Literal) stops the build at once."""
    with pytest.raises(TypeError, match="poll_interval_s"):
        config_module._typed({"poll_interval_s": "60"})
    with pytest.raises(TypeError, match="on_change"):
        config_module._typed({"on_change": "reboot"})
    assert config_module._typed({"on_change": "signal", "poll_interval_s": 5, "config_file": None}) == {
        "on_change": "signal",
        "poll_interval_s": 5,
        "config_file": None,
    }


def test_choices_are_the_literal_types() -> None:
    """The accepted auth methods and on_change values are exactly the Literal types' values."""
    assert config_module.AUTH_METHODS == ("token", "approle", "jwt", "kubernetes", "cert", "userpass")
    assert config_module.ON_CHANGE == ("restart", "signal", "none")


# --- trusting the config file as root (issue 24, finding 6) --------------------------------


@pytest.mark.parametrize(
    ("cli", "environ", "expected"),
    [
        ({}, {}, False),
        ({"trust_config": True}, {}, True),
        ({}, {"INJECT_TRUST_CONFIG": "1"}, True),
        ({}, {"INJECT_TRUST_CONFIG": "false"}, False),
        ({}, {"INJECT_TRUST_CONFIG": ""}, False),
    ],
)
def test_trust_config_comes_from_the_command_line_or_the_environment(
    cli: dict[str, Any], environ: dict[str, str], expected: bool
) -> None:
    """``--trust-config`` and ``INJECT_TRUST_CONFIG`` set Config.trust_config; nothing sets it by default."""
    assert build(cli=cli, environ=environ).trust_config is expected
    assert config_module.trust_config(CliOptions(values=cli), environ) is expected


@pytest.mark.parametrize("section", ["vault", "auth", "watch", "child", "observe", "log"])
def test_the_config_file_cannot_vouch_for_itself(section: str) -> None:
    """``trust_config`` in any section of the file is an unknown key (exit 2), never an opt-out."""
    with pytest.raises(UsageError, match=f"'{section}.trust_config'"):
        build(toml=f"[{section}]\ntrust_config = true\n")
    with pytest.raises(UsageError, match="'trust_config'"):
        build(toml="trust_config = true\n")


def test_a_bad_trust_config_value_names_the_variable() -> None:
    """``INJECT_TRUST_CONFIG=maybe`` is a UsageError naming the variable."""
    with pytest.raises(UsageError, match="INJECT_TRUST_CONFIG"):
        build(environ={"INJECT_TRUST_CONFIG": "maybe"})


@pytest.mark.parametrize(
    ("toml", "suggestion"),
    [
        ('[vualt]\naddress = "x"\n', "did you mean 'vault'?"),
        ('address = "x"\n', "did you mean 'vault.address'?"),
        ('[vault]\nadress = "x"\n', "did you mean 'vault.address'?"),
        ('[child]\nonchange = "none"\n', "did you mean 'child.on_change'?"),
        ('[[template]]\nsorce = "a"\ndestination = "b"\n', "did you mean 'source'?"),
        ('[[template]]\nsource = "a"\ndestinaton = "b"\n', "did you mean 'destination'?"),
    ],
)
def test_unknown_key_suggests_the_nearest_known_key(toml: str, suggestion: str) -> None:
    """A misspelt key names the nearest key inject knows, as it would be written there."""
    with pytest.raises(UsageError, match="; " + re.escape(suggestion) + "$"):
        build(toml=toml)


def test_unknown_key_far_from_any_known_key_suggests_nothing() -> None:
    """A key like no known one is reported without a guess."""
    with pytest.raises(UsageError) as info:
        build(toml='[vault]\nzzzzqqq = "x"\n')
    assert str(info.value).endswith("unknown key 'vault.zzzzqqq'")
