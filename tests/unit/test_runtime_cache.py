"""The library's cache (runtime.SecretCache) and lease handle (runtime.Lease), without a server:
what a poll result does to the cache and who is told."""

from __future__ import annotations

from typing import Any

from vault_inject.model import Secret
from vault_inject.runtime.cache import Lease, SecretCache


def test_a_poll_with_the_same_version_tells_nobody() -> None:
    """Polling the version already cached changes nothing and returns no callbacks."""
    cache = SecretCache()
    cache.store(("secret/a", None), Secret(path="secret/a", data={"k": "1"}, version=1))
    cache.subscribe("secret/a", print)
    assert cache.polled("secret/a", Secret(path="secret/a", data={"k": "1"}, version=1)) == []


def test_a_poll_with_a_new_version_replaces_it_and_returns_the_subscribers() -> None:
    """A new version is cached and every subscriber of that path (only) is returned to be told."""
    cache = SecretCache()
    cache.store(("secret/a", None), Secret(path="secret/a", data={"k": "1"}, version=1))
    seen: list[dict[str, Any]] = []
    cache.subscribe("secret/a", seen.append)
    cache.subscribe("secret/b", print)
    new = Secret(path="secret/a", data={"k": "2"}, version=2)
    assert cache.polled("secret/a", new) == [seen.append]
    assert cache.lookup(("secret/a", None)) is new


def test_versioned_entries_are_not_touched_by_polls() -> None:
    """A version asked for by number stays cached as it was whatever the latest becomes."""
    cache = SecretCache()
    old = Secret(path="secret/a", data={"k": "1"}, version=1)
    cache.store(("secret/a", 1), old)
    cache.polled("secret/a", Secret(path="secret/a", data={"k": "2"}, version=2))
    assert cache.lookup(("secret/a", 1)) is old


def test_lease_data_is_a_copy_and_replacement_returns_its_callbacks() -> None:
    """Changing lease.data changes nothing; replaced() swaps credentials and expiry and names the callbacks."""
    first = Secret(path="db/creds/ro", data={"username": "a"}, lease_id="L1", lease_duration_s=10)
    lease = Lease("db/creds/ro", {}, first, expires_at=100.0)
    lease.data["username"] = "changed"
    assert lease.data == {"username": "a"}
    seen: list[dict[str, Any]] = []
    lease.on_change(seen.append)
    second = Secret(path="db/creds/ro", data={"username": "b"}, lease_id="L2", lease_duration_s=10)
    assert lease.replaced(second, expires_at=200.0) == [seen.append]
    assert (lease.lease_id, lease.expires_at, lease.data) == ("L2", 200.0, {"username": "b"})
    lease.extended(expires_at=250.0)
    assert lease.expires_at == 250.0


def test_nested_lease_data_is_copied_too() -> None:
    """A nested value (KV JSON) changed by the app does not change what the library holds."""
    secret = Secret(path="db/creds/ro", data={"opts": {"ssl": True}}, lease_id="L1", lease_duration_s=10)
    lease = Lease("db/creds/ro", {}, secret, expires_at=100.0)
    lease.data["opts"]["ssl"] = False
    assert lease.data == {"opts": {"ssl": True}}
