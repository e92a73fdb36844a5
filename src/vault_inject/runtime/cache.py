"""What the library keeps between reads: the cached secrets with their subscribers, and
the ``Lease`` objects handed to callers. Values only; the background thread
(``refresher``) fills them, ``Secrets`` reads them."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..model import Secret
from .plan import is_new

Callback = Callable[[dict[str, Any]], object]
CacheKey = tuple[str, int | None]


class Lease:
    """One leased secret (``database/creds/...``, ``pki/issue/...``), kept valid in the background.

    ``data`` is always the current credentials: renewal keeps them, a re-read (renewal no
    longer extends the lease) replaces them and calls every ``on_change`` callback.
    """

    def __init__(self, path: str, params: Mapping[str, Any], secret: Secret, *, expires_at: float) -> None:
        self.path = path
        self.params = dict(params)
        self._lock = threading.Lock()
        self._secret = secret
        self._expires_at = expires_at
        self._callbacks: list[Callback] = []

    @property
    def data(self) -> dict[str, Any]:
        """The current credentials (a copy: changing it changes nothing)."""
        with self._lock:
            return copy.deepcopy(dict(self._secret.data))

    @property
    def lease_id(self) -> str:
        """The server's id of the current lease ("" for a certificate issued without one)."""
        with self._lock:
            return self._secret.lease_id

    @property
    def expires_at(self) -> float:
        """When the current lease (or certificate) ends, in epoch seconds (``time.time()``)."""
        with self._lock:
            return self._expires_at

    def on_change(self, callback: Callback) -> None:
        """Call ``callback(new_data)`` (on the background thread) whenever the credentials change."""
        with self._lock:
            self._callbacks.append(callback)

    def __repr__(self) -> str:
        return f"<Lease {self.path} {self.lease_id or 'no lease id'}>"

    # --- for the background thread -------------------------------------------------

    def replaced(self, secret: Secret, *, expires_at: float) -> list[Callback]:
        """New credentials were read; return the callbacks to tell."""
        with self._lock:
            self._secret, self._expires_at = secret, expires_at
            return list(self._callbacks)

    def extended(self, *, expires_at: float) -> None:
        """The lease was renewed until ``expires_at``."""
        with self._lock:
            self._expires_at = expires_at


class SecretCache:
    """The latest (and every asked-for) version of each path, and who wants to hear of changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fetch_lock = threading.Lock()  # one first read at a time: one request per path
        self._secrets: dict[CacheKey, Secret] = {}
        self._callbacks: dict[str, list[Callback]] = {}

    def lookup(self, key: CacheKey) -> Secret | None:
        """The cached read of ``key``, if any."""
        with self._lock:
            return self._secrets.get(key)

    def store(self, key: CacheKey, secret: Secret) -> None:
        """Remember a first read."""
        with self._lock:
            self._secrets[key] = secret

    def subscribe(self, path: str, callback: Callback) -> None:
        """Tell ``callback`` about every new version of ``path``."""
        with self._lock:
            self._callbacks.setdefault(path, []).append(callback)

    def polled(self, path: str, secret: Secret) -> list[Callback]:
        """A poll of ``path`` answered ``secret``; the callbacks to tell when it is a new version."""
        with self._lock:
            if not is_new(self._secrets.get((path, None)), secret):
                return []
            self._secrets[(path, None)] = secret
            return list(self._callbacks.get(path, ()))
