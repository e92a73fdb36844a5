"""Configuration: frozen dataclasses, TOML parsing, validation and the merge
CLI > environment > config file > defaults.

Pure: the caller reads the file and passes its text, the environment and the
working directory in, so every rule here is testable without touching the system.
"""

from __future__ import annotations

import functools
import os.path
import signal
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

from ..errors import UsageError
from .durations import parse_duration

DEFAULT_CONFIG_NAME = "inject.toml"
TRUST_CONFIG_ENV = "INJECT_TRUST_CONFIG"
DEFAULT_PERMS = 0o600
_Choice = TypeVar("_Choice", bound=str)
AuthMethod = Literal["token", "approle", "jwt", "kubernetes", "cert", "userpass"]
OnChange = Literal["restart", "signal", "none"]
AUTH_METHODS: tuple[AuthMethod, ...] = get_args(AuthMethod)
ON_CHANGE: tuple[OnChange, ...] = get_args(OnChange)
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
# Never handed to the child unless listed in child.pass_env: they would let the app
# act as inject (or read every secret inject can read).
AUTH_ENV_VARS = (
    "VAULT_TOKEN",
    "BAO_TOKEN",
    "VAULT_ROLE_ID",
    "VAULT_SECRET_ID",
    "BAO_ROLE_ID",
    "BAO_SECRET_ID",
    "INJECT_TOKEN",
)
# systemd's notify socket and watchdog (inject speaks for the service), never the child's
# unless listed in child.pass_env: the app would be taken for the service's main process.
SYSTEMD_ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass(frozen=True)
class CliOptions:
    """What was given on the command line; ``None`` / empty means "not given"."""

    values: Mapping[str, Any] = field(default_factory=dict)
    templates: tuple[str, ...] = ()
    env: tuple[str, ...] = ()


@dataclass(frozen=True)
class TemplateSpec:
    """One template: where it comes from, where it goes, and how the file is made."""

    destination: str
    source: str | None = None
    contents: str | None = None
    perms: int = DEFAULT_PERMS
    allow_symlink: bool = False
    allow_shared_dir: bool = False  # a directory on the path others may write is accepted
    command: str | None = None
    command_timeout_s: float = 30.0
    owner: str = ""  # USER[:GROUP] owning the file; default: --user, else inject's own
    on_change: OnChange | None = None  # None: the [child] setting
    reload_signal: int | None = None  # with on_change "signal"; None: the [child] setting

    @property
    def name(self) -> str:
        """How errors and logs name this template: its source file, else its destination."""
        return os.path.basename(self.source) if self.source else self.destination


