"""The test scaffold, one module for every tier that touches real processes:

* ``BaoServer`` / ``bao_server``: the one launcher of a real ``bao server -dev`` (the
  session's server, and every test that needs one of its own: TLS, audit, killed and
  started again); ``Bao`` is the handle a test drives it with over HTTP;
* ``inject_argv``, ``run_inject`` (run to the end), ``supervise`` (long-running, with a
  ``Running`` handle): the one way to run the real ``inject``;
* ``wait_for``: polling with a deadline (no fixed sleeps);
* ``OUTPUTS``, ``secret_value``, ``forbid``, ``record_output``: the record of everything
  inject printed, which the session-wide secrecy guard checks at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from vault_inject.cli.devserver import find_bao, free_port_pair

ROOT_TOKEN = "root-" + secrets.token_hex(12)
SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 15.0
INJECT_STOP_TIMEOUT_S = 5.0


# --- the record for the secrecy guard -----------------------------------------------------


@dataclass
class Outputs:
    """Everything inject wrote to stdout/stderr in this session, and the values that must not appear."""

    texts: list[str] = field(default_factory=list)
    forbidden: set[str] = field(default_factory=set)


OUTPUTS = Outputs()


def secret_value(prefix: str = "s") -> str:
    """A unique secret value; the session fails if it ever shows up in inject's output."""
    return forbid(f"{prefix}-{secrets.token_hex(8)}")


def forbid(value: str) -> str:
    """Add a token or other value to the session-wide leak check; return it."""
    OUTPUTS.forbidden.add(value)
    return value


def record_output(text: str) -> None:
    """Add output of an inject started some other way (Popen) to the secrecy check."""
    OUTPUTS.texts.append(text)


