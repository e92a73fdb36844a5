"""systemd's notify protocol: the address and watchdog read from the environment, the
datagrams, the watchdog beat on a fake clock, and the loop telling systemd READY,
RELOADING/READY around a re-render, STOPPING and WATCHDOG (the loop tier)."""

from __future__ import annotations

import itertools
import signal

import pytest

from tests.unit.fakeclock import FakeClock
from tests.unit.loop_fakes import Rig
from vault_inject.cli.app import child_environ
from vault_inject.config.settings import CliOptions, build_config
from vault_inject.observe.sdnotify import (
    Notifier,
    NotifyTarget,
    message,
    notify_target,
    socket_address,
    watchdog_interval,
)
from vault_inject.process.signals import Signal

MONOTONIC_US = 123_456_789


def recording(watchdog_s: float | None = None) -> tuple[Notifier, list[bytes]]:
    """A notifier whose datagrams land in a list."""
    sent: list[bytes] = []
    return Notifier(NotifyTarget("/run/notify", watchdog_s), sent.append, lambda: MONOTONIC_US), sent


# --- the environment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@/org/systemd/notify", b"\0/org/systemd/notify"),
        ("@x", b"\0x"),
        ("@", None),
        ("vsock:2:1234", None),
        ("relative/path", None),
        ("", None),
    ],
)
def test_socket_address_is_a_path_or_an_abstract_name(value: str, address: str | bytes | None) -> None:
    """A path is used as is, ``@name`` is the abstract ``\\0name``; anything else is not sent to."""
    assert socket_address(value) == address


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "1000000"}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 15.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "43"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_our_pid(
    environ: dict[str, str], interval: float | None
) -> None:
    """WATCHDOG=1 every half WATCHDOG_USEC; never when WATCHDOG_PID names another process."""
    assert watchdog_interval(environ, pid=42) == interval


def test_notify_target_needs_a_usable_socket() -> None:
    """No NOTIFY_SOCKET (or an unusable one): nothing to notify, whatever WATCHDOG_USEC says."""
    assert notify_target({"WATCHDOG_USEC": "1000000"}, 1) is None
    target = notify_target({"NOTIFY_SOCKET": "@n", "WATCHDOG_USEC": "2000000"}, 1)
    assert target == NotifyTarget(b"\0n", 1.0)


