"""The supervisor loop driven by scripted events and a fake clock (STYLE's middle tier).

The loop, the child controller, the lifecycle, the engine and the applier are the real ones;
processes, commands, files, the server and time are fakes (tests/unit/loop_fakes.py)."""

from __future__ import annotations

import dataclasses
import logging
import signal

import pytest

from tests.unit.loop_fakes import PATH, Rig
from vault_inject.cli.app import prepare
from vault_inject.config.settings import CliOptions, build_config
from vault_inject.errors import UsageError
from vault_inject.model import KvRead
from vault_inject.process.signals import Inbox, Signal
from vault_inject.render.engine import Job

FAST = {"watch": {"poll_interval": "1s"}}


def child_signals(rig: Rig, signum: int) -> list[float]:
    """When the child's group got ``signum`` (fake times)."""
    return [when for pid, sig, when in rig.procs.signals if sig == signum and pid in rig.procs.spawned]


# --- signals, from the first instant -------------------------------------------------------


def test_stop_signal_during_startup_exits_with_128_plus_n() -> None:
    """Before the supervisor runs, TERM/INT/QUIT end inject at once (143/130/131)."""
    exits: list[int] = []
    inbox = Inbox(exit_now=exits.append)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        inbox.handle(signum)
    assert exits == [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT]


def test_stop_signal_during_a_commit_waits_for_it() -> None:
    """A TERM that arrives during a file commit takes effect when the commit is done."""
    exits: list[int] = []
    inbox = Inbox(exit_now=exits.append)
    with inbox.deferred():
        inbox.handle(signal.SIGTERM)
        assert exits == []
    assert exits == [signal.SIGTERM]


def test_other_signals_during_startup_are_dropped_and_later_ones_queued() -> None:
    """HUP before the child exists goes nowhere; after hand-over every signal is an event."""
    exits: list[int] = []
    inbox = Inbox(exit_now=exits.append)
    inbox.handle(signal.SIGHUP)
    assert exits == []
    assert inbox.events.empty()
    inbox.hand_over()
    inbox.handle(signal.SIGTERM)
    assert exits == []
    assert inbox.events.get_nowait() == Signal(signal.SIGTERM)


def test_startup_cleanups_run_before_the_exit() -> None:
    """Commands started during startup are killed when a signal ends it."""
    order: list[str] = []
    inbox = Inbox(exit_now=lambda signum: order.append("exit"))
    inbox.on_exit(lambda: order.append("kill commands"))
    inbox.handle(signal.SIGTERM)
    assert order == ["kill commands", "exit"]


def test_term_reaches_the_child_at_once_and_its_code_is_inject_s() -> None:
    """A TERM is forwarded on the turn it arrives; the child's exit code is the result."""
    rig = Rig()
    rig.script.in_(5.0, Signal(signal.SIGTERM))
    rig.script.do(5.5, lambda: rig.exit_child(143))
    assert rig.supervisor.run() == 143
    assert child_signals(rig, signal.SIGTERM) == [pytest.approx(1005.0)]


