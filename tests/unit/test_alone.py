"""The child alone (``alone``): a plain PID 1's loop under a fake clock, and when it applies."""

from __future__ import annotations

import signal

from tests.unit.fakeclock import FakeClock
from tests.unit.loop_fakes import Procs, Script
from vault_inject.config.settings import CliOptions, Config, build_config
from vault_inject.identity import Identity
from vault_inject.process.alone import applies, loop
from vault_inject.process.controller import ChildController
from vault_inject.process.signals import Signal


def _rig(kill_timeout_s: float = 10.0) -> tuple[FakeClock, Script, Procs, ChildController]:
    clock = FakeClock()
    procs = Procs()
    procs.clock = clock
    controller = ChildController(
        procs,
        argv=["app"],
        identity=Identity(),
        env=dict,
        kill_timeout_s=kill_timeout_s,
        clock=clock,
    )
    return clock, Script(clock), procs, controller


def _config(config_path: str | None = None, templates: tuple[str, ...] = (), **values: object) -> Config:
    cli = CliOptions(values=values, templates=templates)
    return build_config(cli, {}, {}, config_path=config_path, cwd="/")


def test_the_child_s_exit_code_is_inject_s() -> None:
    clock, script, procs, controller = _rig()
    script.do(5.0, lambda: procs.exits.update({101: 3}))
    script.in_(5.0, Signal(signal.SIGCHLD))
    assert loop(controller, script, clock) == 3
    assert procs.got(signal.SIGTERM) == [101]  # leftovers of its group get the kill signal


def test_signals_are_forwarded_and_sigchld_is_not() -> None:
    clock, script, procs, controller = _rig()
    for signum in (signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1):
        script.in_(1.0, Signal(signum))
    script.do(2.0, lambda: procs.exits.update({101: 0}))
    assert loop(controller, script, clock) == 0
    sent = [signum for _, signum, when in procs.signals if when < clock.now]  # not the exit's
    assert sent == [signal.SIGHUP, signal.SIGUSR1]


def test_term_ignored_by_the_child_is_followed_by_sigkill_at_the_deadline() -> None:
    clock, script, procs, controller = _rig(kill_timeout_s=4.0)
    script.in_(1.0, Signal(signal.SIGTERM))
    killed_at: list[float] = []

    def die_of_sigkill() -> None:
        if procs.got(signal.SIGKILL) and not killed_at:
            killed_at.append(clock.now)
            procs.exits[101] = 128 + signal.SIGKILL

    for second in range(2, 10):
        script.do(float(second), die_of_sigkill)
    assert loop(controller, script, clock) == 137
    term_at = [when for _, signum, when in procs.signals if signum == signal.SIGTERM]
    kill_at = [when for _, signum, when in procs.signals if signum == signal.SIGKILL]
    assert kill_at[:1] == [term_at[0] + 4.0]


def test_inject_waits_for_leftovers_of_the_group() -> None:
    clock, script, procs, controller = _rig()
    procs.lingering.add(101)
    script.do(1.0, lambda: procs.exits.update({101: 0}))
    script.do(3.0, lambda: procs.lingering.discard(101))
    assert loop(controller, script, clock) == 0
    assert clock.now >= 1003.0  # not before the group was empty


def test_applies_only_when_nothing_can_ever_change() -> None:
    def never(_: str) -> bool:
        return False

    assert applies(_config(), [("A", "1")], never)
    assert not applies(_config(), [("A", "vault:secret/app#x")], lambda v: v.startswith("vault:"))
    assert not applies(_config(listen="127.0.0.1:9102"), [], never)
    assert not applies(_config(config_path="/etc/inject.toml"), [], never)
    assert not applies(_config(templates=("/t.tpl:/out",)), [], never)
