"""vault_inject as a library: secrets fetched at runtime, kept fresh in the background.

::

    from vault_inject import Secrets

    with Secrets() as secrets:                      # the CLI's settings and auth methods
        db = secrets.get("secret/infrastructure/postgres")
        creds = secrets.lease("database/creds/readonly")

``get`` answers from a cache that one background thread keeps current (one request per
watched path per poll interval); leases are renewed and re-read as inject does them;
``close()`` (or interpreter exit) stops the thread and revokes the leases it issued.
Nothing here logs a value or installs a logging handler. The server client (and hvac)
is imported only when a ``Secrets`` is made, so ``import vault_inject`` stays light.
"""

from __future__ import annotations

import copy
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import SecretNotFound, UsageError
from .model import Secret
from .refs import normalize_path
from .runtime_plan import is_new

if TYPE_CHECKING:
    from .runtime_thread import Refresher
    from .vault import VaultClient

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


class Secrets:
    """Secrets for a running Python service, with inject's settings, auth, leases and redaction.

    ``config`` is an inject.toml (default: ``INJECT_CONFIG``, else ``./inject.toml`` if
    present); the keyword arguments override it and the environment as CLI options do.
    ``poll_interval`` and ``retry_timeout`` are durations (``"30s"``) or seconds;
    ``revoke_on_close`` defaults to ``[child] revoke_on_exit`` (true). ``environ``
    replaces ``os.environ`` as the source of ``VAULT_*``/``BAO_*``/``INJECT_*`` settings.
    Raises InjectError subclasses (UsageError, AuthError, UnreachableError) when it
    cannot log in.
    """

    def __init__(
        self,
        config: str | None = None,
        *,
        poll_interval: str | float | None = None,
        address: str | None = None,
        token: str | None = None,
        namespace: str | None = None,
        retry_timeout: str | float | None = None,
        revoke_on_close: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        from . import runtime_connect
        from .runtime_thread import Refresher  # hvac is loaded here, not at import

        env = os.environ if environ is None else environ
        overrides = {
            "poll_interval_s": poll_interval,
            "address": address,
            "namespace": namespace,
            "retry_timeout_s": retry_timeout,
        }
        settings = runtime_connect.load_config(config, overrides, env, os.getcwd())
        settings, env = runtime_connect.with_token(settings, env, token)
        connection = runtime_connect.connect(settings, env)
        self.poll_interval_s = settings.poll_interval_s
        self._client: VaultClient = connection.client
        self._cache = SecretCache()
        revoke = settings.revoke_on_exit if revoke_on_close is None else revoke_on_close
        self._refresher: Refresher = Refresher(connection, self._cache, revoke_on_close=revoke)
        # Runs at close(), garbage collection or interpreter exit, whichever comes first;
        # it holds the refresher, never this object, so it cannot keep it alive.
        self._finalizer = weakref.finalize(self, self._refresher.close)
        self._refresher.start()

    def get(self, path: str, key: str | None = None, *, version: int | None = None) -> Any:
        """The data of ``path`` (a dict), or one ``key`` of it.

        Without ``version`` it is the latest version, as last seen by the background poll
        (a new version shows within ``poll_interval``); the first call for a path reads it,
        later calls make no request. A ``version`` (KV v2) is read once and kept forever.
        Raises SecretNotFound (no such path, key or version), PermissionDenied, UsageError.
        """
        logical = normalize_path(path)
        secret = self._cached(logical, version)
        if key is None:
            return copy.deepcopy(dict(secret.data))
        if key not in secret.data:
            which = f"version {version} of '{logical}'" if version is not None else f"'{logical}'"
            raise SecretNotFound(f"{which} has no key '{key}'")
        return copy.deepcopy(secret.data[key])  # nested JSON: the cache stays as read

    def on_change(self, path: str, callback: Callback) -> None:
        """Call ``callback(new_data)`` on the background thread for every new version of ``path``.

        The version current now (read if not cached yet) is the baseline, not a change."""
        logical = normalize_path(path)
        self._cached(logical, None)
        self._cache.subscribe(logical, callback)

    def lease(self, path: str, **params: Any) -> Lease:
        """Read a leased secret (new credentials every call) and keep it valid until close().

        ``params`` are sent for engines that issue on a POST (``pki/issue/web``,
        ``common_name="a.example", ttl="24h"``). Raises UsageError when ``path`` gives no
        lease or certificate (use get() for KV secrets)."""
        from .runtime_thread import read_leased

        self._check_open()
        with self._cache.fetch_lock:
            secret = read_leased(self._client, path, params)
        return self._refresher.track(path, params, secret)

    def close(self) -> None:
        """Stop the background thread and revoke the leases issued (unless revoke_on_close=False).

        Safe to call more than once; called at interpreter exit if not called before."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        """True once close() ran."""
        return not self._finalizer.alive

    def __enter__(self) -> Secrets:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Secrets {self._client.settings.address} {state}>"

    def _check_open(self) -> None:
        if self.closed:
            raise UsageError("this Secrets was closed; make a new one")

    def _cached(self, logical: str, version: int | None) -> Secret:
        from .runtime_thread import read_unleased

        self._check_open()
        found = self._cache.lookup((logical, version))
        if found is not None:
            return found
        with self._cache.fetch_lock:
            found = self._cache.lookup((logical, version))
            if found is not None:
                return found
            secret = read_unleased(self._client, logical, version)
            self._cache.store((logical, version), secret)
        if version is None:
            self._refresher.watch(logical)
        return secret