def test_forwarded_signal_reaches_the_group_unchanged() -> None:
    """USR1/HUP/WINCH go to the child's process group and do not stop anything."""
    rig = Rig()
    for n, signum in enumerate((signal.SIGUSR1, signal.SIGHUP, signal.SIGWINCH)):
        rig.script.in_(1.0 + n, Signal(signum))
    rig.script.do(9.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    assert [sig for _, sig, _ in rig.procs.signals][:3] == [signal.SIGUSR1, signal.SIGHUP, signal.SIGWINCH]


# --- nothing slow on the loop --------------------------------------------------------------


def test_term_during_a_slow_check_reaches_the_child_before_the_check_ends() -> None:
    """A check that takes 8 s runs on a worker: a TERM meanwhile reaches the child at once."""
    rig = Rig(toml={**FAST, "child": {"check": "sleep 8", "on_change": "signal"}})
    rig.workers.held.add("apply")
    rig.script.do(2.0, lambda: setattr(rig.server, "version", 2))
    rig.script.in_(4.0, Signal(signal.SIGTERM))
    rig.script.do(4.1, lambda: rig.exit_child(143))
    rig.script.do(12.0, lambda: rig.workers.release("apply"))
    assert rig.supervisor.run() == 143
    assert child_signals(rig, signal.SIGTERM) == [pytest.approx(1004.0)]


def test_term_while_the_server_stalls_reaches_the_child() -> None:
    """A poll or renewal that never returns does not hold a forwarded signal."""
    rig = Rig(toml=FAST)
    rig.workers.held.update({"poll", "life"})
    rig.script.in_(30.0, Signal(signal.SIGTERM))
    rig.script.do(30.2, lambda: rig.exit_child(143))
    assert rig.supervisor.run() == 143
    assert child_signals(rig, signal.SIGTERM) == [pytest.approx(1030.0)]
    assert rig.workers.started.count("poll") == 1  # the stalled poll is not doubled


def test_changes_wait_while_a_change_is_being_applied() -> None:
    """A second change during a slow apply is acted on after it, once."""
    rig = Rig(toml={**FAST, "child": {"on_change": "signal"}})
    rig.workers.held.add("apply")
    rig.script.do(1.5, lambda: setattr(rig.server, "version", 2))
    rig.script.do(3.5, lambda: setattr(rig.server, "version", 3))
    rig.script.do(6.0, lambda: rig.workers.held.discard("apply") or rig.workers.release("apply"))
    rig.script.do(20.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    assert rig.files.content["/out/app.conf"] == "v3"
    assert len(child_signals(rig, signal.SIGHUP)) == 2


# --- the child's process group -------------------------------------------------------------


def test_restart_waits_for_the_whole_group_then_kills_what_is_left() -> None:
    """On restart, a leftover of the old group that ignores TERM gets SIGKILL after the kill
    timeout, and the new child starts only once the group is gone."""
    rig = Rig(toml={**FAST, "child": {"kill_timeout": "3s"}})
    first = 101
    rig.script.do(1.5, lambda: setattr(rig.server, "version", 2))

    def old_child_exits_leaving_a_grandchild() -> None:
        rig.procs.lingering.add(first)
        rig.exit_child(143, pid=first)

    rig.script.do(3.0, old_child_exits_leaving_a_grandchild)
    rig.script.do(20.0, lambda: rig.exit_child(0))
    killed_at: list[float] = []

    def watch_kill() -> None:
        if rig.procs.got(signal.SIGKILL):
            killed_at.append(rig.clock.now)
            rig.procs.lingering.discard(first)
        else:
            rig.script.do(0.1, watch_kill)

    rig.script.do(2.6, watch_kill)
    assert rig.supervisor.run() == 0
    term_at = child_signals(rig, signal.SIGTERM)[0]
    assert killed_at
    assert killed_at[0] == pytest.approx(term_at + 3.0, abs=0.2)
    assert rig.procs.spawned == [101, 102]


def test_leftovers_of_a_child_that_exited_by_itself_are_stopped_before_inject_exits() -> None:
    """When the child exits on its own, what is left of its group gets the kill signal, then
    SIGKILL, and inject exits with the child's code only after."""
    rig = Rig(toml={"child": {"kill_timeout": "2s"}})
    rig.script.do(1.0, lambda: rig.procs.lingering.add(101) or rig.exit_child(7))
    rig.script.do(3.5, lambda: rig.procs.lingering.discard(101))
    assert rig.supervisor.run() == 7
    assert rig.procs.got(signal.SIGTERM) == [101]
    assert rig.procs.got(signal.SIGKILL) == [101]


def test_term_between_restarts_ends_inject() -> None:
    """A TERM while the old child's group drains for a restart: no new child is started."""
    rig = Rig(toml=FAST)
    rig.script.do(1.5, lambda: setattr(rig.server, "version", 2))
    rig.script.do(3.0, lambda: rig.procs.lingering.add(101) or rig.exit_child(143, pid=101))
    rig.script.in_(3.5, Signal(signal.SIGTERM))
    rig.script.do(4.0, lambda: rig.procs.lingering.discard(101))
    assert rig.supervisor.run() == 143
    assert rig.procs.spawned == [101]


# --- changes, debounce, outage, rollback, token ----------------------------------------------


def test_new_version_restarts_the_child_once() -> None:
    """A new KV version re-renders the file and restarts the child (the default action)."""
    rig = Rig(toml=FAST)
    rig.script.do(1.5, lambda: setattr(rig.server, "version", 2))
    rig.script.do(3.0, lambda: rig.exit_child(143, pid=101))
    rig.script.do(10.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    assert rig.files.content["/out/app.conf"] == "v2"
    assert rig.procs.spawned == [101, 102]


def test_debounce_waits_for_quiet() -> None:
    """With wait = {min 5s}, three versions a second apart are one re-render after the last."""
    rig = Rig(
        toml={
            "watch": {"poll_interval": "1s", "wait": {"min": "5s", "max": "60s"}},
            "child": {"on_change": "signal"},
        }
    )
    for n, at in enumerate((1.5, 2.5, 3.5), start=2):
        rig.script.do(at, lambda n=n: setattr(rig.server, "version", n))
    rig.script.do(30.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    hups = child_signals(rig, signal.SIGHUP)
    assert len(hups) == 1
    assert hups[0] >= 1008.5
    assert rig.files.content["/out/app.conf"] == "v4"


def test_outage_backs_off_and_recovers() -> None:
    """While the server is down polls back off (no child action); once back, the new version
    is delivered."""
    rig = Rig(toml={"watch": {"poll_interval": "10s"}, "child": {"on_change": "signal"}})
    rig.script.do(0.5, lambda: setattr(rig.server, "down", True))
    rig.script.do(40.0, lambda: (setattr(rig.server, "down", False), setattr(rig.server, "version", 2)))
    rig.script.do(80.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    assert rig.supervisor._polls.outage_attempts == 0
    assert rig.files.content["/out/app.conf"] == "v2"
    assert len(child_signals(rig, signal.SIGHUP)) == 1


def test_failed_check_rolls_back_and_does_not_tell_the_child() -> None:
    """A check that fails restores the previous file and sends nothing to the child."""
    rig = Rig(toml={**FAST, "child": {"check": "false", "on_change": "signal"}})
    rig.commands.codes["false"] = 1
    rig.script.do(1.5, lambda: setattr(rig.server, "version", 2))
    rig.script.do(5.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    assert rig.files.content["/out/app.conf"] == "v1"
    assert rig.files.rollbacks >= 1
    assert child_signals(rig, signal.SIGHUP) == []


def test_failed_write_is_retried_until_it_succeeds() -> None:
    """A full disk keeps the old file and the child untold; the write is retried and then lands."""
    rig = Rig(toml={**FAST, "child": {"on_change": "signal"}})
    rig.files.fail = True
    rig.script.do(1.5, lambda: setattr(rig.server, "version", 2))
    rig.script.do(10.0, lambda: setattr(rig.files, "fail", False))
    rig.script.do(40.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    assert rig.files.content["/out/app.conf"] == "v2"
    assert len(child_signals(rig, signal.SIGHUP)) == 1


def test_token_file_change_logs_in_again_and_swaps_the_token() -> None:
    """An edit of the token file logs in on the lifecycle worker; the pollers get the token."""
    rig = Rig()
    rig.file_changed("/run/token", delay_s=2.0)
    rig.script.do(5.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    assert rig.auth.logins == 1
    assert rig.new_tokens == ["t1"]


def test_no_child_term_ends_the_watch_with_0() -> None:
    """Without a command (inject watch) TERM ends the loop with exit code 0."""
    rig = Rig(argv=None, toml=FAST)
    rig.script.do(1.5, lambda: setattr(rig.server, "version", 2))
    rig.script.in_(5.0, Signal(signal.SIGTERM))
    assert rig.supervisor.run() == 0
    assert rig.files.content["/out/app.conf"] == "v2"


def test_reconcile_reloads_sources_edited_before_the_watcher() -> None:
    """A template source found edited when the watcher comes up is reloaded."""
    rig = Rig()
    asked: list[str] = []
    rig.parts.reconcile = lambda: frozenset({"/srv/app.j2"})
    rig.parts.rebuild_job = lambda: asked.append("rebuild") or rig.engine.job
    rig.make_supervisor()
    rig.script.do(3.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    assert asked  # the rebuild ran


def test_the_poll_reads_the_path_in_use() -> None:
    """The fake server is asked for the path the template uses (the rig is wired right)."""
    rig = Rig(toml=FAST)
    assert rig.engine.polled_keys() == [KvRead(PATH)]


# --- template reloads (issue 27: one edit, one re-render, one error line) ----------------------


def _edited_job(contents: str, digest: str) -> Job:
    """The job a reload would build after an edit: ``contents`` as the template, and
    ``digest`` as the config file's content hash."""
    data = {"template": [{"contents": contents, "destination": "/out/app.conf"}]}
    config = build_config(CliOptions(), {}, data, config_path="inject.toml", cwd="/srv")
    return dataclasses.replace(prepare(config, {}), sources={"/srv/inject.toml": digest})


def test_an_edit_seen_twice_is_rendered_once() -> None:
    """The watcher and the reconcile pass both report one edit: the second rebuild has the
    contents already in use and renders nothing; a rebuild of unchanged files neither."""
    rig = Rig(argv=None)
    edited = _edited_job("new {{ secret('secret/app').k }}", "edit-1")
    jobs = [rig.engine.job, edited, edited]
    rig.parts.rebuild_job = lambda: jobs.pop(0)
    rig.make_supervisor()
    for delay_s in (1.0, 2.0, 3.0):
        rig.file_changed("/srv/inject.toml", delay_s=delay_s)
    rig.script.in_(5.0, Signal(signal.SIGTERM))
    assert rig.supervisor.run() == 0
    assert jobs == []
    assert rig.workers.started.count("apply") == 1
    assert rig.files.content["/out/app.conf"] == "new v1"


def test_a_template_edited_to_fail_logs_its_error_and_no_unchanged_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reloaded template that fails at render: one error line, no "changed; output
    unchanged"; each later edit that still fails says so again; the file is kept."""
    rig = Rig(argv=None, toml=FAST)
    broken = "{{ secret('secret/app').missing }}"
    jobs = [_edited_job(broken, "edit-1"), _edited_job(broken + "!", "edit-2")]
    rig.parts.rebuild_job = lambda: jobs.pop(0)
    rig.make_supervisor()
    rig.file_changed("/srv/inject.toml", delay_s=1.0)
    rig.file_changed("/srv/inject.toml", delay_s=5.0)
    rig.script.in_(9.0, Signal(signal.SIGTERM))
    with caplog.at_level(logging.INFO):
        assert rig.supervisor.run() == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    error = "template '/out/app.conf' line 1: secret 'secret/app' has no key 'missing'"
    assert errors == [f"{error} (keeping the last good version)"] * 2
    assert [r for r in caplog.records if "unchanged" in r.getMessage()] == []
    assert rig.files.content["/out/app.conf"] == "v1"


def test_an_edit_while_a_rebuild_runs_is_rebuilt_after_it() -> None:
    """A template edited again while the rebuild of the first edit runs (it may have read
    the files before the second edit) is rebuilt once that one reports back: no edit lost."""
    rig = Rig(argv=None)
    jobs = [
        _edited_job("first {{ secret('secret/app').k }}", "edit-1"),
        _edited_job("second {{ secret('secret/app').k }}", "edit-2"),
    ]
    rig.parts.rebuild_job = lambda: jobs.pop(0)
    rig.make_supervisor()
    rig.workers.held.add("reload")
    rig.file_changed("/srv/inject.toml", delay_s=1.0)
    rig.file_changed("/srv/inject.toml", delay_s=1.5)  # while the first rebuild is held
    rig.script.do(2.0, lambda: rig.workers.held.discard("reload") or rig.workers.release("reload"))
    rig.script.in_(6.0, Signal(signal.SIGTERM))
    assert rig.supervisor.run() == 0
    assert jobs == []
    assert rig.files.content["/out/app.conf"] == "second v1"


def test_a_rebuild_that_fails_the_same_way_again_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Two edits in a row that leave the config refused: one error line; a good edit, then
    the same failure again: a second line."""
    rig = Rig(argv=None)
    refused = UsageError("config file /srv/inject.toml: it is world-writable")
    results: list[object] = [
        refused,
        refused,
        _edited_job("ok {{ secret('secret/app').k }}", "edit-1"),
        refused,
    ]

    def rebuild() -> Job:
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        assert isinstance(result, Job)
        return result

    rig.parts.rebuild_job = rebuild
    rig.make_supervisor()
    for delay_s in (1.0, 2.0, 3.0, 4.0):
        rig.file_changed("/srv/inject.toml", delay_s=delay_s)
    rig.script.in_(6.0, Signal(signal.SIGTERM))
    with caplog.at_level(logging.INFO):
        assert rig.supervisor.run() == 0
    assert results == []
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"{refused} (keeping the previous templates)"] * 2
    assert rig.files.content["/out/app.conf"] == "ok v1"
