"""Versions never go backwards: a KV v2 read older than the version rendered (a lagging
standby, a node that rejoined an HA cluster) is ignored, logged once, and never re-renders
or restarts; newer versions still arrive. The engine alone, then the whole loop."""

from __future__ import annotations

import logging

import pytest

from tests.unit.loop_fakes import PATH, Rig
from vault_inject.model import KvRead, Secret
from vault_inject.render.engine import created_later

KEY = KvRead(PATH)


def kv(version: int, path: str = PATH, created: str | None = None) -> Secret:
    """A KV v2 read of ``path`` at ``version`` (created at ``created``, RFC 3339, if given)."""
    return Secret(path=path, data={"k": f"v{version}"}, version=version, kv_version=2, created_time=created)


def went_back(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The "older than" lines logged so far."""
    return [r.getMessage() for r in caplog.records if "older than" in r.getMessage()]


def test_an_older_version_is_ignored_and_the_newer_one_kept(caplog: pytest.LogCaptureFixture) -> None:
    """After v3, a read of v2 is no change and the engine still holds v3."""
    rig = Rig()
    engine = rig.engine
    assert engine.absorb({KEY: kv(3)}) != {}
    assert engine.absorb({KEY: kv(2)}) == {}
    assert engine.secrets[KEY].version == 3
    assert went_back(caplog) == [
        f"{PATH}: the server answered v2, older than v3 already rendered; ignored"
        " (a lagging or rejoining node?)"
    ]


def test_the_same_older_version_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A standby lagging for several polls gives one line, not one per poll."""
    engine = Rig().engine
    engine.absorb({KEY: kv(3)})
    for _ in range(4):
        engine.absorb({KEY: kv(2)})
    assert len(went_back(caplog)) == 1


def test_a_newer_version_after_a_stale_one_is_a_change() -> None:
    """v3, stale v2, then v4: v4 is reported as v3 -> v4."""
    engine = Rig().engine
    engine.absorb({KEY: kv(3)})
    engine.absorb({KEY: kv(2)})
    assert engine.absorb({KEY: kv(4)}) == {KEY: f"{PATH} v3 -> v4"}


def test_unversioned_secrets_are_compared_as_before() -> None:
    """A KV v1 (or leased) secret has no version: new data is a change, whatever came before."""
    engine = Rig().engine
    v1_key = KvRead("kv1/app")
    old = Secret(path="kv1/app", data={"k": "a"}, kv_version=1)
    new = Secret(path="kv1/app", data={"k": "b"}, kv_version=1)
    engine.absorb({v1_key: old})
    assert engine.absorb({v1_key: new}) == {v1_key: "kv1/app changed"}


def test_a_lagging_read_in_the_loop_neither_re_renders_nor_restarts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """v1 rendered, v3 arrives (one restart), then polls answer v2 for a while, then v3 again:
    the file stays v3, the child is restarted once in all, and one line says why."""
    caplog.set_level(logging.WARNING)
    rig = Rig(toml={"watch": {"poll_interval": "1s"}})
    rig.script.do(1.5, lambda: setattr(rig.server, "version", 3))
    rig.script.do(3.0, lambda: rig.exit_child(143, pid=101))
    rig.script.do(4.5, lambda: setattr(rig.server, "version", 2))
    rig.script.do(9.5, lambda: setattr(rig.server, "version", 3))
    rig.script.do(12.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    assert rig.files.content["/out/app.conf"] == "v3"
    assert rig.procs.spawned == [101, 102]
    assert len(went_back(caplog)) == 1


def test_a_recreated_secret_is_taken_though_its_version_is_lower(caplog: pytest.LogCaptureFixture) -> None:
    """`kv metadata delete` and two new puts: v2 created after the v3 held is the secret written
    anew, taken (logged once), and later versions follow from it."""
    engine = Rig().engine
    engine.absorb({KEY: kv(3, created="2026-12-08T01:00:00.5Z")})
    assert engine.absorb({KEY: kv(2, created="2026-12-08T01:00:01.000000001Z")}) == {KEY: f"{PATH} v3 -> v2"}
    assert engine.secrets[KEY].version == 2
    assert engine.absorb({KEY: kv(2, created="2026-12-08T01:00:01.000000001Z")}) == {}
    assert engine.absorb({KEY: kv(3, created="2026-12-08T01:00:02Z")}) == {KEY: f"{PATH} v2 -> v3"}
    assert len([r for r in caplog.records if "written anew" in r.getMessage()]) == 1
    assert went_back(caplog) == []


def test_a_lagging_standby_with_an_older_created_time_is_still_ignored() -> None:
    """An older version created before the one held (a standby behind) changes nothing."""
    engine = Rig().engine
    engine.absorb({KEY: kv(3, created="2026-12-08T01:00:03.25Z")})
    assert engine.absorb({KEY: kv(2, created="2026-12-08T01:00:03.125Z")}) == {}
    assert engine.secrets[KEY].version == 3


def test_a_version_from_a_node_now_gone_does_not_pin_the_real_ones() -> None:
    """A node answered v1003 once (created long ago); the cluster's real v3, created later, is taken."""
    engine = Rig().engine
    engine.absorb({KEY: kv(1003, created="2026-01-01T00:00:00Z")})
    assert engine.absorb({KEY: kv(3, created="2026-12-08T01:00:00Z")}) == {KEY: f"{PATH} v1003 -> v3"}


@pytest.mark.parametrize(
    ("later", "earlier"),
    [
        ("2026-12-08T01:00:00Z", "2026-12-08T00:59:59.999999999Z"),
        ("2026-12-08T01:00:00.1Z", "2026-12-08T01:00:00Z"),
        ("2026-12-08T02:00:00+01:00", "2026-12-08T00:59:59Z"),
    ],
)
def test_created_times_compare_as_instants(later: str, earlier: str) -> None:
    """Nanoseconds, no fraction, and offsets: compared as points in time, not as text."""
    assert created_later(kv(1, created=later), kv(2, created=earlier))
    assert not created_later(kv(1, created=earlier), kv(2, created=later))
    assert not created_later(kv(1, created="not a time"), kv(2, created=earlier))
