"""The values that flow between the server adapter and the renderer. Pure."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from .refs import normalize_path

READ_WORKERS = 8  # concurrent reads for a render or a poll (requests' default pool is 10)

# How a request a template computed (from values that may be secret, transformed past any
# mask) is named in logs, errors and plan output: nothing of its path or parameters is shown.
COMPUTED_PATH = "(a path computed in the template)"

_R = TypeVar("_R", "KvRead", "KvList", "PkiIssue", "TransitDecrypt", "SecretWrite")


def computed_in_template(request: _R) -> _R:
    """``request``, named in logs, errors and plan output as computed (equal and equally hashed)."""
    return replace(request, computed=True)


def quoted(request: Request) -> str:
    """The request's path in quotes for a message, or that it was computed."""
    return COMPUTED_PATH if request.computed else f"'{request.path}'"


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
    expires_at: float | None = None  # epoch seconds (PKI and SSH certificates)
    issued_at: float | None = None  # epoch seconds (PKI and SSH certificates)
    # A list's key names (``secrets()``): kept out of ``data`` on purpose, since every string
    # in ``data`` is masked as a secret value, and the server does not hide key names
    # (no policy filters a LIST; its docs say key names are not sensitive).
    listed: tuple[str, ...] | None = None

    @property
    def describe(self) -> str:
        """Version or lease, for logs: ``v3``, ``lease database/creds/ro/abc (3600s)``."""
        if self.listed is not None:
            return f"{len(self.listed)} keys"
        if self.version is not None:
            return f"v{self.version}"
        if self.lease_id:
            return f"lease {self.lease_id} ({self.lease_duration_s}s)"
        return "unversioned"


@dataclass(frozen=True)
class KvRead:
    """Read the secret at ``path`` (normalised: ``secret/app``) at a pinned ``version``, or
    the latest (None): KV v1/v2, or a plain GET of any other engine (dynamic credentials)."""

    path: str
    version: int | None = None
    computed: bool = field(default=False, compare=False, repr=False)  # see computed_in_template

    @classmethod
    def of(cls, path: str, version: int | None = None) -> KvRead:
        """The read of ``path`` as a person types it (``/secret//app/`` is ``secret/app``)."""
        return cls(normalize_path(path), version)

    @property
    def label(self) -> str:
        """How logs and plan output name it: the path (unless a template computed it)."""
        return COMPUTED_PATH if self.computed else self.path


@dataclass(frozen=True)
class KvList:
    """List the keys under ``path`` (normalised): KV v2 through its metadata, KV v1 and any
    other engine with a plain LIST. Polled like a KV read: a key added or removed is a change."""

    path: str
    computed: bool = field(default=False, compare=False, repr=False)  # see computed_in_template

    @classmethod
    def of(cls, path: str) -> KvList:
        """The list ``secrets(path)`` makes (``/secret//services/`` is ``secret/services``)."""
        return cls(normalize_path(path))

    @property
    def label(self) -> str:
        """How logs and plan output name it: ``list:secret/services``."""
        return f"list:{COMPUTED_PATH if self.computed else self.path}"


@dataclass(frozen=True)
class PkiIssue:
    """Issue one certificate: POST ``params`` (sorted, values as text) to ``path``
    (``MOUNT/issue/ROLE``). Equal requests share one certificate within a render."""

    path: str
    params: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    computed: bool = field(default=False, compare=False, repr=False)  # see computed_in_template

    @classmethod
    def of(cls, role_path: str, params: Mapping[str, Any]) -> PkiIssue:
        """The request ``pki_cert(role_path, **params)`` makes: ``MOUNT/ROLE`` means
        ``MOUNT/issue/ROLE``, a bare ``ROLE`` the ``pki`` mount."""
        path = normalize_path(role_path)
        if "/issue/" not in f"/{path}/":
            mount, _, role = path.rpartition("/")
            path = f"{mount or 'pki'}/issue/{role}"
        return cls(path, tuple(sorted((str(k), str(v)) for k, v in params.items())))

    @property
    def label(self) -> str:
        """How logs and plan output name it: ``pki:pki/issue/web?common_name=...``."""
        if self.computed:
            return f"pki:{COMPUTED_PATH}"
        if not self.params:
            return f"pki:{self.path}"
        from urllib.parse import urlencode  # here: urllib.parse loads ipaddress at every start

        return f"pki:{self.path}?{urlencode(self.params)}"


@dataclass(frozen=True)
class TransitDecrypt:
    """Decrypt ``ciphertext`` with the transit key at ``path`` (``MOUNT/decrypt/KEY``)."""

    path: str
    ciphertext: str = field(repr=False)
    computed: bool = field(default=False, compare=False, repr=False)  # see computed_in_template

    @classmethod
    def of(cls, key: str, ciphertext: str) -> TransitDecrypt:
        """The request ``transit_decrypt(key, ciphertext)`` makes: a bare ``KEY`` is the
        ``transit`` mount's."""
        mount, _, name = normalize_path(key).rpartition("/")
        return cls(f"{mount or 'transit'}/decrypt/{name}", ciphertext)

    @property
    def label(self) -> str:
        """How logs and plan output name it: ``transit:transit/decrypt/app#vault:v1:...``."""
        if self.computed:
            return f"transit:{COMPUTED_PATH}"
        return f"transit:{self.path}#{self.ciphertext}"


@dataclass(frozen=True)
class SecretWrite:
    """Write ``params`` to ``path`` on any engine (``ssh/sign/ROLE``, ``totp/code/NAME``,
    ``aws/sts/ROLE``...) and take the answer's data. The values are kept as JSON text, so
    equal requests (parameters in any order) are one write within a render and a run."""

    path: str
    params: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    computed: bool = field(default=False, compare=False, repr=False)  # see computed_in_template

    @classmethod
    def of(cls, path: str, params: Mapping[str, Any]) -> SecretWrite:
        """The request ``secret_write(path, **params)`` makes; TypeError when a value is not
        JSON (text, a number, a boolean, null, or lists and mappings of those)."""
        import json  # here: only templates that write pay for it

        encoded = ((str(k), json.dumps(v, sort_keys=True, allow_nan=False)) for k, v in params.items())
        return cls(normalize_path(path), tuple(sorted(encoded)))

    def payload(self) -> dict[str, Any]:
        """The parameters as sent (JSON values)."""
        import json

        return {name: json.loads(value) for name, value in self.params}

    @property
    def label(self) -> str:
        """How logs and plan output name it: ``write:ssh/sign/app?valid_principals=web``."""
        if self.computed:
            return f"write:{COMPUTED_PATH}"
        if not self.params:
            return f"write:{self.path}"
        from urllib.parse import urlencode

        shown = [(name, _as_text(value)) for name, value in self.params]
        return f"write:{self.path}?{urlencode(shown)}"


def _as_text(encoded: str) -> str:
    """A JSON-encoded parameter as a person wrote it: text without its quotes."""
    import json

    value = json.loads(encoded)
    return value if isinstance(value, str) else encoded


# One thing to ask the server for; also the key of what a render read (ReadCache, deps).
Request = KvRead | KvList | PkiIssue | TransitDecrypt | SecretWrite


def request_order(request: Request) -> tuple[str, int]:
    """A sort key for requests of any kind: by label, then version."""
    version = request.version if isinstance(request, KvRead) else None
    return request.label, version or 0


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
