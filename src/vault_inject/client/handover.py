"""What the encrypted state holds, and the decisions about it. Pure.

A state is inject's token (only one it got by logging in itself, and only when it hands
over), every secret it rendered from (request, answer, and when it stops being usable) and
when it was saved. ``encode``/``decode`` turn it into bytes and back (JSON; a shape that is
not a state is a ValueError, so a state is used whole or not at all).

Decisions: which saved secrets a new process may take over without asking for new ones
(leases and certificates, the leases then confirmed by the server), which values a start
while the server is down may use (never past their end, never older than ``max_age``),
and when a state is worth writing again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..model import (
    KvList,
    KvRead,
    PkiIssue,
    Request,
    Secret,
    SecretWrite,
    TransitDecrypt,
    computed_in_template,
)

if TYPE_CHECKING:
    from ..config import Config

VERSION = 1
REUSE_MARGIN_S = 30.0  # a lease or certificate ending sooner than this is not taken over


@dataclass(frozen=True)
class Saved:
    """One secret as saved: the request, the answer, and when it can no longer be used
    (epoch seconds; None when it does not end: a KV value, a plaintext)."""

    request: Request
    secret: Secret
    ends_at: float | None = None

    @property
    def handed_over(self) -> bool:
        """A lease or a certificate: what a hand-over saves a new issuance of."""
        return bool(self.secret.lease_id) or isinstance(self.request, PkiIssue)


@dataclass(frozen=True)
class State:
    """Everything one state file holds."""

    saved_at: float
    token: str = field(default="", repr=False)
    secrets: tuple[Saved, ...] = ()

    def without_hand_over(self) -> State:
        """The state without its token and leases (revoked, or never handed over);
        certificates and values stay."""
        return State(self.saved_at, "", tuple(s for s in self.secrets if not s.secret.lease_id))


def binding(config: Config) -> bytes:
    """What a state is bound to (the AES-GCM associated data): the server and the login.
    A state made for another server, namespace or identity cannot be decrypted with this one."""
    parts = {
        "addresses": list(config.addresses or (config.address,)),
        "namespace": config.namespace,
        "auth": [config.auth_method, config.auth_mount, config.role, config.role_id_file, config.jwt_file],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()


def snapshot(
    secrets: Mapping[Request, Secret],
    *,
    token: str,
    now: float,
    previous: State | None = None,
) -> State:
    """The state for ``secrets`` as of ``now``: a lease's end is counted from when it was
    first seen (kept from ``previous``), so renewals only make it earlier than the truth."""
    known = {s.secret.lease_id: s.ends_at for s in previous.secrets if s.secret.lease_id} if previous else {}
    saved = []
    for request, secret in sorted(secrets.items(), key=lambda item: _order(item[0])):
        ends_at: float | None = None
        if secret.lease_id:
            ends_at = known.get(secret.lease_id) or now + secret.lease_duration_s
        if secret.expires_at:
            ends_at = min(ends_at or secret.expires_at, secret.expires_at)
        saved.append(Saved(request, secret, ends_at))
    return State(now, token, tuple(saved))


def _order(request: Request) -> str:
    return json.dumps(_request_json(request), sort_keys=True)


def usable(saved: Saved, now: float, margin_s: float = 0.0) -> bool:
    """True while ``saved`` has not ended (with ``margin_s`` to spare)."""
    return saved.ends_at is None or saved.ends_at > now + margin_s


def to_take_over(state: State, now: float) -> dict[Request, Saved]:
    """The leases and certificates a new process may take over (a lease still has to be
    confirmed by the server): those ending more than REUSE_MARGIN_S from now."""
    return {s.request: s for s in state.secrets if s.handed_over and usable(s, now, REUSE_MARGIN_S)}


def with_remaining(saved: Saved, ttl_s: int) -> Secret:
    """A taken-over lease's answer with the time the server says it has left (the loop
    plans its renewal from that)."""
    return replace(saved.secret, lease_duration_s=ttl_s)


def stale_values(state: State, now: float, max_age_s: float) -> dict[Request, Secret] | None:
    """What a start while the server is down may render from: every saved secret that has
    not ended, a lease with the time it has left (what the loop plans from); None when the
    state is older than ``max_age_s`` (nothing of it is used)."""
    if now - state.saved_at > max_age_s:
        return None
    return {s.request: _remaining(s, now) for s in state.secrets if usable(s, now)}


def _remaining(saved: Saved, now: float) -> Secret:
    if not saved.secret.lease_id or saved.ends_at is None:
        return saved.secret
    return replace(saved.secret, lease_duration_s=max(1, int(saved.ends_at - now)))


def worth_saving(old: bytes | None, new: bytes, saved_at: float, now: float, refresh_s: float) -> bool:
    """Write when the content changed, or to renew the age of values the server confirmed."""
    return old != new or now - saved_at >= refresh_s


# --- bytes -----------------------------------------------------------------------------------


def content(state: State) -> bytes:
    """The state without its time of saving (to tell whether anything changed)."""
    return _dump({"token": state.token, "secrets": [_saved_json(s) for s in state.secrets]})


def encode(state: State) -> bytes:
    """The state as bytes (what is sealed)."""
    return _dump(
        {
            "version": VERSION,
            "saved_at": state.saved_at,
            "token": state.token,
            "secrets": [_saved_json(s) for s in state.secrets],
        }
    )


def _dump(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def decode(data: bytes) -> State:
    """The state in ``data``; ValueError when it is not one this inject reads."""
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("version") != VERSION:
            raise ValueError("not a state of this version")
        token = raw.get("token", "")
        if not isinstance(token, str):
            raise ValueError("token")
        return State(float(raw["saved_at"]), token, tuple(_saved_of(item) for item in raw["secrets"]))
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a state: {type(exc).__name__}") from None


def _request_json(request: Request) -> dict[str, Any]:
    if isinstance(request, PkiIssue):
        return {"kind": "pki", "path": request.path, "params": [list(p) for p in request.params]}
    if isinstance(request, TransitDecrypt):
        return {"kind": "transit", "path": request.path, "ciphertext": request.ciphertext}
    if isinstance(request, SecretWrite):
        return {"kind": "write", "path": request.path, "params": [list(p) for p in request.params]}
    if isinstance(request, KvList):
        return {"kind": "list", "path": request.path}
    return {"kind": "kv", "path": request.path, "version": request.version}


def _request_of(raw: Mapping[str, Any], computed: bool) -> Request:
    kind, path = raw["kind"], str(raw["path"])
    if kind == "pki":
        pki = PkiIssue(path, tuple((str(k), str(v)) for k, v in raw["params"]))
        return computed_in_template(pki) if computed else pki
    if kind == "transit":
        transit = TransitDecrypt(path, str(raw["ciphertext"]))
        return computed_in_template(transit) if computed else transit
    if kind == "write":
        write = SecretWrite(path, tuple((str(k), str(v)) for k, v in raw["params"]))
        return computed_in_template(write) if computed else write
    if kind == "list":
        listing = KvList(path)
        return computed_in_template(listing) if computed else listing
    if kind == "kv":
        version = raw.get("version")
        kv = KvRead(path, int(version) if version is not None else None)
        return computed_in_template(kv) if computed else kv
    raise TypeError(kind)


_SECRET_FIELDS = ("version", "created_time", "lease_id", "lease_duration_s", "renewable", "kv_version")


def _saved_json(saved: Saved) -> dict[str, Any]:
    secret = saved.secret
    return {
        "request": _request_json(saved.request),
        "computed": saved.request.computed,
        "path": secret.path,
        "data": dict(secret.data),
        **{name: getattr(secret, name) for name in _SECRET_FIELDS},
        "expires_at": secret.expires_at,
        "issued_at": secret.issued_at,
        "ends_at": saved.ends_at,
    }


def _saved_of(raw: Mapping[str, Any]) -> Saved:
    data = raw["data"]
    if not isinstance(data, dict):
        raise TypeError("data")
    secret = Secret(
        path=str(raw["path"]),
        data=data,
        version=_int(raw.get("version")),
        created_time=raw.get("created_time"),
        lease_id=str(raw.get("lease_id") or ""),
        lease_duration_s=int(raw.get("lease_duration_s") or 0),
        renewable=bool(raw.get("renewable")),
        kv_version=_int(raw.get("kv_version")),
        expires_at=_float(raw.get("expires_at")),
        issued_at=_float(raw.get("issued_at")),
    )
    return Saved(_request_of(raw["request"], bool(raw.get("computed"))), secret, _float(raw.get("ends_at")))


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def secrets_of(saved: Iterable[Saved]) -> dict[Request, Secret]:
    """request -> answer."""
    return {s.request: s.secret for s in saved}
