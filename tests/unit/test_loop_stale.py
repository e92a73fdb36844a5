"""The loop after a start from the state's last-known-good values (``[state] start_stale``),
driven by scripted events and a fake clock: the poll is a reconnect attempt while the server
is down (nothing saved, nothing renewed, /healthz stale); once it answers, its token is used
and a changed value restarts the child like any change."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest

from tests.unit.loop_fakes import Rig
from vault_inject.client.vault import Login
from vault_inject.errors import UnreachableError
from vault_inject.loop.stale import StaleStart, StartedStale
from vault_inject.model import Request, Secret
from vault_inject.observe.health import verdict

SAVED_AT, SINCE = 1_700_000_000.0, 1_700_000_600.0


class PollClient:
    """The poll worker's client: the fake server's reads, and the token a reconnect put on it."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.token = ""

    def fetch(self, request: Request) -> Secret:
        return self.rig.server.fetch(request)


class Saves:
    """The state keeper: what the loop asked to save."""

    def __init__(self) -> None:
        self.saved: list[str] = []
        self.finished: list[bool] = []

    def save(self, secrets: Mapping[Request, Secret], token: str) -> None:
        self.saved.append(token)

    def finish(self, *, revoked: bool) -> None:
        self.finished.append(revoked)


def _stale_rig() -> tuple[Rig, PollClient, Saves]:
    rig = Rig(toml={"watch": {"poll_interval": "5s"}})
    rig.server.down = True
    client = PollClient(rig)

    def reconnect(c: Any) -> tuple[Login, dict[Request, Secret]]:
        if rig.server.down:
            raise UnreachableError("http://127.0.0.1:1 did not answer token lookup")
        grant = rig.auth.login(c)
        c.token = grant.token
        return grant, {}

    saves = Saves()
    rig.parts.stale = StaleStart(
        StartedStale(reconnect, SAVED_AT, SINCE), client, wall_clock=lambda: SINCE + 30
    )  # type: ignore[arg-type]
    rig.parts.persist = saves
    rig.make_supervisor()
    return rig, client, saves


def test_stale_until_the_server_answers_then_its_token_and_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Down: attempts back off, /healthz says stale, nothing is saved or renewed, the child is untouched. Back with v2: one line, the token goes to the lifecycle, the child restarts once, saving resumes."""
    rig, _, saves = _stale_rig()
    seen: list[str] = []
    rig.script.do(20.0, lambda: seen.append(verdict(rig.published[-1], 0.0)))
    rig.script.do(20.0, lambda: seen.append(str(len(saves.saved))))
    rig.script.do(30.0, lambda: (setattr(rig.server, "down", False), setattr(rig.server, "version", 2)))
    rig.script.do(45.0, lambda: rig.exit_child(143, pid=101))
    rig.script.do(60.0, lambda: rig.exit_child(0))
    with caplog.at_level(logging.INFO):
        assert rig.supervisor.run() == 0
    assert seen[0].startswith(
        "stale: serving last-known-good values from the state since 2023-11-14T22:23:20Z"
    )
    assert seen[1] == "0"  # the state's age is never renewed from its own values
    assert rig.procs.spawned == [101, 102]
    assert rig.files.content["/out/app.conf"] == "v2"
    assert rig.new_tokens == ["t1"]
    assert rig.auth.logins == 1
    assert set(saves.saved) == {"t1"}
    assert rig.server.tokens_set == ["t1"]  # the lifecycle's client
    assert rig.published[-1].stale_since is None
    assert not rig.supervisor.stale
    lines = [r.getMessage() for r in caplog.records]
    assert len([line for line in lines if "reachable again" in line]) == 1
    assert [line for line in lines if "unreachable" in line] == []  # the start's line said it


def test_a_server_that_stays_down_keeps_the_child_on_the_state_values() -> None:
    """No answer at all: the child keeps running on what it started with, never signalled."""
    rig, _, saves = _stale_rig()
    rig.script.do(120.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    assert rig.procs.spawned == [101]
    assert [when for _, _, when in rig.procs.signals if when < 1120.0] == []  # (its group is cleaned at exit)
    assert rig.supervisor.stale
    assert saves.saved == []
    assert rig.published[-1].stale_since == SINCE
