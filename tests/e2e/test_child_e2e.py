"""The child process under a real inject: exit codes, signal forwarding, kill timeout,
exec in place, commands that cannot run, and stdin passing through."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import error_line, read_lines, write
from tests.support import Bao, inject_argv, inject_env, run_inject, secret_value, supervise, wait_for

# A child that notes every HUP/USR1/USR2/TERM it receives, one name per line;
# TERM makes it exit with code 3. It touches the ready file once its handlers are in place.
SIGNAL_RECORDER = """\
import os, signal, sys, time

log_path, ready_path = sys.argv[1], sys.argv[2]

def note(signum, frame):
    with open(log_path, "a") as log:
        log.write(signal.Signals(signum).name + "\\n")
    if signum == signal.SIGTERM:
        os._exit(3)

for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
    signal.signal(sig, note)
open(ready_path, "w").close()
while True:
    time.sleep(0.05)
"""

# A child that ignores TERM (so only SIGKILL can stop it), then says it is ready.
TERM_IGNORER = """\
import signal, sys, time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").close()
while True:
    time.sleep(0.05)
"""


@pytest.mark.parametrize("code", [0, 7])
def test_child_exit_code_passes_through(bao: Bao, tmp_path: Path, code: int) -> None:
    """inject exits with the child's own exit code."""
    result = run_inject("--", "sh", "-c", f"exit {code}", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == code, result.stderr


@pytest.mark.parametrize(("sig", "expected"), [("TERM", 143), ("KILL", 137)])
def test_child_death_by_signal_gives_128_plus_n(bao: Bao, tmp_path: Path, sig: str, expected: int) -> None:
    """A child killed by signal N makes inject exit 128+N, like a shell."""
    result = run_inject("--", "sh", "-c", f"kill -{sig} $$", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == expected, result.stderr


def test_signals_are_forwarded_to_the_child(bao: Bao, tmp_path: Path) -> None:
    """HUP, USR1, USR2 and TERM sent to inject reach the child; TERM's exit code comes back."""
    script = write(tmp_path / "recorder.py", SIGNAL_RECORDER)
    log_path, ready = tmp_path / "signals.log", tmp_path / "ready"
    argv = inject_argv("--", sys.executable, str(script), str(log_path), str(ready))
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, ready=None) as process:
        wait_for(ready.exists, timeout_s=10, what="child ready")
        expected: list[str] = []
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
            process.send_signal(sig)
            expected.append(sig.name)
            wait_for(lambda: read_lines(log_path) == expected, timeout_s=5, what=sig.name)
        code, _, stderr = process.finish()
    assert code == 3, stderr
    assert read_lines(log_path) == ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGTERM"]


def test_kill_timeout_ends_a_child_that_ignores_term(bao: Bao, tmp_path: Path) -> None:
    """With `--kill-timeout 1`, a child ignoring TERM is SIGKILLed and inject exits 137."""
    script = write(tmp_path / "ignorer.py", TERM_IGNORER)
    ready = tmp_path / "ready"
    argv = inject_argv("--kill-timeout", "1", "--", sys.executable, str(script), str(ready))
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, ready=None) as process:
        wait_for(ready.exists, timeout_s=10, what="child ready")
        sent_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code, _, stderr = process.finish(timeout_s=10)
    elapsed_s = time.monotonic() - sent_at
    assert code == 137, stderr
    assert 0.8 <= elapsed_s < 5, elapsed_s


def test_no_watch_execs_in_place(bao: Bao, tmp_path: Path) -> None:
    """`--no-watch` replaces inject with the command: the child's pid is inject's pid."""
    argv = inject_argv(
        "--no-watch", "--", sys.executable, "-c", "import os, sys; print(os.getpid()); sys.exit(5)"
    )
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, ready=None) as process:
        code, stdout, stderr = process.finish()
    assert code == 5, stderr
    assert int(stdout) == process.pid


def test_no_watch_still_gets_resolved_env(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`--no-watch` hands the exec'd command the resolved references and no token."""
    password = secret_value()
    bao.kv_put(f"{prefix}/app", password=password)
    result = run_inject(
        "--no-watch", "-e", f"PW=vault:{prefix}/app#password", "--", "sh", "-c",
        'printf "%s|%s" "$PW" "${VAULT_TOKEN:-none}"',
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{password}|none"


@pytest.mark.parametrize("no_watch", [False, True])
def test_command_not_found_is_127(bao: Bao, tmp_path: Path, no_watch: bool) -> None:
    """A command that does not exist exits 127 with a message naming it."""
    flags = ["--no-watch"] if no_watch else []
    result = run_inject(*flags, "--", "no-such-command-e2e", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 127
    assert "no-such-command-e2e" in error_line(result)


@pytest.mark.parametrize("no_watch", [False, True])
def test_command_not_executable_is_126(bao: Bao, tmp_path: Path, no_watch: bool) -> None:
    """A file without execute permission exits 126 with a message naming it."""
    script = write(tmp_path / "not-executable.sh", "#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    flags = ["--no-watch"] if no_watch else []
    result = run_inject(*flags, "--", str(script), env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 126
    assert "not-executable.sh" in error_line(result)


def test_stdin_passes_through_to_the_child(bao: Bao, tmp_path: Path) -> None:
    """What is piped into inject is what the child reads on stdin."""
    result = run_inject("--", "cat", env=inject_env(bao), cwd=tmp_path, input_text="line one\nline two\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "line one\nline two\n"
