"""Versions never go backwards: a KV v2 read older than the version rendered (a lagging
standby, a node that rejoined an HA cluster) is ignored, logged once, and never re-renders
or restarts; newer versions still arrive. The engine alone, then the whole loop."""

from __future__ import annotations

import logging

import pytest

from tests.unit.loop_fakes import PATH, Rig
from vault_inject.model import KvRead, Secret

KEY = KvRead(PATH)


def kv(version: int, path: str = PATH) -> Secret:
    """A KV v2 read of ``path`` at ``version``."""
    return Secret(path=path, data={"k": f"v{version}"}, version=version, kv_version=2)


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
