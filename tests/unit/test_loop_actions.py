"""Per-template actions, restart splay and the published health snapshot, in the loop tier:
the real supervisor and child controller, fake processes, server and clock (loop_fakes)."""

from __future__ import annotations

import random
import signal
from typing import Any

import pytest

from tests.unit.loop_fakes import PATH, Rig
from vault_inject.observe.health import verdict
from vault_inject.process.signals import Signal

OTHER = "secret/other"


def template(dest: str, *paths: str, **options: Any) -> dict[str, Any]:
    """A [[template]] table whose contents read ``paths`` (default: the rig's PATH)."""
    contents = " ".join(f"{{{{ secret('{p}').k }}}}" for p in paths or (PATH,))
    return {"contents": contents, "destination": dest, **options}


def rig_with(*templates: dict[str, Any], child: dict[str, Any] | None = None, **toml: Any) -> Rig:
    """A rig polling every second with these templates and [child] options."""
    return Rig(
        toml={"watch": {"poll_interval": "1s"}, "child": child or {}, "template": list(templates), **toml}
    )


def child_signals(rig: Rig, signum: int) -> list[float]:
    """When the child's group got ``signum`` (fake times)."""
    return [when for pid, sig, when in rig.procs.signals if sig == signum and pid in rig.procs.spawned]


def change_and_exit(rig: Rig, change: Any, *, exit_at: float = 20.0) -> int:
    """Apply ``change`` at +1.5 s, let the child exit at ``exit_at``; inject's exit code."""
    rig.script.do(1.5, change)
    rig.script.do(exit_at, lambda: rig.exit_child(0))
    return rig.supervisor.run()


def new_version(rig: Rig, path: str | None = None) -> Any:
    """A change that gives ``path`` (or every path) version 2."""
    if path is None:
        return lambda: setattr(rig.server, "version", 2)
    return lambda: rig.server.versions.__setitem__(path, 2)


# --- the strongest action wins, once --------------------------------------------------


def test_outputs_changing_together_send_each_distinct_signal_once() -> None:
    """Three signal templates (two USR1, one HUP) and one "none" template change at once:
    USR1 once and HUP once, no restart, even though [child] says restart."""
    rig = rig_with(
        template("/out/a", on_change="signal", reload_signal="SIGUSR1"),
        template("/out/b", on_change="signal", reload_signal="USR1"),
        template("/out/c", on_change="signal", reload_signal="SIGHUP"),
        template("/out/d", on_change="none"),
    )
    assert change_and_exit(rig, new_version(rig)) == 0
    assert len(child_signals(rig, signal.SIGUSR1)) == 1
    assert len(child_signals(rig, signal.SIGHUP)) == 1
    assert rig.procs.spawned == [101]
    assert {rig.files.content[d] for d in ("/out/a", "/out/b", "/out/c", "/out/d")} == {"v2"}


def test_a_restart_template_wins_over_signal_templates() -> None:
    """A "restart" template changing with a "signal" one: one restart, no signal."""
    rig = rig_with(
        template("/out/a", on_change="signal", reload_signal="SIGUSR1"),
        template("/out/b", on_change="restart"),
        child={"on_change": "none"},
    )
    rig.script.do(3.0, lambda: rig.exit_child(143, pid=101))
    assert change_and_exit(rig, new_version(rig)) == 0
    assert child_signals(rig, signal.SIGUSR1) == []
    assert rig.procs.spawned == [101, 102]


def test_only_a_none_template_changing_leaves_the_child_alone() -> None:
    """When only the "none" template's inputs change, its file is rewritten and the child gets nothing."""
    rig = rig_with(
        template("/out/a", on_change="signal", reload_signal="SIGUSR1"),
        template("/out/b", PATH, OTHER, on_change="none"),
    )
    assert change_and_exit(rig, new_version(rig, OTHER)) == 0
    assert rig.files.content["/out/b"] == "v1 v2"
    assert [sig for pid, sig, _ in rig.procs.signals if pid == 101 and sig != signal.SIGTERM] == []
    assert rig.procs.spawned == [101]


def test_template_without_its_own_action_follows_the_child_section() -> None:
    """A template with no on_change uses [child] on_change/reload_signal."""
    rig = rig_with(template("/out/a"), child={"on_change": "signal", "reload_signal": "SIGUSR2"})
    assert change_and_exit(rig, new_version(rig)) == 0
    assert len(child_signals(rig, signal.SIGUSR2)) == 1


def test_env_change_restarts_even_when_every_template_says_signal() -> None:
    """An env value can only reach the child through a new process: restart, no signal."""
    rig = rig_with(
        template("/out/a", on_change="signal", reload_signal="SIGUSR1"),
        env={"APP_K": f"vault:{PATH}#k"},
    )
    rig.script.do(3.0, lambda: rig.exit_child(143, pid=101))
    assert change_and_exit(rig, new_version(rig)) == 0
    assert child_signals(rig, signal.SIGUSR1) == []
    assert rig.procs.spawned == [101, 102]