def wait_for(
    condition: Any, *, timeout_s: float = 10.0, what: str = "condition", interval_s: float = 0.05
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


def holds_for(check: Callable[[], object], *, duration_s: float, what: str = "condition") -> None:
    """Check ``check`` (which asserts, or returns False on a failure) again and again for
    ``duration_s``: "nothing else happens" fails at the first change instead of after a blind sleep."""
    deadline = time.monotonic() + duration_s
    while True:
        assert check() is not False, f"{what} stopped holding"
        if time.monotonic() >= deadline:
            return
        time.sleep(0.05)


# --- the server -----------------------------------------------------------------------------


@dataclass
class Bao:
    """A running dev server and small helpers to drive it over HTTP (no mocks)."""

    address: str
    token: str
    pid: int = 0
    session: requests.Session = field(default_factory=requests.Session)

    def api(self, method: str, path: str, json: Any = None, token: str | None = None) -> requests.Response:
        """Call the HTTP API; fails the test on an error status."""
        response = self.session.request(
            method,
            f"{self.address}/v1/{path}",
            json=json,
            headers={"X-Vault-Token": token or self.token},
            timeout=10,
        )
        assert response.status_code < 400, f"{method} {path}: {response.status_code} {response.text}"
        return response

    def kv_put(self, path: str, **data: Any) -> int:
        """Write a new KV v2 version under ``secret/``; return its version number."""
        rest = path.removeprefix("secret/")
        body = self.api("POST", f"secret/data/{rest}", json={"data": data}).json()
        return int(body["data"]["version"])

    def policy(self, name: str, hcl: str) -> None:
        """Create or replace an ACL policy."""
        self.api("PUT", f"sys/policies/acl/{name}", json={"policy": hcl})

    def token_with(self, *policies: str, ttl: str = "1h") -> str:
        """A new token with only these policies (no default policy unless named)."""
        body = {
            "policies": list(policies),
            "no_default_policy": "default" not in policies,
            "ttl": ttl,
        }
        token: str = self.api("POST", "auth/token/create", json=body).json()["auth"]["client_token"]
        return token

    def healthy(self) -> bool:
        """True once ``sys/health`` answers 200 (unsealed, active)."""
        try:
            return self.session.get(f"{self.address}/v1/sys/health", timeout=1).status_code == 200
        except (requests.RequestException, OSError):
            return False


def _server_env(home: Path) -> dict[str, str]:
    # HOME: `bao server -dev` writes its root token to $HOME/.vault-token.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    return {**clean, "HOME": str(home)}


@dataclass
class BaoServer:
    """A real ``bao server -dev`` on a fixed loopback port and root token, so it can be
    killed and started again on the same address (the dev server keeps no state).

    ``args`` are extra server flags (``-config=...``); with ``tls`` it serves https with
    its own CA, written to ``home/vault-ca.pem`` (``ca_file``)."""

    home: Path
    args: Sequence[str] = ()
    tls: bool = False
    token: str = field(default_factory=lambda: forbid("root-" + secrets.token_hex(12)))
    port: int = field(default_factory=free_port_pair)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """Where it listens."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The CA a ``tls`` server wrote."""
        return self.home / "vault-ca.pem"

    def start(self) -> Bao:
        """Start (again); a handle once it answers."""
        mode = ["-dev-tls", f"-dev-tls-cert-dir={self.home}"] if self.tls else ["-dev"]
        self.process = subprocess.Popen(
            [
                find_bao(),
                "server",
                *mode,
                f"-dev-root-token-id={self.token}",
                f"-dev-listen-address=127.0.0.1:{self.port}",
                *self.args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_server_env(self.home),
        )
        server = Bao(address=self.address, token=self.token, pid=self.process.pid, session=self._session())
        wait_for(server.healthy, timeout_s=SERVER_START_TIMEOUT_S, what=f"bao dev server {self.address}")
        return server

    def _session(self) -> requests.Session:
        session = requests.Session()
        if self.tls:
            session.trust_env = False  # else REQUESTS_CA_BUNDLE would override session.verify
            wait_for(self.ca_file.exists, timeout_s=SERVER_START_TIMEOUT_S, what="the dev-tls CA file")
            session.verify = str(self.ca_file)
        return session

    def kill(self) -> None:
        """Kill it (a crash: no clean shutdown) and wait until it is gone."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """Stop it cleanly (TERM) and wait until it is gone."""
        self._end(signal.SIGTERM)

    def _end(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(timeout=SERVER_STOP_TIMEOUT_S)


@contextlib.contextmanager
def bao_server(home: Path, *args: str, tls: bool = False, token: str | None = None) -> Iterator[Bao]:
    """A dev server of the test's own for the ``with`` block (see ``BaoServer``)."""
    launcher = BaoServer(home, args, tls) if token is None else BaoServer(home, args, tls, forbid(token))
    try:
        server = launcher.start()
        yield server
        server.session.close()
    finally:
        launcher.stop()


# --- inject ---------------------------------------------------------------------------------


def inject_env(
    bao: Bao, extra: Mapping[str, str] | None = None, *, token: str | None = None
) -> dict[str, str]:
    """A clean environment pointing at the test server (no ~/.vault-token surprises)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))}
    env.update(VAULT_ADDR=bao.address, VAULT_TOKEN=token or bao.token, HOME="/nonexistent-home")
    env.update(extra or {})
    return env


def inject_argv(*args: str) -> list[str]:
    """The argv that runs the real inject with this interpreter."""
    return [sys.executable, "-m", "vault_inject", *args]


def run_inject(
    *args: str,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] | None = None,
    timeout_s: float = 60,
    input_text: str | None = None,
    wrapper: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run the real `inject` to the end and record its output for the secrecy check.

    ``wrapper`` runs it under another command (``prlimit ...``, ``setpriv ...``)."""
    result = subprocess.run(
        [*wrapper, *inject_argv(*args)],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        input=input_text,
        check=False,
    )
    record_output(result.stderr)
    return result


@dataclass
class Running:
    """An inject started with Popen; its stdout and stderr go to files the test can read any time."""

    process: subprocess.Popen[bytes]
    stderr_path: Path
    stdout_path: Path

    @classmethod
    def launch(cls, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> Running:
        """Start ``argv`` in ``cwd`` (stdin closed); pair with ``finish`` or ``shut_down``."""
        name = f"inject-{time.monotonic_ns()}"
        stderr_path, stdout_path = cwd / f"{name}.err", cwd / f"{name}.out"
        with stderr_path.open("wb") as err, stdout_path.open("wb") as out:
            process = subprocess.Popen(
                list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        return cls(process, stderr_path, stdout_path)

    @property
    def pid(self) -> int:
        """inject's pid."""
        return self.process.pid

    def stderr(self) -> str:
        """Everything inject logged so far."""
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        """Everything inject and its child printed on stdout so far."""
        return self.stdout_path.read_text(errors="replace")

    def lines(self, needle: str) -> list[str]:
        """Log lines that contain ``needle``."""
        return [line for line in self.stderr().splitlines() if needle in line]

    def wait_log(self, needle: str, *, count: int = 1, timeout_s: float = 5.0) -> list[str]:
        """Wait until ``needle`` was logged ``count`` times; return those lines."""
        wait_for(
            lambda: len(self.lines(needle)) >= count or self.poll() is not None,
            timeout_s=timeout_s,
            what=f"{count}x {needle!r} in inject's log",
        )
        found = self.lines(needle)
        assert len(found) >= count, f"inject exited early (code {self.process.returncode}):\n{self.stderr()}"
        return found

    def poll(self) -> int | None:
        """inject's exit code, or None while it runs."""
        return self.process.poll()

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to inject."""
        self.process.send_signal(signum)

    def wait(self, *, timeout_s: float = 5.0) -> int:
        """Wait for inject to exit; its exit code."""
        return self.process.wait(timeout=timeout_s)

    def stop(self, signum: int = signal.SIGTERM, *, timeout_s: float = 5.0) -> int:
        """Send ``signum`` and wait for inject to exit; its exit code."""
        self.send_signal(signum)
        return self.wait(timeout_s=timeout_s)

    def finish(self, *, timeout_s: float = 10.0) -> tuple[int, str, str]:
        """Wait for inject to exit (killed after the deadline); exit code, stdout, stderr, recorded."""
        try:
            code = self.wait(timeout_s=timeout_s)
        finally:
            self.shut_down()
        return code, self.stdout(), self.stderr()

    def shut_down(self) -> None:
        """TERM a still-running inject (it stops its child), KILL it after a grace; record its log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=INJECT_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=INJECT_STOP_TIMEOUT_S)
        record_output(self.stderr())


@contextlib.contextmanager
def supervise(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stray: Callable[[], Sequence[int]] = list,
    ready: str | None = "started ",
) -> Iterator[Running]:
    """Start ``argv`` (an inject command line); on exit stop it, kill any ``stray`` pids
    still around, and record its stderr for the session-wide secrecy check.

    With ``ready`` (default: the "started" line of a run with a child), wait for that log
    line before handing over, so every test begins with a running child.
    """
    running = Running.launch(argv, env=env, cwd=cwd)
    try:
        if ready:
            running.wait_log(ready)
        yield running
    finally:
        running.shut_down()
        for pid in stray():
            if alive(pid):
                kill_quietly(pid)


def proc_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (``Z`` for a zombie), or None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    return proc_state(pid) not in (None, "Z")


def kill_quietly(pid: int, signum: int = signal.SIGKILL) -> None:
    """Send ``signum`` to ``pid``'s group and to ``pid``; ignore processes already gone."""
    for send in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send(pid, signum)
