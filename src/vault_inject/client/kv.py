"""KV v1/v2 as hvac's API calls (and other engines' plain reads and lists), with the mounts
learnt so far: each path's mount and KV version are looked up once
(``sys/internal/ui/mounts``, as the Vault CLI does)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hvac import exceptions as hvac_errors

from ..errors import PermissionDenied, SecretError, SecretNotFound, UsageError
from ..model import COMPUTED_PATH, Secret
from .answers import Caller, dict_of, int_or_none, leased, url_path
from .translate import NoRoute


@dataclass(frozen=True)
class Mount:
    """A secrets engine mount as the mount lookup describes it."""

    path: str  # with trailing slash, e.g. "secret/"
    kv_version: int | None  # 1 or 2 for KV, None for any other engine

    @property
    def name(self) -> str:
        """The mount point as hvac's ``mount_point`` takes it (``secret``)."""
        return self.path.rstrip("/")

    def rest(self, logical: str) -> str:
        """``logical`` below the mount (KV v2's ``data/`` taken off)."""
        return (
            logical[len(self.path) :].removeprefix("data/")
            if self.kv_version == 2
            else logical[len(self.path) :]
        )


class KV:
    """KV v1/v2 (and other engines' plain reads), with the mounts learnt so far."""

    def __init__(self, client: Caller) -> None:
        self._client = client
        self.mounts: dict[str, Mount] = {}

    def read(
        self, logical: str, version: int | None, budget_s: float | None, since: float | None, shown: str = ""
    ) -> Secret:
        """The secret at ``logical`` (KV v2 ``data/`` added), at ``version`` if given;
        messages name it ``shown`` (default: ``logical`` quoted; a path computed in a
        template is not named)."""
        shown = shown or f"'{logical}'"
        try:
            mount = self.mount_for(logical, budget_s, since, shown)
        except PermissionDenied:
            self._unmounted(logical, budget_s, since, shown)
            raise
        try:
            with self._client.call(shown, budget_s, since):
                if mount is not None and mount.kv_version == 2:
                    return self._read_kv2(logical, mount, version, shown)
                if version is not None:
                    raise UsageError(f"{shown}: a version was asked for, but it is not a KV v2 secret")
                return self._read_plain(logical, mount, shown)
        except NoRoute:
            # The mount was disabled (or never there). The mount stays remembered: looking it
            # up again would only get a misleading 403 ("preflight capability check"). A
            # computed path's mount is part of it: not named either.
            where = f"at '{mount.path}'" if mount is not None and shown == f"'{logical}'" else "there"
            raise SecretNotFound(f"{shown}: no secrets engine is mounted {where}") from None

    def _unmounted(self, logical: str, budget_s: float | None, since: float | None, shown: str) -> None:
        """The server refuses a mount lookup ("preflight capability check") for a path where
        nothing is mounted even to a token allowed everything: a plain read tells them apart
        (404 "no handler for route": SecretNotFound; anything else: the refusal stands)."""
        try:
            with self._client.call(shown, budget_s, since):
                self._client.hvac.adapter.get(f"/v1/{url_path(logical)}")
        except NoRoute:
            raise SecretNotFound(f"{shown}: no secrets engine is mounted there") from None
        except SecretError:
            return

    def list(
        self, logical: str, budget_s: float | None, since: float | None, shown: str = ""
    ) -> tuple[str, ...]:
        """The key names under ``logical``, sorted (a folder's ends in '/'); none when
        nothing is there. KV v2 lists its metadata; KV v1 and other engines a plain LIST.
        (LIST /<mount>/metadata/<path> or /<path>)"""
        shown = shown or f"'{logical}'"
        mount = self.mount_for(logical, budget_s, since, shown)
        try:
            with self._client.call(shown, budget_s, since):
                body = self._list(logical, mount)
        except NoRoute:
            raise SecretNotFound(f"{shown}: no secrets engine is mounted there") from None
        except SecretNotFound:
            return ()  # a LIST of a path with nothing under it is a 404
        keys = dict_of(body.get("data")).get("keys")
        return tuple(sorted(str(key) for key in keys)) if isinstance(keys, list) else ()

    def _list(self, logical: str, mount: Mount | None) -> dict[str, Any]:
        kv = self._client.hvac.secrets.kv
        if mount is not None and mount.kv_version == 2:
            return dict_of(kv.v2.list_secrets(mount.rest(logical), mount_point=mount.name))
        if mount is not None and mount.kv_version == 1:
            return dict_of(kv.v1.list_secrets(mount.rest(logical), mount_point=mount.name))
        # hvac's Client.list turns every 404 into None (hiding NoRoute): the adapter's own
        return dict_of(self._client.hvac.adapter.list(f"/v1/{url_path(logical)}"))

    def put(self, logical: str, data: Mapping[str, Any], budget_s: float | None) -> None:
        """Write ``data`` at ``logical`` (a new version on KV v2). (POST /<mount>/data/<path>
        or /<path>)"""
        since = self._client.clock()  # one budget: mount lookup and write
        mount = self.mount_for(logical, budget_s, since)
        with self._client.call(f"'{logical}'", budget_s, since):
            if mount is not None and mount.kv_version == 2:
                kv2 = self._client.hvac.secrets.kv.v2
                kv2.create_or_update_secret(mount.rest(logical), dict(data), mount_point=mount.name)
            else:
                self._client.hvac.write_data(url_path(logical), data=dict(data))

    def _read_kv2(self, logical: str, mount: Mount, version: int | None, shown: str) -> Secret:
        """(GET /<mount>/data/<path>?version=N)"""
        kv2 = self._client.hvac.secrets.kv.v2
        try:
            body = dict_of(
                kv2.read_secret_version(
                    mount.rest(logical),
                    version=version,
                    mount_point=mount.name,
                    # raised, not returned: the metadata is read below (hvac's own look at a
                    # 404 body indexes into it and fails on {"data": null} with a TypeError)
                    raise_on_deleted_version=True,
                )
            )
        except hvac_errors.InvalidPath as exc:  # a deleted or destroyed version: 404 with its metadata
            metadata = dict_of(dict_of(dict_of(exc.json).get("data")).get("metadata"))
            if not metadata and version is not None and shown != COMPUTED_PATH:
                raise SecretNotFound(f"{shown} has no version {version}") from None
            if not metadata:
                raise
            raise SecretNotFound(kv2_missing_message(shown, version, metadata)) from None
        inner = dict_of(body.get("data"))
        metadata = dict_of(inner.get("metadata"))
        data = inner.get("data")
        if data is None:
            raise SecretNotFound(kv2_missing_message(shown, version, metadata))
        return Secret(
            path=logical,
            data=data,
            version=int_or_none(metadata.get("version")),
            created_time=metadata.get("created_time"),
            kv_version=2,
        )

    def _read_plain(self, logical: str, mount: Mount | None, shown: str) -> Secret:
        """KV v1 or any other engine's read. (GET /<path>)"""
        if mount is not None and mount.kv_version == 1:
            kv1 = self._client.hvac.secrets.kv.v1
            body = dict_of(kv1.read_secret(mount.rest(logical), mount_point=mount.name))
        else:
            # The adapter's own GET: hvac's Client.read turns every 404 into None, which
            # would hide "no handler for route" (NoRoute: nothing mounted there).
            body = dict_of(self._client.hvac.adapter.get(f"/v1/{url_path(logical)}"))
        data = body.get("data")
        if not isinstance(data, dict):
            raise SecretNotFound(f"no secret at {shown}")
        return leased(logical, data, body, kv_version=mount.kv_version if mount else None)

    def mount_for(
        self, logical: str, budget_s: float | None, since: float | None, shown: str = ""
    ) -> Mount | None:
        """The mount ``logical`` (named ``shown`` in messages) lives under (looked up once
        per mount); None if unknown."""
        for mount_path, mount in self.mounts.items():
            if (logical + "/").startswith(mount_path):
                return mount
        found = self._lookup_mount(logical, budget_s, since, shown or f"'{logical}'")
        if found is not None:
            self.mounts[found.path] = found
        return found

    def _lookup_mount(
        self, logical: str, budget_s: float | None, since: float | None, shown: str
    ) -> Mount | None:
        """(GET /sys/internal/ui/mounts/<path>) hvac has no call for this endpoint (the one
        the Vault CLI uses to find a path's mount and KV version): the adapter's own."""
        try:
            with self._client.call(f"{shown} (mount lookup)", budget_s, since):
                body = self._client.hvac.adapter.get(f"/v1/sys/internal/ui/mounts/{url_path(logical)}")
        except PermissionDenied:
            raise PermissionDenied(f"permission denied reading {shown}") from None
        except SecretError:
            return None
        data = dict_of(dict_of(body).get("data"))
        mount_path = str(data.get("path") or "")
        if not mount_path:
            return None
        kv_version = None
        if data.get("type") in ("kv", "generic"):
            options = dict_of(data.get("options"))
            kv_version = 2 if str(options.get("version", "1")) == "2" else 1
        return Mount(path=mount_path if mount_path.endswith("/") else mount_path + "/", kv_version=kv_version)


def kv2_missing_message(shown: str, version: int | None, metadata: Mapping[str, Any]) -> str:
    # a computed path's version may be computed too: neither is shown
    which = f"version {version} of {shown}" if version is not None and shown != COMPUTED_PATH else shown
    if metadata.get("destroyed"):
        return f"{which} was destroyed"
    if metadata.get("deletion_time"):
        return f"{which} was deleted"
    return f"no secret at {which}"
