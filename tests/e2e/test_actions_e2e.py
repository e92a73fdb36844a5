"""Per-template actions and restart splay end to end: the real inject and OpenBao, a real
child that records every signal it gets."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from tests.e2e.helpers_e2e import secret_template, write
from tests.e2e.supervise_helpers import SignalChild
from tests.support import Bao, inject_argv, inject_env, secret_value, supervise, wait_for

POLL = ("--poll-interval", "300ms")


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _barrier(inject_pid: int, child: SignalChild, pid: int, count: int) -> None:
    """Send USR2 through inject and wait until the child has its ``count``-th one: every
    action inject decided before this point has reached the child by now (one loop, in order)."""
    os.kill(inject_pid, signal.SIGUSR2)
    wait_for(lambda: child.signals(pid).count("USR2") >= count, timeout_s=5, what=f"USR2 #{count}")


def test_signal_template_and_none_template(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """Two templates, one `on_change = "signal"` with USR1, one `"none"`: when both change the
    child gets USR1 once; when only the "none" one changes it gets nothing; never a restart."""
    child = SignalChild.create(tmp_path)
    shared, own = f"{prefix}/shared", f"{prefix}/own"
    bao.kv_put(shared, v=secret_value())
    bao.kv_put(own, v=secret_value())
    write(tmp_path / "a.j2", f"{{{{ secret('{shared}').v }}}}")
    write(tmp_path / "b.j2", f"{{{{ secret('{shared}').v }}}} {{{{ secret('{own}').v }}}}")
    write(
        tmp_path / "inject.toml",
        '[child]\non_change = "restart"\n\n'
        '[[template]]\nsource = "a.j2"\ndestination = "a.txt"\non_change = "signal"\nreload_signal = "SIGUSR1"\n\n'
        '[[template]]\nsource = "b.j2"\ndestination = "b.txt"\non_change = "none"\n',
    )
    argv = inject_argv(*POLL, "-c", "inject.toml", "--", *child.argv())
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        pid = child.wait_starts(1)[0]["pid"]
        both = secret_value()
        bao.kv_put(shared, v=both)
        child.wait_signal(pid, "USR1")
        assert (tmp_path / "a.txt").read_text() == both
        assert (tmp_path / "b.txt").read_text().startswith(both + " ")
        _barrier(inject.pid, child, pid, 1)
        assert child.signals(pid) == ["USR1", "USR2"]

        only_b = secret_value()
        bao.kv_put(own, v=only_b)
        wait_for(lambda: (_text(tmp_path / "b.txt") or "").endswith(" " + only_b), what="b.txt rewritten")
        _barrier(inject.pid, child, pid, 2)
        assert child.signals(pid) == ["USR1", "USR2", "USR2"]
        assert child.pids() == [pid]


def test_splay_delays_the_action_after_the_file_is_written(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """With `--splay 2s` the reload comes the logged random delay after the file was rewritten."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/app"
    secret_template(bao, path, tmp_path)
    argv = inject_argv(*POLL, "--on-change", "signal", "--splay", "2s", "-t", "a.j2:a.txt")
    argv += ["--", *child.argv()]
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        pid = child.wait_starts(1)[0]["pid"]
        new = secret_value()
        bao.kv_put(path, v=new)
        wait_for(lambda: _text(tmp_path / "a.txt") == new, interval_s=0.01, what="the file rewritten")
        written_at = time.monotonic()
        line = inject.wait_log("(splay)")[0]
        child.wait_signal(pid, "HUP", timeout_s=5)
        signalled_at = time.monotonic()
        found = re.search(r"acting on the change in ([0-9.]+)s \(splay\)", line)
        assert found is not None, line
        delay_s = float(found.group(1))
        assert 0.0 <= delay_s <= 2.0
        assert signalled_at - written_at >= delay_s - 0.15


def test_term_during_a_long_splay_stops_at_once(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A TERM while a change waits out a long splay reaches the child at once; inject exits
    without sending the reload."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/app"
    secret_template(bao, path, tmp_path)
    argv = inject_argv(*POLL, "--on-change", "signal", "--splay", "1h", "-t", "a.j2:a.txt")
    argv += ["--", *child.argv()]
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        pid = child.wait_starts(1)[0]["pid"]
        bao.kv_put(path, v=secret_value())
        line = inject.wait_log("(splay)")[0]
        started = time.monotonic()
        assert inject.stop(timeout_s=5) == 0
        assert time.monotonic() - started < 3.0
        if "in 0.0s" not in line and "in 0.1s" not in line:  # a draw near 0 could have acted already
            assert child.signals(pid) == ["TERM"]
