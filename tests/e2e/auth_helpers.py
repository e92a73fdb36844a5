"""The auth scaffold of the e2e tests: unique names, reader policies, an AppRole role with
its credential files and the inject.toml that logs in with them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.helpers_e2e import write
from tests.support import Bao, forbid, inject_env

NO_TOKEN = "unused-placeholder-token"  # proves the login, not VAULT_TOKEN, is what works


def login_env(bao: Bao) -> dict[str, str]:
    """inject's environment for a login test: the server, and a VAULT_TOKEN that works nowhere."""
    return inject_env(bao, token=NO_TOKEN)


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def reader_policy(bao: Bao, *rules: str) -> str:
    """A policy with these path rules; its name."""
    name = unique("pol")
    bao.policy(name, "\n".join(rules))
    return name


def kv_read(path: str) -> str:
    return f'path "secret/data/{path.removeprefix("secret/")}" {{ capabilities = ["read"] }}'


@dataclass(frozen=True)
class AppRole:
    """An approle mount with one role; ``write_files`` puts its credentials in a directory."""

    bao: Bao
    mount: str
    role: str

    def write_files(self, directory: Path) -> None:
        """role_id and a fresh secret_id (added to the leak check) as files in ``directory``."""
        base = f"auth/{self.mount}/role/{self.role}"
        role_id = self.bao.api("GET", f"{base}/role-id").json()["data"]["role_id"]
        secret_id = self.bao.api("POST", f"{base}/secret-id").json()["data"]["secret_id"]
        write(directory / "role_id", forbid(role_id) + "\n")
        write(directory / "secret_id", forbid(secret_id) + "\n")


def make_approle(bao: Bao, mount: str, policy: str, *, ttl: str = "1h", max_ttl: str = "2h") -> AppRole:
    role = unique("app")
    bao.api(
        "POST",
        f"auth/{mount}/role/{role}",
        json={"token_policies": [policy], "token_ttl": ttl, "token_max_ttl": max_ttl},
    )
    return AppRole(bao, mount, role)


def approle_in(directory: Path, approle: AppRole, *extra: str) -> None:
    """``approle``'s role_id and secret_id files and an inject.toml logging in with them, in ``directory``."""
    approle.write_files(directory)
    approle_config(directory, approle, *extra)


def approle_config(directory: Path, approle: AppRole, *extra: str) -> None:
    lines = [
        "[auth]",
        'method = "approle"',
        f'mount = "{approle.mount}"',
        'role_id_file = "role_id"',
        'secret_id_file = "secret_id"',
        *extra,
    ]
    write(directory / "inject.toml", "\n".join(lines) + "\n")
