"""The supervisor end to end: real inject, real OpenBao, a real child that records every
signal it gets. A new secret version rewrites files and restarts, signals or leaves the
child; kill timeouts escalate; check commands veto; template commands run; template
edits re-render; a broken re-render keeps the last good file; bursts are debounced."""

from __future__ import annotations

import os
import signal
import stat
import threading
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import secret_template, temp_files, write
from tests.e2e.supervise_helpers import SignalChild
from tests.support import Bao, alive, inject_argv, inject_env, run_inject, secret_value, supervise, wait_for

POLL = ("--poll-interval", "300ms")


def _run_args(*args: str) -> list[str]:
    return inject_argv(*POLL, *args)


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _barrier(inject_pid: int, child: SignalChild, pid: int) -> None:
    """Send USR2 through inject and wait until the child has it: every action inject
    decided before this point has reached the child by now (one loop, in order)."""
    os.kill(inject_pid, signal.SIGUSR2)
    child.wait_signal(pid, "USR2")


# --- restart, signal, none ---------------------------------------------------------------


def test_new_version_rewrites_file_atomically_and_restarts_child(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """A new KV version replaces the file in one rename (0600 kept) and restarts the child with the new env value."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/app"
    old, new = secret_value(), secret_value()
    bao.kv_put(path, password=old)
    padding = "padding line to make a partial write visible\n" * 20000
    write(tmp_path / "app.j2", padding + f"{{{{ secret('{path}').password }}}}\n")
    out = tmp_path / "out" / "app.txt"
    argv = _run_args("-t", "app.j2:out/app.txt", "-e", f"APP_PASSWORD=vault:{path}#password")
    argv += ["--", *child.argv("APP_PASSWORD")]
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        first = child.wait_starts(1)[0]
        assert first["env"]["APP_PASSWORD"] == old
        inode = out.stat().st_ino
        whole = ((padding + old + "\n").encode(), (padding + new + "\n").encode())
        torn: list[int] = []
        stop = threading.Event()

        def read_constantly() -> None:
            while not stop.is_set():
                data = out.read_bytes()
                if data not in whole:
                    torn.append(len(data))

        reader = threading.Thread(target=read_constantly, daemon=True)
        reader.start()
        try:
            bao.kv_put(path, password=new)
            second = child.wait_starts(2)[1]
        finally:
            stop.set()
            reader.join(timeout=5)
        assert second["env"]["APP_PASSWORD"] == new
        assert second["pid"] != first["pid"]
        assert child.signals(first["pid"]) == ["TERM"]
        assert not alive(first["pid"])
        assert out.read_text() == padding + new + "\n"
        assert torn == [], "a reader saw a partial file"
        assert out.stat().st_ino != inode
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        assert temp_files(out.parent) == []
        assert inject.lines("v1 -> v2")
        assert inject.lines(f"restarting child pid {first['pid']}")


@pytest.mark.parametrize(
    ("options", "expected"), [((), "HUP"), (("--reload-signal", "USR1"), "USR1")], ids=["HUP", "USR1"]
)
def test_on_change_signal_reloads_same_child_on_file_change(
    bao: Bao, prefix: str, tmp_path: Path, options: tuple[str, ...], expected: str
) -> None:
    """`--on-change signal`: a file-only change sends the reload signal to the same child, no restart."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/file"
    secret_template(bao, path, tmp_path, "f.j2")
    argv = _run_args("--on-change", "signal", *options, "-t", "f.j2:f.txt", "--", *child.argv())
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids):
        pid = child.wait_starts(1)[0]["pid"]
        new = secret_value()
        bao.kv_put(path, v=new)
        child.wait_signal(pid, expected)
        assert (tmp_path / "f.txt").read_text() == new
        assert child.signals(pid) == [expected]
        assert child.pids() == [pid]


def test_on_change_signal_still_restarts_for_env_change(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`--on-change signal`: an env value change restarts the child (a signal cannot change its env)."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/env"
    bao.kv_put(path, v=secret_value())
    argv = _run_args("--on-change", "signal", "-e", f"APP_V=vault:{path}#v", "--", *child.argv("APP_V"))
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids):
        pid = child.wait_starts(1)[0]["pid"]
        new = secret_value()
        bao.kv_put(path, v=new)
        second = child.wait_starts(2)[1]
        assert second["env"]["APP_V"] == new
        assert child.signals(pid) == ["TERM"]


