"""Helpers shared by the end-to-end tests: child scripts, one-line error checks, Popen runs."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support import OUTPUTS, Bao, _healthy, record_output, wait_for
from vault_inject.devserver import find_bao, free_port_pair

# A child that prints the sorted *names* (never the values) of its environment as JSON.
PRINT_ENV_NAMES = "import json, os; print(json.dumps(sorted(os.environ)))"


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line inject printed on stderr for a failure; fails on a traceback or more lines."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    return lines[0]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refuses_connections(port: int) -> bool:
    """True when nothing accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


def forbid(value: str) -> str:
    """Add a token or other value to the session-wide leak check; return it."""
    OUTPUTS.forbidden.add(value)
    return value


def reader_token(bao: Bao, *kv_paths: str) -> str:
    """A token that may read exactly these KV v2 paths (``secret/...`` as a person types it).

    It also carries the ``default`` policy, which lets a token look itself up."""
    rules = "\n".join(
        f'path "secret/data/{p.removeprefix("secret/")}" {{ capabilities = ["read"] }}' for p in kv_paths
    )
    name = f"read-{uuid.uuid4().hex[:10]}"
    bao.policy(name, rules)
    return forbid(bao.token_with(name, "default"))


def inject_argv(*args: str) -> list[str]:
    """The argv that runs the real inject with this interpreter."""
    return [sys.executable, "-m", "vault_inject", *args]


def start_inject(
    *args: str, env: Mapping[str, str], cwd: Path, stdout: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """Start the real inject without waiting (for signal tests); pair with ``finish``."""
    return subprocess.Popen(
        inject_argv(*args),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], *, timeout_s: float = 10) -> tuple[int, str, str]:
    """Wait for an inject started by ``start_inject``; record its stderr; return code and output."""
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        record_output(stderr)
        raise
    record_output(stderr)
    return process.returncode, stdout or "", stderr


def stop_quietly(process: subprocess.Popen[str]) -> None:
    """After a failed test: TERM a still-running inject (it stops its child), then reap it."""
    if process.poll() is not None:
        return
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        finish(process, timeout_s=5)


def read_lines(path: Path) -> list[str]:
    """The lines of ``path``, or [] while it does not exist yet."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def temp_files(directory: Path) -> list[str]:
    """Leftover inject temp files in ``directory`` (there must never be any)."""
    if not directory.exists():
        return []
    return [name for name in os.listdir(directory) if name.startswith(".inject-")]


@contextlib.contextmanager
def audited_server(workdir: Path) -> Iterator[tuple[Bao, Path]]:
    """A second real dev server with a file audit device declared in its config file.

    OpenBao refuses ``sys/audit/<name>`` over the API ("use declarative, config-based
    audit device management"), so the device is declared in HCL instead.
    """
    log_file = workdir / "audit.log"
    config = write(
        workdir / "audit.hcl",
        f'audit "file" "e2e" {{\n  options {{\n    file_path = "{log_file}"\n  }}\n}}\n',
    )
    token = forbid("root-" + secrets.token_hex(12))
    port = free_port_pair()
    process = subprocess.Popen(
        [
            find_bao(),
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
            f"-config={config}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # HOME: `bao server -dev` writes its root token to $HOME/.vault-token.
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))},
            "HOME": str(workdir),
        },
    )
    server = Bao(address=f"http://127.0.0.1:{port}", token=token, pid=process.pid)
    try:
        wait_for(lambda: _healthy(server), timeout_s=30, what="audited bao dev server")
        yield server, log_file
    finally:
        process.terminate()
        process.wait(timeout=15)
