"""Test support: a handle on the real OpenBao dev server, a runner for the real ``inject``
command, polling with deadlines, and the record of output for the secrecy guard."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

ROOT_TOKEN = "root-" + secrets.token_hex(12)


@dataclass
class Bao:
    """A running dev server and small helpers to drive it over HTTP (no mocks)."""

    address: str
    token: str
    pid: int
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


@dataclass
class Outputs:
    """Everything inject wrote to stdout/stderr in this session, and the values that must not appear."""

    texts: list[str] = field(default_factory=list)
    forbidden: set[str] = field(default_factory=set)


OUTPUTS = Outputs()


def secret_value(prefix: str = "s") -> str:
    """A unique secret value; the session fails if it ever shows up in inject's output."""
    value = f"{prefix}-{secrets.token_hex(8)}"
    OUTPUTS.forbidden.add(value)
    return value


def _healthy(server: Bao) -> bool:
    try:
        return server.session.get(f"{server.address}/v1/sys/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


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


def inject_env(
    bao: Bao, extra: Mapping[str, str] | None = None, *, token: str | None = None
) -> dict[str, str]:
    """A clean environment pointing at the test server (no ~/.vault-token surprises)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))}
    env.update(VAULT_ADDR=bao.address, VAULT_TOKEN=token or bao.token, HOME="/nonexistent-home")
    env.update(extra or {})
    return env


def run_inject(
    *args: str,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] | None = None,
    timeout_s: float = 60,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real `inject` (python -m vault_inject) and record its output for the secrecy check."""
    result = subprocess.run(
        [sys.executable, "-m", "vault_inject", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        input=input_text,
        check=False,
    )
    OUTPUTS.texts.append(result.stderr)
    return result


def record_output(text: str) -> None:
    """Add output of an inject started some other way (Popen) to the secrecy check."""
    OUTPUTS.texts.append(text)
