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
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import SecretNotFound, UsageError
from ..model import Secret
from ..refs import normalize_path
from .cache import Callback, Lease, SecretCache

if TYPE_CHECKING:
    from ..client import VaultClient
    from .refresher import Refresher


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
        from . import connect
        from .refresher import Refresher  # hvac is loaded here, not at import

        env = os.environ if environ is None else environ
        overrides = {
            "poll_interval_s": poll_interval,
            "address": address,
            "namespace": namespace,
            "retry_timeout_s": retry_timeout,
        }
        settings = connect.load_config(config, overrides, env, os.getcwd())
        settings, env = connect.with_token(settings, env, token)
        connection = connect.connect(settings, env)
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
        from .refresher import read_leased

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
        from .refresher import read_unleased

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
