"""Every command-line option once: its names, what it sets, its help, its help section, the
metavar its help shows, and the commands it applies to. No click here: ``commands`` builds
click's options from this table, and ``launch`` gives a plain command line (no click) the
same keyword arguments click would.

Values are checked by ``config`` (one parser for the command line, the environment and the
file, with the same messages); the metavars show their form (``DURATION``, ``SIGNAL``,
``HOST:PORT``) and their choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

# Help sections, in the order a help screen shows them.
DEV = "Dev server"
SERVER = "Server"
AUTH = "Auth"
OUTPUTS = "Outputs"
FRESH = "Keeping fresh"
CHILD = "Child"
LOGGING = "Logging"
SECTIONS = (DEV, SERVER, AUTH, OUTPUTS, FRESH, CHILD, LOGGING)

Kind = Literal["value", "flag", "switch", "multiple"]
# value: a string, None when not given; flag: True or None (None lets the environment and
# the config file decide); switch: True or False (-v, -q, --debug); multiple: a tuple.

RUN, RENDER, WATCH, CHECK, PLAN, DEV_CMD = "run", "render", "watch", "check", "plan", "dev"
ALL = frozenset({RUN, RENDER, WATCH, CHECK, PLAN, DEV_CMD})
TALKS_TO_SERVER = frozenset({RUN, RENDER, WATCH, CHECK, PLAN})  # dev brings its own server
WRITES = frozenset({RUN, RENDER, WATCH, DEV_CMD})
KEEPS_FRESH = frozenset({RUN, WATCH, DEV_CMD})
HAS_CHILD = frozenset({RUN, DEV_CMD})
HAS_STATE = frozenset({RUN, RENDER, WATCH})  # what a run hands over or takes over


class Option(NamedTuple):
    """One command-line option."""

    names: tuple[str, ...]
    attr: str  # the keyword argument (a Config attribute unless launch says otherwise)
    help: str
    section: str
    commands: frozenset[str]
    kind: Kind = "value"
    metavar: str = ""


OPTIONS: tuple[Option, ...] = (
    Option(
        ("--secrets",),
        "secrets",
        "Secrets to load, a TOML file (default dev-secrets.toml).",
        DEV,
        frozenset({DEV_CMD}),
        metavar="FILE",
    ),
    Option(
        ("--address",),
        "address",
        "Server address (env VAULT_ADDR, else BAO_ADDR); repeat for an HA cluster's"
        " nodes, used in order with failover (env INJECT_ADDRESSES=URL,URL).",
        SERVER,
        TALKS_TO_SERVER,
        "multiple",
        "URL",
    ),
    Option(
        ("--namespace",),
        "namespace",
        "Namespace (env VAULT_NAMESPACE / BAO_NAMESPACE).",
        SERVER,
        TALKS_TO_SERVER,
        metavar="NAMESPACE",
    ),
    Option(
        ("--ca-cert",),
        "ca_cert",
        "CA bundle to verify the server (env VAULT_CACERT).",
        SERVER,
        TALKS_TO_SERVER,
        metavar="FILE",
    ),
    Option(
        ("--client-cert",),
        "client_cert",
        "Client certificate for TLS (env VAULT_CLIENT_CERT).",
        SERVER,
        TALKS_TO_SERVER,
        metavar="FILE",
    ),
    Option(
        ("--client-key",),
        "client_key",
        "Client key for TLS (env VAULT_CLIENT_KEY).",
        SERVER,
        TALKS_TO_SERVER,
        metavar="FILE",
    ),
    Option(
        ("--tls-skip-verify",),
        "tls_skip_verify",
        "Do not verify the server's TLS certificate.",
        SERVER,
        TALKS_TO_SERVER,
        "flag",
    ),
    Option(
        ("--retry-timeout",),
        "retry_timeout_s",
        "Keep retrying an unreachable server this long (default 60s).",
        SERVER,
        TALKS_TO_SERVER,
        metavar="DURATION",
    ),
    Option(
        ("--auth",),
        "auth_method",
        "Auth method (default token).",
        AUTH,
        TALKS_TO_SERVER,
        metavar="[token|approle|jwt|kubernetes|cert|userpass]",
    ),
    Option(
        ("--token-file",),
        "token_file",
        "Read inject's token from this file.",
        AUTH,
        TALKS_TO_SERVER,
        metavar="FILE",
    ),
    Option(
        ("--state-dir",),
        "state_dir",
        "Keep an encrypted state here: token, leases, certificates (env INJECT_STATE_DIR;"
        " needs [state] key_file or key_env).",
        AUTH,
        HAS_STATE,
        metavar="DIR",
    ),
    Option(
        ("--hand-over",),
        "hand_over",
        "Leave inject's token and leases unrevoked at exit, in the state, for the next inject"
        " (env INJECT_HAND_OVER=1).",
        AUTH,
        HAS_STATE,
        "flag",
    ),
    Option(
        ("-c", "--config"),
        "config_path",
        "TOML config (default ./inject.toml; env INJECT_CONFIG).",
        OUTPUTS,
        ALL,
        metavar="FILE",
    ),
    Option(
        ("-t", "--template"),
        "templates",
        "Render template SRC to DEST (repeatable).",
        OUTPUTS,
        ALL,
        "multiple",
        "SRC:DEST",
    ),
    Option(
        ("-e", "--env"),
        "env",
        "Child env var; VALUE a vault:PATH#KEY ref or Jinja (repeatable).",
        OUTPUTS,
        ALL,
        "multiple",
        "NAME=VALUE",
    ),
    Option(
        ("--user",),
        "user",
        "Write the files as USER, and run the child and template commands as USER.",
        OUTPUTS,
        WRITES,
        metavar="USER[:GROUP]",
    ),
    Option(
        ("--trust-config",),
        "trust_config",
        "As root, read a config file or template that another user could write"
        " (env INJECT_TRUST_CONFIG=1; default: refused).",
        OUTPUTS,
        ALL,
        "flag",
    ),
    Option(
        ("--poll-interval",),
        "poll_interval_s",
        "How often KV secrets are checked (default 60s).",
        FRESH,
        KEEPS_FRESH,
        metavar="DURATION",
    ),
    Option(
        ("--splay",),
        "splay_s",
        "Act on a change after a random delay up to this (default 0).",
        FRESH,
        KEEPS_FRESH,
        metavar="DURATION",
    ),
    Option(
        ("--listen",),
        "listen",
        "Serve /healthz and /metrics on HOST:PORT (a PORT alone: loopback; env INJECT_LISTEN; default off).",
        FRESH,
        KEEPS_FRESH,
        metavar="HOST:PORT",
    ),
    Option(
        ("--no-watch",),
        "no_watch",
        "Render, then exec the command in place of inject.",
        CHILD,
        frozenset({RUN}),
        "flag",
    ),
    Option(
        ("--mask-output",),
        "mask_output",
        "Pass the child's stdout/stderr through inject, secret values concealed"
        " (env INJECT_MASK_OUTPUT; on under `inject dev`).",
        CHILD,
        frozenset({RUN}),
        "flag",
    ),
    Option(
        ("--on-change",),
        "on_change",
        "What a changed secret does to the child (default restart).",
        CHILD,
        HAS_CHILD,
        metavar="[restart|signal|none]",
    ),
    Option(
        ("--reload-signal",),
        "reload_signal",
        "Signal for --on-change signal (default SIGHUP).",
        CHILD,
        HAS_CHILD,
        metavar="SIGNAL",
    ),
    Option(
        ("--kill-signal",),
        "kill_signal",
        "Signal that stops the child (default SIGTERM).",
        CHILD,
        HAS_CHILD,
        metavar="SIGNAL",
    ),
    Option(
        ("--kill-timeout",),
        "kill_timeout_s",
        "Wait this long before SIGKILL (default 10s).",
        CHILD,
        HAS_CHILD,
        metavar="DURATION",
    ),
    Option(
        ("--log-format",),
        "log_format",
        "Log format (default text).",
        LOGGING,
        ALL,
        metavar="[text|json]",
    ),
    Option(
        ("--log-level",),
        "log_level",
        "Log level (default info).",
        LOGGING,
        ALL,
        metavar="[debug|info|warning|error]",
    ),
    Option(("-v", "--verbose"), "verbose", "Log debug messages.", LOGGING, ALL, "switch"),
    Option(("-q", "--quiet"), "quiet", "Log warnings and errors only.", LOGGING, ALL, "switch"),
    Option(("--debug",), "debug", "Debug logs and tracebacks.", LOGGING, ALL, "switch"),
)

_UNSET: Mapping[Kind, Any] = {"value": None, "flag": None, "switch": False, "multiple": ()}


def options_of(command: str) -> tuple[Option, ...]:
    """The options ``command`` takes, in table order."""
    return tuple(option for option in OPTIONS if command in option.commands)


def unset_options(command: str) -> dict[str, Any]:
    """What click gives ``command`` for each of its options when none is on the command line."""
    return {option.attr: _UNSET[option.kind] for option in options_of(command)}


def commands_taking(name: str) -> list[str]:
    """The commands that take the option spelled ``name`` (``--listen``), in a fixed order."""
    order = (RUN, RENDER, WATCH, CHECK, PLAN, DEV_CMD)
    found = {command for option in OPTIONS if name in option.names for command in option.commands}
    return [command for command in order if command in found]
