"""The values that flow between the server adapter and the renderer. Pure."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .refs import normalize_path

READ_WORKERS = 8  # concurrent reads for a render or a poll (requests' default pool is 10)

SecretKey = tuple[str, int | None]  # (path as written, pinned version or None)


@dataclass(frozen=True)
class TokenInfo:
    """What a token lookup says about the token in use (all unknown when its policies do not
    allow the lookup)."""

    ttl_s: int = 0
    renewable: bool = False
    policies: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileWrite:
    """What one destination should contain."""

    destination: str
    content: str
    perms: int = 0o600
    allow_symlink: bool = False
    uid: int = -1
    gid: int = -1
    allow_shared_dir: bool = False


@dataclass(frozen=True)
class Secret:
    """One read of one path: its data and what is known about its version or lease."""

    path: str
    data: Mapping[str, Any]
    version: int | None = None
    created_time: str | None = None
    lease_id: str = ""
    lease_duration_s: int = 0
    renewable: bool = False
    kv_version: int | None = None
    expires_at: float | None = None  # epoch seconds (PKI certificates)
    issued_at: float | None = None  # epoch seconds (PKI certificates)

    @property
    def describe(self) -> str:
        """Version or lease, for logs: ``v3``, ``lease database/creds/ro/abc (3600s)``."""
        if self.version is not None:
            return f"v{self.version}"
        if self.lease_id:
            return f"lease {self.lease_id} ({self.lease_duration_s}s)"
        return "unversioned"


PKI_PREFIX = "pki:"
TRANSIT_PREFIX = "transit:"


def pki_key(role_path: str, params: Mapping[str, Any]) -> str:
    """The cache key of one certificate request: ``pki:pki/issue/web?common_name=...``."""
    from urllib.parse import urlencode  # here: urllib.parse loads ipaddress (~3 ms at every start)

    path = normalize_path(role_path)
    if "/issue/" not in f"/{path}/":
        mount, _, role = path.rpartition("/")
        path = f"{mount or 'pki'}/issue/{role}"
    return (
        PKI_PREFIX
        + path
        + ("?" + urlencode(sorted((k, str(v)) for k, v in params.items())) if params else "")
    )


def transit_key(key: str, ciphertext: str) -> str:
    """The cache key of one decryption: ``transit:transit/decrypt/app#vault:v1:...``."""
    path = normalize_path(key)
    mount, _, name = path.rpartition("/")
    return f"{TRANSIT_PREFIX}{mount or 'transit'}/decrypt/{name}#{ciphertext}"


@dataclass(frozen=True)
class Identity:
    """Who the child runs as (``--user``); -1 means unchanged."""

    uid: int = -1
    gid: int = -1
    name: str = ""
    home: str = ""
    groups: tuple[int, ...] = ()  # supplementary groups, looked up before any fork


def strings_in(data: Any) -> Iterator[str]:
    """Every string inside a secret's data (nested mappings and lists included)."""
    if isinstance(data, str):
        yield data
    elif isinstance(data, Mapping):
        for value in data.values():
            yield from strings_in(value)
    elif isinstance(data, list | tuple):
        for value in data:
            yield from strings_in(value)