def test_on_change_none_rewrites_file_and_leaves_child_alone(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`--on-change none`: the file is rewritten and the child gets no signal and keeps running."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/file"
    secret_template(bao, path, tmp_path, "f.j2")
    argv = _run_args("--on-change", "none", "-t", "f.j2:f.txt", "--", *child.argv())
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        pid = child.wait_starts(1)[0]["pid"]
        new = secret_value()
        bao.kv_put(path, v=new)
        wait_for(lambda: _text(tmp_path / "f.txt") == new, timeout_s=5, what="the file rewritten")
        _barrier(inject.pid, child, pid)
        assert child.signals(pid) == ["USR2"]
        assert child.pids() == [pid]


def test_restart_escalates_to_sigkill_after_kill_timeout(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A child that ignores TERM is SIGKILLed after `--kill-timeout` and started again with the new env."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/env"
    bao.kv_put(path, v=secret_value())
    argv = _run_args("--kill-timeout", "500ms", "-e", f"APP_V=vault:{path}#v")
    argv += ["--", *child.argv("APP_V", ignore_term=True)]
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        pid = child.wait_starts(1)[0]["pid"]
        new = secret_value()
        bao.kv_put(path, v=new)
        child.wait_signal(pid, "TERM")
        assert alive(pid), "the child ignores TERM, so it must still be running here"
        second = child.wait_starts(2)[1]
        assert second["env"]["APP_V"] == new
        assert not alive(pid)
        assert inject.lines(f"child pid {pid} still running after 0.5s; sending SIGKILL")


# --- check command and per-template commands ---------------------------------------------


def test_failing_check_restores_previous_file_and_leaves_child(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A failing `[child] check` puts the previous file back and the child is neither signalled nor restarted."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/conf"
    good = secret_value("good")
    bao.kv_put(path, word=good)
    out, seen = tmp_path / "out.txt", tmp_path / "seen"
    write(tmp_path / "c.j2", f"word={{{{ secret('{path}').word }}}}\n")
    write(
        tmp_path / "inject.toml",
        f'[child]\ncheck = "cat {out} >> {seen}; grep -q good {out}"\n\n'
        '[[template]]\nsource = "c.j2"\ndestination = "out.txt"\n',
    )
    argv = _run_args("-c", "inject.toml", "--", *child.argv())
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        pid = child.wait_starts(1)[0]["pid"]
        bad = secret_value("bad")
        bao.kv_put(path, word=bad)
        inject.wait_log("check command failed")  # logged just before the restore
        wait_for(lambda: out.read_text() == f"word={good}\n", timeout_s=5, what="the previous file restored")
        assert seen.read_text() == f"word={bad}\n", "the check ran on the new file"
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        _barrier(inject.pid, child, pid)
        assert child.signals(pid) == ["USR2"]
        assert child.pids() == [pid]

        better = secret_value("good")
        bao.kv_put(path, word=better)
        child.wait_starts(2)
        assert out.read_text() == f"word={better}\n"
        assert child.signals(pid) == ["USR2", "TERM"]


def test_template_command_runs_only_for_the_file_that_changed(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A `[[template]] command` runs after its own file changed and not when another file changed."""
    child = SignalChild.create(tmp_path)
    path_a, path_b = f"{prefix}/a", f"{prefix}/b"
    bao.kv_put(path_a, v=secret_value())
    bao.kv_put(path_b, v=secret_value())
    write(tmp_path / "a.j2", f"{{{{ secret('{path_a}').v }}}}")
    write(tmp_path / "b.j2", f"{{{{ secret('{path_b}').v }}}}")
    marker_a, marker_b = tmp_path / "marker-a", tmp_path / "marker-b"
    write(
        tmp_path / "inject.toml",
        f'[[template]]\nsource = "a.j2"\ndestination = "a.txt"\ncommand = "echo ran >> {marker_a}"\n\n'
        f'[[template]]\nsource = "b.j2"\ndestination = "b.txt"\ncommand = "echo ran >> {marker_b}"\n',
    )
    argv = _run_args("-c", "inject.toml", "--", *child.argv())
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids):
        child.wait_starts(1)
        before_a, before_b = _count_lines(marker_a), _count_lines(marker_b)
        new = secret_value()
        bao.kv_put(path_a, v=new)
        child.wait_starts(2)  # the restart comes after the template commands
        assert (tmp_path / "a.txt").read_text() == new
        assert _count_lines(marker_a) == before_a + 1
        assert _count_lines(marker_b) == before_b


def _count_lines(path: Path) -> int:
    text = _text(path)
    return len(text.splitlines()) if text else 0


def test_template_command_over_its_timeout_is_killed_and_logged(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """A template command that outlives `command_timeout` is killed, logged, and the child is still told."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/a"
    secret_template(bao, path, tmp_path)
    pidfile = tmp_path / "command.pid"
    write(
        tmp_path / "inject.toml",
        '[[template]]\nsource = "a.j2"\ndestination = "a.txt"\n'
        f'command = "echo $$ > {pidfile}; exec sleep 30"\ncommand_timeout = "300ms"\n',
    )
    argv = _run_args("-c", "inject.toml", "--", *child.argv())
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)
        bao.kv_put(path, v=secret_value())
        line = inject.wait_log("timed out after 0.3s; killing it")[0]
        assert str(tmp_path / "a.txt") in line
        command_pid = int(wait_for(lambda: _text(pidfile), what="the command's pid").strip())
        wait_for(lambda: not alive(command_pid), timeout_s=3, what="the timed-out command gone")
        child.wait_starts(2)


# --- template edits and broken re-renders -----------------------------------------------


def test_template_source_edit_rerenders(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """Editing a template source re-renders it, both for an atomic replace and for an in-place write."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/a"
    value = secret_value()
    bao.kv_put(path, v=value)
    source, out = tmp_path / "tpl" / "a.j2", tmp_path / "a.txt"
    write(source, f"one {{{{ secret('{path}').v }}}}")
    argv = inject_argv("--poll-interval", "1h", "-t", "tpl/a.j2:a.txt", "--", *child.argv())
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids):
        child.wait_starts(1)
        assert out.read_text() == f"one {value}"

        staged = source.with_name("a.j2.new")
        staged.write_text(f"two {{{{ secret('{path}').v }}}}")
        os.replace(staged, source)
        wait_for(lambda: _text(out) == f"two {value}", timeout_s=5, what="re-render after os.replace")

        source.write_text(f"three {{{{ secret('{path}').v }}}}")
        wait_for(lambda: _text(out) == f"three {value}", timeout_s=5, what="re-render after in-place write")


def test_broken_rerender_keeps_last_good_file_and_others_proceed(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """A template whose key vanished keeps its last good file, logs one error naming it, and others still update."""
    child = SignalChild.create(tmp_path)
    path_a, path_b = f"{prefix}/a", f"{prefix}/b"
    good_a = secret_value()
    bao.kv_put(path_a, password=good_a)
    bao.kv_put(path_b, token=secret_value())
    write(tmp_path / "broken.j2", f"{{{{ secret('{path_a}').password }}}}")
    write(tmp_path / "fine.j2", f"{{{{ secret('{path_b}').token }}}}")
    argv = _run_args("--log-level", "debug", "-t", "broken.j2:a.txt", "-t", "fine.j2:b.txt")
    argv += ["--", *child.argv()]
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)
        bao.kv_put(path_a, other=secret_value())
        error = inject.wait_log("has no key 'password'")[0]
        assert "template 'broken.j2'" in error
        assert (tmp_path / "a.txt").read_text() == good_a

        new_b = secret_value()
        bao.kv_put(path_b, token=new_b)
        wait_for(lambda: _text(tmp_path / "b.txt") == new_b, timeout_s=5, what="the other file updated")

        bao.kv_put(path_a, other=secret_value())  # fails again in the same way: no new line
        inject.wait_log(f"{path_a} v2 -> v3")
        _barrier(inject.pid, child, child.pids()[-1])
        polled = len(inject.lines(f"{path_a} v"))
        inject.wait_log(f"{path_a} v", count=polled + 3)  # and three more polls
        assert len(inject.lines("has no key 'password'")) == 1
        assert (tmp_path / "a.txt").read_text() == good_a


def test_template_edited_to_fail_at_render_logs_one_error_and_nothing_else(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """A template source edited, while `inject watch` or `inject -- cmd` runs, to name a key
    the secret lacks: one error line per edit, no "t.j2 changed; output unchanged" after it
    (issue 27: the pair was logged, and twice for an edit right after the start); the last
    good file is kept, and fixing the source renders it."""
    path = f"{prefix}/app"
    value = secret_value()
    bao.kv_put(path, v=value)
    child = SignalChild.create(tmp_path)
    error = f"template 't.j2' line 1: secret '{path}' has no key 'missing'"
    source, out = tmp_path / "t.j2", tmp_path / "t.txt"
    for head, tail in ((["watch"], []), ([], ["--", *child.argv()])):
        write(source, f"v={{{{ secret('{path}').v }}}}\n")
        argv = inject_argv(*head, "--log-level", "debug", *POLL, "-t", "t.j2:t.txt", *tail)
        ready = "wrote " if head else "started "
        with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids, ready=ready) as inject:

            def settled(errors: int) -> None:
                """``errors`` error lines, then five more polls (past the reconcile pass, 1 s
                after the start, that also sees an early edit): still ``errors``, nothing else."""
                inject.wait_log(error, count=errors, timeout_s=10)
                polls = len(inject.lines(f"read {path} v1"))
                inject.wait_log(f"read {path} v1", count=polls + 5, timeout_s=10)
                assert len(inject.lines(error)) == errors, inject.stderr()
                assert inject.lines("unchanged") == [], inject.stderr()
                assert out.read_text() == f"v={value}\n"

            source.write_text(f"v={{{{ secret('{path}').missing }}}}\n")  # right after the start
            settled(1)
            source.write_text(f"v={{{{ secret('{path}').missing }}}}!\n")  # fails the same way
            settled(2)
            source.write_text(f"w={{{{ secret('{path}').v }}}}\n")
            wait_for(lambda: _text(out) == f"w={value}\n", timeout_s=10, what="the fixed template rendered")
            assert len(inject.lines(error)) == 2
            assert [line for line in inject.stderr().splitlines() if "error" in line] == inject.lines(error)


# --- debounce ----------------------------------------------------------------------------


def test_burst_of_versions_gives_one_restart(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """With `[watch] wait = {min = "1s", max = "3s"}`, three quick new versions give one restart with the last value."""
    child = SignalChild.create(tmp_path)
    path = f"{prefix}/env"
    bao.kv_put(path, v=secret_value())
    write(tmp_path / "inject.toml", '[watch]\nwait = { min = "1s", max = "3s" }\n')
    argv = _run_args("-c", "inject.toml", "--log-level", "debug", "-e", f"APP_V=vault:{path}#v")
    argv += ["--", *child.argv("APP_V")]
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)
        values = [secret_value() for _ in range(3)]
        for n, value in enumerate(values):
            if n:  # each version is seen on its own poll
                inject.wait_log(" -> v", count=n)
            bao.kv_put(path, v=value)
        second = child.wait_starts(2)[1]
        assert second["env"]["APP_V"] == values[-1]
        assert len(inject.lines(" -> v")) >= 2, "the burst was seen as more than one change"
        polled = len(inject.lines(f"{path.split('/', 1)[1]} v"))
        inject.wait_log(f"{path.split('/', 1)[1]} v", count=polled + 4)  # well past wait.min
        assert len(child.starts()) == 2


# --- --user -------------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="--user needs root")
def test_user_runs_child_as_that_user_and_owns_files(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`--user nobody`: the child runs with nobody's uid/gid and the rendered file is owned by it, still 0600."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    path = f"{prefix}/a"
    secret_template(bao, path, tmp_path)
    result = run_inject(
        "--user", "nobody", "-t", "a.j2:out/a.txt", "--", "sh", "-c", "id -u; id -g",
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(nobody.pw_uid), str(nobody.pw_gid)]
    info = (tmp_path / "out" / "a.txt").stat()
    assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(info.st_mode) == 0o600
