"""The same work described for both tools: template files in each engine's syntax,
inject's TOML config and bao agent's HCL config, and the child command.

Each template reads one or more KV v2 secrets ``secret/bench/<name>`` and prints its
``password`` key, one line per secret, so both tools must write identical files.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

KEY = "password"


def kv_path(name: str) -> str:
    """The KV path of a benchmark secret, as a person types it."""
    return f"secret/bench/{name}"


def go_line(name: str) -> str:
    """bao agent (consul-template) syntax for one secret's password."""
    return f'{{{{ with secret "secret/data/bench/{name}" }}}}{{{{ .Data.data.{KEY} }}}}{{{{ end }}}}'


def jinja_line(name: str) -> str:
    """inject (Jinja) syntax for the same value."""
    return f"{{{{ secret('{kv_path(name)}').{KEY} }}}}"


def inject_command() -> list[str]:
    """How to run the installed inject: the console script beside this Python, else -m."""
    script = Path(sys.executable).parent / "inject"
    if os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "vault_inject"]


@dataclass
class TemplateSet:
    """N templates, each over some secrets, written in both syntaxes under ``root``."""

    root: Path
    groups: Sequence[Sequence[str]]  # secret names read by each template
    inject_pairs: list[tuple[Path, Path]] = field(default_factory=list)  # (source, destination)
    agent_pairs: list[tuple[Path, Path]] = field(default_factory=list)

    def write(self) -> TemplateSet:
        """Write every template file (both syntaxes); return self."""
        for sub in ("jinja", "go", "out-inject", "out-agent"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for index, names in enumerate(self.groups):
            jinja = self.root / "jinja" / f"t{index}.j2"
            go = self.root / "go" / f"t{index}.tmpl"
            jinja.write_text("".join(jinja_line(n) + "\n" for n in names))
            go.write_text("".join(go_line(n) + "\n" for n in names))
            self.inject_pairs.append((jinja, self.root / "out-inject" / f"t{index}.txt"))
            self.agent_pairs.append((go, self.root / "out-agent" / f"t{index}.txt"))
        return self

    def clear_outputs(self) -> None:
        """Delete every rendered file, so the next run writes them all afresh."""
        for _, dest in (*self.inject_pairs, *self.agent_pairs):
            dest.unlink(missing_ok=True)


def inject_toml(
    *, address: str, token_file: Path, templates: Sequence[tuple[Path, Path]], poll_interval: str = ""
) -> str:
    """inject's config file for these templates (token auth from a file)."""
    lines = [
        "[vault]",
        f"address = {json.dumps(address)}",
        "[auth]",
        'method = "token"',
        f"token_file = {json.dumps(str(token_file))}",
    ]
    if poll_interval:
        lines += ["[watch]", f"poll_interval = {json.dumps(poll_interval)}"]
    for source, destination in templates:
        lines += [
            "[[template]]",
            f"source = {json.dumps(str(source))}",
            f"destination = {json.dumps(str(destination))}",
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class AgentExec:
    """bao agent's process supervisor mode: env templates and the child command."""

    env: dict[str, str]  # NAME -> secret name whose password it gets
    command: Sequence[str]


def agent_hcl(
    *,
    address: str,
    token_file: Path,
    templates: Sequence[tuple[Path, Path]] = (),
    exit_after_auth: bool = False,
    render_interval: str = "",
    exec_mode: AgentExec | None = None,
) -> str:
    """bao agent's config: token_file auto-auth plus templates or exec mode."""
    out = [
        f"vault {{ address = {json.dumps(address)} }}",
        "auto_auth {",
        '  method "token_file" {',
        f"    config = {{ token_file_path = {json.dumps(str(token_file))} }}",
        "  }",
        "}",
    ]
    if exit_after_auth:
        out.append("exit_after_auth = true")
    if render_interval:
        out.append(f"template_config {{ static_secret_render_interval = {json.dumps(render_interval)} }}")
    for source, destination in templates:
        out += [
            "template {",
            f"  source = {json.dumps(str(source))}",
            f"  destination = {json.dumps(str(destination))}",
            "}",
        ]
    if exec_mode is not None:
        out += _exec_stanzas(exec_mode)
    return "\n".join(out) + "\n"


def _exec_stanzas(spec: AgentExec) -> list[str]:
    out = []
    for var, name in spec.env.items():
        out += [
            f'env_template "{var}" {{',
            f"  contents = {json.dumps(go_line(name))}",
            "  error_on_missing_key = true",
            "}",
        ]
    return [
        *out,
        "exec {",
        f"  command = {json.dumps(list(spec.command))}",
        '  restart_on_secret_changes = "always"',
        '  restart_stop_signal = "SIGTERM"',
        "}",
    ]


def child_command(log: Path, var: str) -> list[str]:
    """A child that appends '<start time> <pid> <$var>' to ``log``, then sleeps (dies on TERM)."""
    script = f'echo "$(date +%s.%N) $$ ${var}" >> {shlex.quote(str(log))}; exec sleep 3600'
    return ["/bin/sh", "-c", script]