def test_the_child_never_gets_the_notify_socket_unless_passed() -> None:
    """NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID stay inject's, unless in pass_env."""
    environ = {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1", "PATH": "/bin"}
    config = build_config(CliOptions(), {}, {}, config_path=None, cwd="/")
    assert child_environ(config, environ, {}) == {"PATH": "/bin"}
    passing = build_config(
        CliOptions(), {}, {"child": {"pass_env": ["NOTIFY_SOCKET"]}}, config_path=None, cwd="/"
    )
    assert child_environ(passing, environ, {}) == {"PATH": "/bin", "NOTIFY_SOCKET": "/run/n"}


# --- the datagrams -------------------------------------------------------------------------------


def test_messages_are_key_value_lines_with_one_line_values() -> None:
    """Each field one ``KEY=value`` line; a value's newlines cannot start another field."""
    assert message(("READY", "1"), ("STATUS", "a\nWATCHDOG=trigger")) == b"READY=1\nSTATUS=a WATCHDOG=trigger"


def test_ready_reloading_and_stopping() -> None:
    """READY (with STATUS), RELOADING with CLOCK_MONOTONIC in µs, STOPPING once; nothing after it."""
    notifier, sent = recording()
    notifier.ready("2 output(s) rendered")
    notifier.reloading()
    notifier.ready()
    notifier.stopping("stopping on SIGTERM")
    notifier.stopping("again")
    notifier.ready()
    notifier.reloading()
    assert sent == [
        b"READY=1\nSTATUS=2 output(s) rendered",
        b"RELOADING=1\nMONOTONIC_USEC=123456789",
        b"READY=1",
        b"STOPPING=1\nSTATUS=stopping on SIGTERM",
    ]


def test_watchdog_beats_at_its_interval_on_a_fake_clock() -> None:
    """The first beat at once, then one per interval however often the loop turns."""
    clock = FakeClock()
    notifier, sent = recording(watchdog_s=0.5)
    beats = []
    for _ in range(21):  # 2 s of turns every 0.1 s
        notifier.beat(clock())
        beats.append(len(sent))
        clock.now += 0.1
    assert sent == [b"WATCHDOG=1"] * 5
    assert notifier.next_at() == pytest.approx(1002.5)
    assert beats[:6] == [1, 1, 1, 1, 1, 2]


def test_no_watchdog_no_beat() -> None:
    """Without WATCHDOG_USEC nothing is sent and the loop is never woken for it."""
    notifier, sent = recording()
    notifier.beat(0.0)
    assert sent == []
    assert notifier.next_at() is None


# --- the loop ------------------------------------------------------------------------------------


def notified_rig(**kwargs: object) -> tuple[Rig, list[tuple[float, bytes]]]:
    """A loop rig whose supervisor tells a recording notifier (datagrams with fake times)."""
    rig = Rig(**kwargs)  # type: ignore[arg-type]
    sent: list[tuple[float, bytes]] = []
    rig.parts.notify = Notifier(
        NotifyTarget("/run/notify", 0.5), lambda data: sent.append((rig.clock.now, data)), lambda: 1
    )
    rig.make_supervisor()
    return rig, sent


def said(sent: list[tuple[float, bytes]]) -> list[str]:
    """The first line of each non-watchdog datagram."""
    return [data.decode().split("\n")[0] for _, data in sent if data != b"WATCHDOG=1"]


def test_loop_says_ready_after_the_child_started_and_stopping_on_term() -> None:
    """READY=1 once the child is started (its pid in STATUS), STOPPING=1 when TERM comes."""
    rig, sent = notified_rig()
    rig.script.in_(2.0, Signal(signal.SIGTERM))
    rig.script.do(2.5, lambda: rig.exit_child(143))
    assert rig.supervisor.run() == 143
    assert said(sent) == ["READY=1", "STOPPING=1"]
    assert sent[0][1] == b"READY=1\nSTATUS=1 output(s) rendered; child pid 101 running"
    assert rig.procs.spawned == [101]


def test_loop_brackets_a_re_render_with_reloading_and_ready() -> None:
    """A new version: RELOADING=1 (with MONOTONIC_USEC) when the re-render starts, READY=1 when done."""
    rig, sent = notified_rig(toml={"watch": {"poll_interval": "1s"}, "child": {"on_change": "signal"}})
    rig.script.do(1.5, lambda: setattr(rig.server, "version", 2))
    rig.script.do(5.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    assert rig.files.content["/out/app.conf"] == "v2"
    assert said(sent) == ["READY=1", "RELOADING=1", "READY=1"]
    reloading = next(data for _, data in sent if data.startswith(b"RELOADING"))
    assert reloading.split(b"\n")[1] == b"MONOTONIC_USEC=1"


def test_loop_without_a_child_is_ready_after_the_first_render() -> None:
    """inject watch: READY=1 at once (the first render is written), STOPPING=1 on TERM."""
    rig, sent = notified_rig(argv=None)
    rig.script.in_(1.0, Signal(signal.SIGTERM))
    assert rig.supervisor.run() == 0
    assert said(sent) == ["READY=1", "STOPPING=1"]
    assert sent[0] == (1000.0, b"READY=1\nSTATUS=1 output(s) rendered")


def test_loop_pets_the_watchdog_every_half_interval_even_when_idle() -> None:
    """With WATCHDOG_USEC=1s the idle loop wakes for a WATCHDOG=1 every 0.5 s (not only
    at its 1 s safety wake)."""
    rig, sent = notified_rig(toml={"watch": {"poll_interval": "1h"}})
    rig.script.do(5.0, lambda: rig.exit_child(0))
    assert rig.supervisor.run() == 0
    beats = [when for when, data in sent if data == b"WATCHDOG=1"]
    assert len(beats) >= 10
    gaps = [later - earlier for earlier, later in itertools.pairwise(beats)]
    assert max(gaps) <= 0.5 + 1e-9
