"""Pure decisions for acting on a change: the strongest action wins (actions), the splay
holds it (splay), and the template and [child] options that drive them (config)."""

from __future__ import annotations

import signal

import pytest

from tests.unit.fakeclock import FakeClock
from vault_inject.config.settings import CliOptions, Config, TemplateSpec, build_config
from vault_inject.errors import UsageError
from vault_inject.loop.splay import Splay
from vault_inject.process.actions import Action, decide

USR1, USR2, HUP = int(signal.SIGUSR1), int(signal.SIGUSR2), int(signal.SIGHUP)


def config(*templates: TemplateSpec, on_change: str = "restart", reload_signal: int = HUP) -> Config:
    """A Config with these templates and [child] settings."""
    return Config(templates=templates, on_change=on_change, reload_signal=reload_signal)


def spec(dest: str, on_change: str | None = None, reload_signal: int | None = None) -> TemplateSpec:
    """A template writing ``dest`` with its own action (None: inherit)."""
    return TemplateSpec(destination=dest, contents="x", on_change=on_change, reload_signal=reload_signal)


def test_restart_beats_signal_beats_none() -> None:
    """One restart template among signal and none templates means a restart."""
    cfg = config(spec("/a", "signal", USR1), spec("/b", "restart"), spec("/c", "none"))
    assert decide(cfg, files=["/a", "/b", "/c"], env_changed=False) == Action(restart=True)


def test_distinct_signals_each_once_in_template_order() -> None:
    """USR1 twice and USR2 once give (USR1, USR2)."""
    cfg = config(spec("/a", "signal", USR1), spec("/b", "signal", USR2), spec("/c", "signal", USR1))
    assert decide(cfg, files=["/c", "/b", "/a"], env_changed=False).signals == (USR1, USR2)


def test_none_templates_alone_do_nothing() -> None:
    """Only "none" templates changed: nothing to do."""
    cfg = config(spec("/a", "signal", USR1), spec("/b", "none"))
    assert decide(cfg, files=["/b"], env_changed=False).nothing


def test_unset_template_options_inherit_the_child_section() -> None:
    """A template with no on_change/reload_signal uses [child]'s; a signal template with no
    reload_signal uses [child]'s signal."""
    cfg = config(spec("/a"), spec("/b", "signal"), on_change="signal", reload_signal=USR2)
    assert decide(cfg, files=["/a", "/b"], env_changed=False).signals == (USR2,)
    assert decide(config(spec("/a")), files=["/a"], env_changed=False).restart


def test_env_change_restarts_unless_the_child_section_says_none() -> None:
    """An env change restarts (noted in the log) whatever the templates say; [child] none keeps
    the child as it is."""
    cfg = config(spec("/a", "none"), on_change="signal")
    assert decide(cfg, files=[], env_changed=True) == Action(restart=True, note="env changed")
    assert decide(config(on_change="none"), files=[], env_changed=True).nothing


def test_merged_keeps_the_strongest() -> None:
    """Merging keeps each signal once, and a restart absorbs signals."""
    assert Action(signals=(USR1,)).merged(Action(signals=(HUP, USR1))).signals == (USR1, HUP)
    assert Action(signals=(USR1,)).merged(Action(restart=True)) == Action(restart=True)


def test_splay_holds_until_the_drawn_moment() -> None:
    """With splay 10s and a draw of 0.25 the action is due 2.5 s later, then taken once."""
    clock = FakeClock(100.0)
    splay = Splay(10.0, clock=clock, rand=lambda: 0.25)
    splay.hold(Action(signals=(HUP,)), "secret/app v1 -> v2")
    assert splay.next_at() == pytest.approx(102.5)
    assert splay.take_due() is None
    clock.now = 102.5
    assert splay.take_due() == (Action(signals=(HUP,)), "secret/app v1 -> v2")
    assert splay.take_due() is None
    assert splay.next_at() is None


def test_no_splay_is_due_at_once_and_draws_nothing() -> None:
    """Splay 0: due immediately, the random source is not even asked."""
    clock = FakeClock(100.0)

    def never() -> float:
        raise AssertionError("no draw without a splay")

    splay = Splay(0.0, clock=clock, rand=never)
    splay.hold(Action(restart=True), "c")
    assert splay.take_due() == (Action(restart=True), "c")


def test_a_held_action_joins_later_ones_and_keeps_its_moment() -> None:
    """A second hold merges into the first (causes joined) without a new draw."""
    clock = FakeClock(100.0)
    draws = iter([0.5, 0.0])
    splay = Splay(4.0, clock=clock, rand=lambda: next(draws))
    splay.hold(Action(signals=(USR1,)), "one")
    clock.now = 101.0
    splay.hold(Action(restart=True), "two")
    assert splay.next_at() == pytest.approx(102.0)
    clock.now = 102.0
    assert splay.take_due() == (Action(restart=True), "one; two")


def _build(data: dict[str, object], environ: dict[str, str] | None = None) -> Config:
    return build_config(CliOptions(), environ or {}, data, config_path="inject.toml", cwd="/srv")


def test_template_on_change_and_reload_signal_are_parsed() -> None:
    """[[template]] on_change and reload_signal become the spec's; absent ones stay None."""
    cfg = _build(
        {
            "template": [
                {"contents": "x", "destination": "a", "on_change": "Signal", "reload_signal": "usr1"},
                {"contents": "y", "destination": "b"},
            ]
        }
    )
    first, second = cfg.templates
    assert (first.on_change, first.reload_signal) == ("signal", USR1)
    assert (second.on_change, second.reload_signal) == (None, None)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"on_change": "reload"}, "on_change: 'reload' is not one of"),
        ({"reload_signal": "SIGNOPE"}, "reload_signal: unknown signal"),
    ],
)
def test_bad_template_action_names_the_template(item: dict[str, str], message: str) -> None:
    """A bad per-template action is a usage error naming the template and the key."""
    with pytest.raises(UsageError, match=f"template #1: {message}"):
        _build({"template": [{"contents": "x", "destination": "a", **item}]})


def test_splay_from_file_and_environment() -> None:
    """[child] splay is a duration; INJECT_SPLAY overrides it."""
    assert _build({"child": {"splay": "30s"}}).splay_s == 30.0
    assert _build({"child": {"splay": "30s"}}, {"INJECT_SPLAY": "1m"}).splay_s == 60.0
    assert _build({}).splay_s == 0.0