# --- splay ---------------------------------------------------------------------------


def _splay_delay(seed: int) -> float:
    """How long after the file was written the child got its signal, with splay 30s."""
    rig = rig_with(template("/out/a"), child={"on_change": "signal", "splay": "30s"})
    rig.rand = random.Random(seed).random
    rig.make_supervisor()
    assert change_and_exit(rig, new_version(rig), exit_at=60.0) == 0
    (sent_at,) = child_signals(rig, signal.SIGHUP)
    return sent_at - rig.files.written_at[-1][0]


def test_splay_delays_the_action_by_the_drawn_fraction_of_the_splay() -> None:
    """The delay between the write and the signal is splay x the random draw, exactly."""
    for seed in (1, 2, 3):
        assert _splay_delay(seed) == pytest.approx(30.0 * random.Random(seed).random(), abs=1e-6)


def test_splay_delays_spread_over_the_whole_window() -> None:
    """Over 30 seeded draws every delay is within 0..30 s and each third of the window is hit."""
    delays = [_splay_delay(seed) for seed in range(100, 130)]
    assert all(0.0 <= d <= 30.0 for d in delays)
    assert {int(d // 10) for d in delays} == {0, 1, 2}


def test_term_during_the_splay_wait_stops_at_once_and_nothing_is_sent() -> None:
    """A TERM while a change waits for its splay moment reaches the child on arrival; the
    held reload is dropped and inject exits long before the splay would have ended."""
    rig = rig_with(template("/out/a"), child={"on_change": "signal", "splay": "30s"})
    rig.rand = lambda: 0.9  # 27 s
    rig.make_supervisor()
    rig.script.do(1.5, new_version(rig))
    rig.script.in_(8.0, Signal(signal.SIGTERM))
    rig.script.do(8.2, lambda: rig.exit_child(143))
    assert rig.supervisor.run() == 143
    assert rig.files.content["/out/a"] == "v2"
    assert child_signals(rig, signal.SIGTERM) == [pytest.approx(1008.0)]
    assert child_signals(rig, signal.SIGHUP) == []
    assert rig.clock.now < 1015.0


def test_a_change_during_the_splay_wait_joins_the_held_action() -> None:
    """A second change while a reload waits: the strongest of both (a restart), once, at the
    moment first drawn."""
    rig = rig_with(
        template("/out/a", on_change="signal"),
        template("/out/b", OTHER, on_change="restart"),
        child={"splay": "20s"},
    )
    rig.rand = lambda: 0.5  # 10 s
    rig.make_supervisor()
    rig.script.do(5.0, new_version(rig, OTHER))
    rig.script.do(14.0, lambda: rig.exit_child(143, pid=101))
    assert change_and_exit(rig, lambda: rig.server.versions.__setitem__(PATH, 2), exit_at=40.0) == 0
    first_write = rig.files.written_at[0][0]
    assert child_signals(rig, signal.SIGHUP) == []
    assert child_signals(rig, signal.SIGTERM)[0] == pytest.approx(first_write + 10.0)
    assert rig.procs.spawned == [101, 102]


# --- the published snapshot --------------------------------------------------------------


def test_snapshot_counts_restarts_signals_renders_and_reads() -> None:
    """After one reload the published snapshot counts it by signal name, the renders and the ok reads."""
    rig = rig_with(template("/out/a", on_change="signal", reload_signal="SIGUSR1"))
    assert change_and_exit(rig, new_version(rig)) == 0
    last = rig.published[-1]
    assert last.signals == {"SIGUSR1": 1}
    assert last.restarts == 0
    assert last.renders >= 2
    assert last.render_failures == 0
    assert last.requests["ok"] >= 2


def test_snapshot_turns_unhealthy_during_an_outage_longer_than_the_poll_interval() -> None:
    """An outage is healthy for up to one poll interval, then unhealthy with the reason;
    after recovery the snapshot is healthy again."""
    rig = rig_with(template("/out/a"), watch={"poll_interval": "10s"})
    seen: list[tuple[float, str]] = []
    rig.parts.publish = lambda s: seen.append((rig.clock.now, verdict(s, rig.clock.now)))
    rig.make_supervisor()
    rig.script.do(0.5, lambda: setattr(rig.server, "down", True))
    rig.script.do(60.0, lambda: setattr(rig.server, "down", False))
    rig.script.do(100.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    unhealthy = [(at, why) for at, why in seen if why]
    assert unhealthy
    assert all("server unreachable" in why for _, why in unhealthy)
    assert unhealthy[0][0] > 1010.0
    assert seen[-2][1] == ""
