"""What the operation modules share (pure): the client they call the server through, and
the shapes of its answers (a JSON object or nothing, a URL path, a leased secret)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol
from urllib.parse import quote

from ..log import replace_secrets
from ..model import Secret, strings_in

_PATH_SAFE = "/-_.~@:"  # a path's characters sent as they are; '?' and '#' never


class Caller(Protocol):
    """What the KV and engine operations need of ``VaultClient``: its hvac client, and the
    block that names a call, gives it a budget and translates hvac's exceptions."""

    @property
    def hvac(self) -> Any: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    def call(
        self, what: str, budget_s: float | None, since: float | None = None
    ) -> AbstractContextManager[None]:
        """Within this block requests are ``what``, retried within ``budget_s``."""
        ...  # pragma: no cover - a protocol


def url_path(logical: str) -> str:
    """``logical`` as a URL path: characters that would end the path ('?', '#') escaped."""
    return quote(logical, safe=_PATH_SAFE)


def dict_of(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else {} (hvac hands back what the server said)."""
    return value if isinstance(value, dict) else {}


def leased(
    logical: str, data: dict[str, Any], body: Mapping[str, Any], *, kv_version: int | None = None
) -> Secret:
    """A Secret with the lease the answer ``body`` carries (none: empty id, 0 s)."""
    return Secret(
        path=logical,
        data=data,
        lease_id=str(body.get("lease_id") or ""),
        lease_duration_s=int(body.get("lease_duration") or 0),
        renewable=bool(body.get("renewable")),
        kv_version=kv_version,
    )


def int_or_none(value: Any) -> int | None:
    """A version number from an answer, or None when it is not one."""
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def register_values(data: Mapping[str, Any], *, owner: Hashable) -> None:
    """Mask every string in ``data`` (lists too: a KV value may be a JSON array). Values are
    kept per owner (the request made): a re-read replaces them, so a long run's set stays the
    size of what is in use; a value another owner still holds stays masked."""
    replace_secrets(owner, strings_in(data))