@dataclass(frozen=True)
class Config:
    """Everything one inject run needs to know, after merging all layers."""

    address: str = ""  # the first of ``addresses`` when a list was given
    addresses: tuple[str, ...] = ()  # an HA cluster's nodes, in order of preference
    namespace: str = ""
    ca_cert: str = ""
    client_cert: str = ""
    client_key: str = ""
    tls_skip_verify: bool = False
    auth_method: AuthMethod = "token"
    auth_mount: str = ""
    token_file: str = ""
    role_id_file: str = ""
    secret_id_file: str = ""
    remove_secret_id_file: bool = False
    secret_id_wrapped_file: str = ""  # a response-wrapping token for the secret_id (removed once read)
    role: str = ""
    jwt_file: str = ""
    username: str = ""
    password_file: str = ""
    retry_timeout_s: float = 60.0
    poll_interval_s: float = 60.0
    reread_threshold: float = 0.9  # non-renewable leases are re-read at this fraction of their TTL
    render_timeout_s: float = 10.0  # CPU time one render (all templates and env values) may use
    wait_min_s: float = 0.0
    wait_max_s: float = 0.0
    on_change: OnChange = "restart"
    reload_signal: int = int(signal.SIGHUP)
    kill_signal: int = int(signal.SIGTERM)
    kill_timeout_s: float = 10.0
    splay_s: float = 0.0  # act on a change after a random delay in 0..splay_s
    listen: str = ""  # HOST:PORT of the health and metrics endpoints; "" = off
    user: str = ""
    check: str = ""
    pass_env: tuple[str, ...] = ()
    no_watch: bool = False
    # The child's stdout/stderr through inject with secret values concealed; None: the
    # command's default (on under ``inject dev``, off otherwise). See ``masks_output``.
    mask_output: bool | None = None
    revoke_on_exit: bool = True
    # The encrypted state (``[state]``): off unless ``state_dir`` is set.
    state_dir: str = ""
    state_key_file: str = ""  # 32 random bytes, or a passphrase (through scrypt)
    state_key_env: str = ""  # the NAME of an environment variable holding a passphrase
    hand_over: bool = False  # leave the token and leases unrevoked, in the state, at exit
    start_stale: bool = False  # server down at start: run on the state's last-known-good values
    state_max_age_s: float = 86400.0  # a state older than this is never started from
    log_format: str = "text"
    log_level: str = "info"
    templates: tuple[TemplateSpec, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    config_file: str | None = None
    # As root, read the config file and template sources even if another user could write
    # them (``--trust-config``, ``INJECT_TRUST_CONFIG``; never from the file: see trust_config).
    trust_config: bool = False
    # How this Config was made, so a changed config file can be merged again the same way.
    cli: CliOptions | None = field(default=None, compare=False, repr=False)
    cwd: str = ""


def template_commands(config: Config, changed: Iterable[str]) -> list[tuple[str, str, float]]:
    """``(what, command, timeout)`` of every template whose destination is in ``changed``."""
    written = set(changed)
    return [
        (f"command for {spec.destination}", spec.command, spec.command_timeout_s)
        for spec in config.templates
        if spec.command and spec.destination in written
    ]


# --- option table -----------------------------------------------------------------


@dataclass(frozen=True)
class _Opt:
    attr: str
    section: str
    key: str
    envvars: tuple[str, ...]
    parse: Callable[[Any, str], Any]


def _as_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise UsageError(f"{where}: expected true or false, got {value!r}")


def _as_duration(value: Any, where: str) -> float:
    return parse_duration(value, where=where)


def _choice(*allowed: _Choice) -> Callable[[Any, str], _Choice]:
    def parse(value: Any, where: str) -> _Choice:
        text = _as_str(value, where).strip().lower()
        for choice in allowed:
            if text == choice:
                return choice
        raise UsageError(f"{where}: {value!r} is not one of {', '.join(allowed)}")

    return parse


def parse_signal(value: Any, where: str = "signal") -> int:
    """``SIGHUP``, ``HUP``, ``hup`` or ``1`` -> the signal number."""
    text = str(value).strip().upper()
    if text.isascii() and text.isdigit():
        if len(text) <= len(str(signal.NSIG)) and 0 < int(text) < signal.NSIG:
            return int(text)
        raise UsageError(f"{where}: no signal number {text[:20]}")
    name = text if text.startswith("SIG") else "SIG" + text
    try:
        return int(signal.Signals[name])
    except KeyError as exc:
        raise UsageError(f"{where}: unknown signal {value!r}") from exc


def _as_str_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise UsageError(f"{where}: expected a list of names")


def _as_fraction(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: expected a number between 0 and 1, got {value!r}") from exc
    if not 0.1 <= number <= 0.99:
        raise UsageError(f"{where}: {value!r} is outside 0.1..0.99")
    return number


LOOPBACK = "127.0.0.1"


def parse_listen(value: Any, where: str = "listen") -> str:
    """``127.0.0.1:9102``, ``[::1]:9102``, ``0.0.0.0:9102`` (every interface, said so) or a
    port alone, ``9102`` or ``:9102`` (loopback); checked, kept as text."""
    text = _as_str(value, where).strip()
    split_listen(text, where)
    return text


def split_listen(text: str, where: str = "listen") -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``; a port alone (``9102``, ``:9102``) is loopback's, so
    that listening on every interface is always written out (``0.0.0.0:9102``, ``[::]:9102``).
    A UsageError that shows the expected form otherwise."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{where}: {text[:80]!r} is not HOST:PORT or PORT (like 127.0.0.1:9102)")
    if any(c.isspace() or c in "/[]@" for c in host):
        raise UsageError(f"{where}: {text[:80]!r} is not HOST:PORT or PORT (like 127.0.0.1:9102)")
    return host or LOOPBACK, int(port)


def _as_address_list(value: Any, where: str) -> tuple[str, ...]:
    """``a,b`` or ``["a", "b"]`` (or a tuple from a repeated ``--address``): each an http(s)
    URL with a host; duplicates dropped, order kept."""
    if isinstance(value, tuple):
        value = list(value)
    found = _as_str_list(value, where) if isinstance(value, str | list) else None
    if not found:
        raise UsageError(f"{where}: expected one or more server addresses (http(s)://HOST:PORT)")
    from urllib.parse import urlsplit  # only when an address list is given

    for address in found:
        parts = urlsplit(address)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{where}: {address[:80]!r} is not an http(s)://HOST:PORT address")
    return tuple(dict.fromkeys(a.strip().rstrip("/") for a in found))


def setting_hint(attr: str) -> str:
    """Where a setting is given, for a message that asks for it: ``[auth] secret_id_file
    (env INJECT_SECRET_ID_FILE)``, for users configuring by file or by environment."""
    opt = next(o for o in _OPTIONS if o.attr == attr)
    envs = " or ".join(opt.envvars)
    return f"[{opt.section}] {opt.key}" + (f" (env {envs})" if envs else "")


def _env(*names: str) -> tuple[str, ...]:
    return names


_OPTIONS: tuple[_Opt, ...] = (
    _Opt("address", "vault", "address", _env("VAULT_ADDR", "BAO_ADDR"), _as_str),
    _Opt("addresses", "vault", "addresses", _env("INJECT_ADDRESSES"), _as_address_list),
    _Opt("namespace", "vault", "namespace", _env("VAULT_NAMESPACE", "BAO_NAMESPACE"), _as_str),
    _Opt("ca_cert", "vault", "ca_cert", _env("VAULT_CACERT", "BAO_CACERT"), _as_str),
    _Opt("client_cert", "vault", "client_cert", _env("VAULT_CLIENT_CERT", "BAO_CLIENT_CERT"), _as_str),
    _Opt("client_key", "vault", "client_key", _env("VAULT_CLIENT_KEY", "BAO_CLIENT_KEY"), _as_str),
    _Opt(
        "tls_skip_verify",
        "vault",
        "tls_skip_verify",
        _env("VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY"),
        _as_bool,
    ),
    _Opt("retry_timeout_s", "vault", "retry_timeout", _env("INJECT_RETRY_TIMEOUT"), _as_duration),
    _Opt("auth_method", "auth", "method", _env("INJECT_AUTH"), _choice(*AUTH_METHODS)),
    _Opt("auth_mount", "auth", "mount", _env("INJECT_AUTH_MOUNT"), _as_str),
    _Opt("token_file", "auth", "token_file", _env("INJECT_TOKEN_FILE"), _as_str),
    _Opt("role_id_file", "auth", "role_id_file", _env("INJECT_ROLE_ID_FILE"), _as_str),
    _Opt("secret_id_file", "auth", "secret_id_file", _env("INJECT_SECRET_ID_FILE"), _as_str),
    _Opt(
        "remove_secret_id_file",
        "auth",
        "remove_secret_id_file",
        _env("INJECT_REMOVE_SECRET_ID_FILE"),
        _as_bool,
    ),
    _Opt(
        "secret_id_wrapped_file",
        "auth",
        "secret_id_wrapped_file",
        _env("INJECT_SECRET_ID_WRAPPED_FILE"),
        _as_str,
    ),
    _Opt("role", "auth", "role", _env("INJECT_ROLE"), _as_str),
    _Opt("jwt_file", "auth", "jwt_file", _env("INJECT_JWT_FILE"), _as_str),
    _Opt("username", "auth", "username", _env("INJECT_USERNAME"), _as_str),
    _Opt("password_file", "auth", "password_file", _env("INJECT_PASSWORD_FILE"), _as_str),
    _Opt("poll_interval_s", "watch", "poll_interval", _env("INJECT_POLL_INTERVAL"), _as_duration),
    _Opt(
        "reread_threshold",
        "watch",
        "lease_reread_threshold",
        _env("INJECT_LEASE_REREAD_THRESHOLD"),
        _as_fraction,
    ),
    _Opt("render_timeout_s", "watch", "render_timeout", _env("INJECT_RENDER_TIMEOUT"), _as_duration),
    _Opt("on_change", "child", "on_change", _env("INJECT_ON_CHANGE"), _choice(*ON_CHANGE)),
    _Opt("reload_signal", "child", "reload_signal", _env("INJECT_RELOAD_SIGNAL"), parse_signal),
    _Opt("kill_signal", "child", "kill_signal", _env("INJECT_KILL_SIGNAL"), parse_signal),
    _Opt("kill_timeout_s", "child", "kill_timeout", _env("INJECT_KILL_TIMEOUT"), _as_duration),
    _Opt("splay_s", "child", "splay", _env("INJECT_SPLAY"), _as_duration),
    _Opt("listen", "observe", "listen", _env("INJECT_LISTEN"), parse_listen),
    _Opt("user", "child", "user", _env("INJECT_USER"), _as_str),
    _Opt("check", "child", "check", _env("INJECT_CHECK"), _as_str),
    _Opt("pass_env", "child", "pass_env", _env("INJECT_PASS_ENV"), _as_str_list),
    _Opt("no_watch", "child", "no_watch", _env("INJECT_NO_WATCH"), _as_bool),
    _Opt("mask_output", "child", "mask_output", _env("INJECT_MASK_OUTPUT"), _as_bool),
    _Opt("revoke_on_exit", "child", "revoke_on_exit", _env("INJECT_REVOKE_ON_EXIT"), _as_bool),
    _Opt("state_dir", "state", "dir", _env("INJECT_STATE_DIR"), _as_str),
    _Opt("state_key_file", "state", "key_file", _env("INJECT_STATE_KEY_FILE"), _as_str),
    _Opt("state_key_env", "state", "key_env", _env("INJECT_STATE_KEY_ENV"), _as_str),
    _Opt("hand_over", "state", "hand_over", _env("INJECT_HAND_OVER"), _as_bool),
    _Opt("start_stale", "state", "start_stale", _env("INJECT_START_STALE"), _as_bool),
    _Opt("state_max_age_s", "state", "max_age", _env("INJECT_STATE_MAX_AGE"), _as_duration),
    _Opt("log_format", "log", "format", _env("INJECT_LOG_FORMAT"), _choice(*LOG_FORMATS)),
    _Opt("log_level", "log", "level", _env("INJECT_LOG_LEVEL"), _choice(*LOG_LEVELS)),
)
_PATH_ATTRS = frozenset(
    {
        "ca_cert",
        "client_cert",
        "client_key",
        "token_file",
        "role_id_file",
        "secret_id_file",
        "secret_id_wrapped_file",
        "jwt_file",
        "password_file",
        "state_dir",
        "state_key_file",
    }
)
_SECTIONS = frozenset({"vault", "auth", "watch", "child", "observe", "log", "state", "template", "env"})
_TEMPLATE_KEYS = frozenset(
    {
        "source",
        "contents",
        "destination",
        "perms",
        "allow_symlink",
        "allow_shared_dir",
        "command",
        "command_timeout",
        "user",
        "on_change",
        "reload_signal",
    }
)


# --- the merge --------------------------------------------------------------------


def parse_toml(text: str, path: str) -> dict[str, Any]:
    """Parse config text; raise UsageError naming the file and line on bad TOML."""
    import tomllib  # here, not at the top: without a config file nothing parses TOML

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config {path}: invalid TOML: {exc}") from exc
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise UsageError(f"config {path}: invalid TOML: arrays or tables nested too deeply") from None


def build_config(
    cli: CliOptions,
    environ: Mapping[str, str],
    file_data: Mapping[str, Any],
    *,
    config_path: str | None,
    cwd: str,
) -> Config:
    """Merge CLI > environment > config file > defaults into one validated Config."""
    where_file = f"config {config_path}" if config_path else "config"
    _reject_unknown(file_data, where_file)
    _reject_nul(file_data, where_file)
    file_dir = os.path.dirname(os.path.abspath(os.path.join(cwd, config_path))) if config_path else cwd
    values: dict[str, Any] = {}
    for opt in _OPTIONS:
        if opt.attr in _ADDRESS_ATTRS:
            continue
        found = _pick(opt, cli, environ, file_data, where_file)
        if found is None:
            continue
        value, from_file = found
        if opt.attr in _PATH_ATTRS and value:
            value = _resolve(file_dir if from_file else cwd, value)
        values[opt.attr] = value
    values.update(_address_list(cli, environ, file_data, where_file))
    values.update(_wait(file_data, where_file))
    templates = _file_templates(file_data, where_file, file_dir) + _cli_templates(cli.templates, cwd)
    values["templates"] = _dedupe_templates(templates)
    values["env"] = _merge_env(file_data, cli.env, where_file)
    values["config_file"] = config_path
    values["trust_config"] = trust_config(cli, environ)
    values["cli"] = cli
    values["cwd"] = cwd
    return _validated(Config(**_typed(values)))


def _typed(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against Config's field types. ``Config(**values)`` is fed from the
    option table, so mypy cannot see a parser returning the wrong type; this sees it at once."""
    hints = _config_types()
    for name, value in values.items():
        if not _fits(value, hints[name]):
            raise TypeError(f"Config.{name}: a {type(value).__name__} does not fit {hints[name]}")
    return dict(values)


@functools.cache
def _config_types() -> dict[str, Any]:
    return typing.get_type_hints(Config)


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), get_args(hint)
    if origin is Literal:
        return value in args
    if origin in (types.UnionType, typing.Union):
        return any(_fits(value, arm) for arm in args)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, origin or hint)


def _pick(
    opt: _Opt,
    cli: CliOptions,
    environ: Mapping[str, str],
    file_data: Mapping[str, Any],
    where_file: str,
) -> tuple[Any, bool] | None:
    cli_value = cli.values.get(opt.attr)
    if cli_value is not None:
        flag = _CLI_FLAGS.get(opt.attr, opt.attr.removesuffix("_s").replace("_", "-"))
        return opt.parse(cli_value, f"option --{flag}"), False
    for name in opt.envvars:
        if environ.get(name, "") != "":
            return opt.parse(environ[name], f"environment {name}"), False
    section = file_data.get(opt.section, {})
    if opt.key in section:
        return opt.parse(section[opt.key], f"{where_file}: [{opt.section}] {opt.key}"), True
    return None


_ADDRESS_ATTRS = ("addresses", "address")  # the list first: it wins within one layer
_CLI_FLAGS = {"addresses": "address"}  # --address given more than once


def _address_list(
    cli: CliOptions, environ: Mapping[str, str], file_data: Mapping[str, Any], where_file: str
) -> dict[str, Any]:
    """``address`` and ``addresses`` resolved as one setting: the highest layer that gives
    either wins (CLI, then environment, then file); within a layer the list wins
    (``INJECT_ADDRESSES`` over ``VAULT_ADDR``). A single address is used as given."""
    by_attr = {opt.attr: opt for opt in _OPTIONS if opt.attr in _ADDRESS_ATTRS}
    vault = file_data.get("vault", {})
    if "address" in vault and "addresses" in vault:
        raise UsageError(f"{where_file}: [vault] has both 'address' and 'addresses'; give one")
    for layer in (_cli_only(cli), _env_only(environ), _file_only(file_data)):
        for attr in _ADDRESS_ATTRS:
            found = _pick(by_attr[attr], layer[0], layer[1], layer[2], where_file)
            if found is not None:
                return _addresses_from(attr, found[0])
    return {}


def _addresses_from(attr: str, value: Any) -> dict[str, Any]:
    if attr == "address":
        return {"address": value, "addresses": (value,) if value else ()}
    return {"address": value[0], "addresses": value}


_Layer = tuple[CliOptions, Mapping[str, str], Mapping[str, Any]]


def _cli_only(cli: CliOptions) -> _Layer:
    return cli, {}, {}


def _env_only(environ: Mapping[str, str]) -> _Layer:
    return CliOptions(), environ, {}


def _file_only(file_data: Mapping[str, Any]) -> _Layer:
    return CliOptions(), {}, file_data


def _resolve(base: str, path: str) -> str:
    """``path`` relative to ``base``, normalised (``examples/../run`` -> ``run``)."""
    return os.path.normpath(os.path.join(base, path))


def _reject_unknown(data: Mapping[str, Any], where: str) -> None:
    for name, value in data.items():
        if name not in _SECTIONS:
            raise UsageError(f"{where}: unknown key '{name}'{_nearest(name, _top_level_names())}")
        if name in ("template", "env"):
            continue
        if not isinstance(value, dict):
            raise UsageError(f"{where}: '{name}' must be a table ([{name}])")
        known = {o.key for o in _OPTIONS if o.section == name} | ({"wait"} if name == "watch" else set())
        for key in value:
            if key not in known:
                hint = _nearest(key, known, prefix=name + ".")
                raise UsageError(f"{where}: unknown key '{name}.{key}'{hint}")


def _top_level_names() -> dict[str, str]:
    """What a top-level typo may have meant: a section, or a key of a section written
    without its table (``destinaton`` for ``[[template]] destination``)."""
    names = {o.key: f"{o.section}.{o.key}" for o in _OPTIONS}
    names.update({key: f"template.{key}" for key in _TEMPLATE_KEYS})
    names.update({section: section for section in _SECTIONS})
    return names


def _nearest(given: str, known: Iterable[str] | Mapping[str, str], *, prefix: str = "") -> str:
    """``"; did you mean 'x'?"`` for the known name closest to ``given`` (a typo), else ``""``.
    ``known`` may map each name to how to write it (``destination`` -> ``template.destination``)."""
    import difflib  # only when a config file has a wrong key

    spelled = dict(known) if isinstance(known, Mapping) else {name: prefix + name for name in known}
    close = difflib.get_close_matches(given, list(spelled), n=1, cutoff=0.75)
    return f"; did you mean '{spelled[close[0]]}'?" if close else ""


def _reject_nul(value: Any, where: str, key: str = "") -> None:
    """TOML strings may hold ``\\u0000``; no path, name, command or env value can."""
    if isinstance(value, str) and "\0" in value:
        raise UsageError(f"{where}: {key or 'a value'} contains a NUL byte")
    if isinstance(value, list):
        for number, item in enumerate(value, 1):
            _reject_nul(item, where, f"{key} #{number}")
    elif isinstance(value, dict):
        for name, item in value.items():
            if "\0" in name:
                raise UsageError(f"{where}: a key contains a NUL byte")
            _reject_nul(item, where, f"{key}.{name}" if key else name)


def _wait(data: Mapping[str, Any], where: str) -> dict[str, float]:
    wait = data.get("watch", {}).get("wait")
    if wait is None:
        return {}
    if isinstance(wait, str | int | float):
        seconds = parse_duration(wait, where=f"{where}: [watch] wait")
        return {"wait_min_s": seconds, "wait_max_s": seconds * 4}
    if not isinstance(wait, dict) or set(wait) - {"min", "max"}:
        raise UsageError(f'{where}: [watch] wait must be {{ min = "2s", max = "10s" }}')
    low = parse_duration(wait.get("min", 0), where=f"{where}: [watch] wait.min")
    high = parse_duration(wait.get("max", low * 4), where=f"{where}: [watch] wait.max")
    if high < low:
        raise UsageError(f"{where}: [watch] wait.max is shorter than wait.min")
    return {"wait_min_s": low, "wait_max_s": high}


def _file_templates(data: Mapping[str, Any], where: str, file_dir: str) -> list[TemplateSpec]:
    raw = data.get("template", [])
    if not isinstance(raw, list):
        raise UsageError(f"{where}: 'template' must be an array of tables ([[template]])")
    return [_file_template(item, f"{where}: template #{n}", file_dir) for n, item in enumerate(raw, 1)]


def _file_template(item: Any, where: str, file_dir: str) -> TemplateSpec:
    if not isinstance(item, dict):
        raise UsageError(f"{where}: must be a table")
    for key in item:
        if key not in _TEMPLATE_KEYS:
            raise UsageError(f"{where}: unknown key '{key}'{_nearest(key, _TEMPLATE_KEYS)}")
    destination = _as_str(item.get("destination", ""), f"{where}: destination")
    if not destination:
        raise UsageError(f"{where}: 'destination' is required")
    source = item.get("source")
    contents = item.get("contents")
    if (source is None) == (contents is None):
        raise UsageError(f"{where}: give exactly one of 'source' or 'contents'")
    return TemplateSpec(
        destination=_resolve(file_dir, destination),
        source=_resolve(file_dir, _as_str(source, f"{where}: source")) if source else None,
        contents=_as_str(contents, f"{where}: contents") if contents is not None else None,
        perms=_perms(item.get("perms", DEFAULT_PERMS), f"{where}: perms"),
        allow_symlink=_as_bool(item.get("allow_symlink", False), f"{where}: allow_symlink"),
        allow_shared_dir=_as_bool(item.get("allow_shared_dir", False), f"{where}: allow_shared_dir"),
        command=_as_str(item["command"], f"{where}: command") if item.get("command") else None,
        command_timeout_s=parse_duration(item.get("command_timeout", 30), where=f"{where}: command_timeout"),
        owner=_as_str(item.get("user", ""), f"{where}: user"),
        on_change=_choice(*ON_CHANGE)(item["on_change"], f"{where}: on_change")
        if "on_change" in item
        else None,
        reload_signal=parse_signal(item["reload_signal"], f"{where}: reload_signal")
        if "reload_signal" in item
        else None,
    )


def _perms(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and value.strip():
        try:
            mode = int(value.strip(), 8)
        except ValueError as exc:
            raise UsageError(f'{where}: {value!r} is not an octal mode like "0600"') from exc
    else:
        raise UsageError(f'{where}: expected an octal mode like "0600"')
    if isinstance(value, int) and mode > 0o777:
        raise UsageError(f'{where}: {value} is a decimal number; write "0{value}" or 0o{value}')
    if not 0 <= mode <= 0o7777:
        raise UsageError(f"{where}: {value!r} is not a file mode")
    return mode


def _cli_templates(raw: tuple[str, ...], cwd: str) -> list[TemplateSpec]:
    specs = []
    for item in raw:
        source, sep, destination = item.rpartition(":")
        if not sep or not source or not destination:
            raise UsageError(f"option --template {item!r}: expected SRC:DEST")
        specs.append(TemplateSpec(source=_resolve(cwd, source), destination=_resolve(cwd, destination)))
    return specs


def _dedupe_templates(specs: list[TemplateSpec]) -> tuple[TemplateSpec, ...]:
    by_destination: dict[str, TemplateSpec] = {}
    for spec in specs:
        by_destination[os.path.normpath(spec.destination)] = spec  # later layers (CLI) win
    return tuple(by_destination.values())


def _merge_env(data: Mapping[str, Any], cli_env: tuple[str, ...], where: str) -> tuple[tuple[str, str], ...]:
    merged: dict[str, str] = {}
    table = data.get("env", {})
    if not isinstance(table, dict):
        raise UsageError(f"{where}: 'env' must be a table ([env])")
    for name, value in table.items():
        merged[_env_name(name, f"{where}: [env] {name}")] = _as_str(value, f"{where}: [env] {name}")
    for item in cli_env:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"option --env {name!r}: expected NAME=VALUE")
        merged[_env_name(name, f"option --env {name!r}")] = value
    return tuple(merged.items())


def _env_name(name: str, where: str) -> str:
    if not name or "=" in name or "\0" in name or not (name[0].isalpha() or name[0] == "_"):
        raise UsageError(f"{where}: not a valid environment variable name")
    return name


def _validated(config: Config) -> Config:
    if config.wait_max_s < config.wait_min_s:
        raise UsageError("config: wait.max is shorter than wait.min")
    if config.poll_interval_s <= 0:
        raise UsageError("config: poll interval must be greater than zero")
    if config.render_timeout_s <= 0:
        raise UsageError("config: render_timeout must be greater than zero")
    _validate_state(config)
    return config


def _validate_state(config: Config) -> None:
    """``[state]``: a directory and exactly one key; a hand-over and a stale start need both."""
    if config.state_max_age_s <= 0:
        raise UsageError("config: [state] max_age must be greater than zero")
    if not config.state_dir:
        for name, value in (("hand_over", config.hand_over), ("start_stale", config.start_stale)):
            if value:
                raise UsageError(f"config: [state] {name} needs [state] dir (--state-dir, INJECT_STATE_DIR)")
        return
    if bool(config.state_key_file) == bool(config.state_key_env):
        raise UsageError(
            "config: [state] dir needs exactly one of [state] key_file (or INJECT_STATE_KEY_FILE)"
            " and [state] key_env (or INJECT_STATE_KEY_ENV)"
        )
    if config.state_key_env and not _is_env_name(config.state_key_env):
        raise UsageError(f"config: [state] key_env {config.state_key_env[:80]!r} is not a variable name")


def _is_env_name(name: str) -> bool:
    return name.replace("_", "a").isalnum() and name.isascii() and not name[0].isdigit()


def trust_config(cli: CliOptions, environ: Mapping[str, str]) -> bool:
    """``--trust-config`` or ``INJECT_TRUST_CONFIG``: as root, read the config file and the
    template sources even when a user other than root could write them. Only the command
    line and the environment say so: a file cannot vouch for itself."""
    if cli.values.get("trust_config"):
        return True
    value = environ.get(TRUST_CONFIG_ENV, "")
    return _as_bool(value, f"environment {TRUST_CONFIG_ENV}") if value else False


def resolve_config_path(
    cli_path: str | None, environ: Mapping[str, str], exists: Callable[[str], bool]
) -> str | None:
    """``-c`` wins, then ``INJECT_CONFIG``, then ``./inject.toml`` when present."""
    if cli_path:
        return cli_path
    if environ.get("INJECT_CONFIG"):
        return environ["INJECT_CONFIG"]
    return DEFAULT_CONFIG_NAME if exists(DEFAULT_CONFIG_NAME) else None
