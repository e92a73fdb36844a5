"""Masked output (``[child] mask_output``) against the real inject and OpenBao: the child's
stdout and stderr pass through inject with every secret value, and its base64 and URL
forms, replaced; exit codes, signals and lines in order as without it."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from urllib.parse import quote

from tests.e2e.helpers_e2e import error_line, write
from tests.e2e.supervise_helpers import SignalChild
from tests.support import Bao, forbid, inject_argv, inject_env, record_output, run_inject, supervise, wait_for
from vault_inject.errors import EXIT_USAGE

CONCEALED = "<concealed by inject>"
MASKED = {"INJECT_MASK_OUTPUT": "true"}


def awkward_value() -> str:
    """A unique value whose base64 and URL forms differ from it; all three are forbidden in
    anything inject prints."""
    value = f"p@ss/{secrets.token_hex(8)}+w rd"
    for text in (value, base64.b64encode(value.encode()).decode(), quote(value, safe="")):
        forbid(text)
    return value


def printed(result_stdout: str, result_stderr: str) -> None:
    """Put the child's output (through inject) into the session's secrecy check too."""
    record_output(result_stdout)
    record_output(result_stderr)


def test_values_and_their_encodings_are_concealed_and_the_exit_code_passes(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """The value on stdout and stderr, base64'd and URL-encoded: each replaced, the lines
    around it intact and in order, and the child's exit code is inject's."""
    value = awkward_value()
    bao.kv_put(f"{prefix}/app", pw=value)
    quote_it = f'{sys.executable} -c \'import os, urllib.parse; print(urllib.parse.quote(os.environ["PW"], safe=""))\''
    script = (
        'echo "first"; echo "pw=$PW"; printf %s "$PW" | base64; '
        f'{quote_it}; echo "err:$PW" >&2; echo "last"; exit 7'
    )
    result = run_inject(
        "-e", f"PW=vault:{prefix}/app#pw", "--", "sh", "-c", script,
        env=inject_env(bao, MASKED), cwd=tmp_path,
    )  # fmt: skip
    printed(result.stdout, result.stderr)
    assert result.returncode == 7, result.stderr
    assert result.stdout.splitlines() == ["first", f"pw={CONCEALED}", CONCEALED, CONCEALED, "last"]
    assert f"err:{CONCEALED}" in result.stderr.splitlines()


def test_a_value_split_across_two_writes_is_still_concealed(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """The child writes the first half, waits, then the rest: inject holds only the half
    (what came before it is written at once) and replaces the whole (``--mask-output``)."""
    value = awkward_value()
    bao.kv_put(f"{prefix}/app", pw=value)
    code = (
        "import os, sys, time\n"
        "pw = os.environ['PW']\n"
        "sys.stdout.write('before ' + pw[:7]); sys.stdout.flush()\n"
        "time.sleep(0.5)\n"
        "sys.stdout.write(pw[7:] + ' after\\n'); sys.stdout.flush()\n"
    )
    write(tmp_path / "halves.py", code)
    result = run_inject(
        "--mask-output", "-e", f"PW=vault:{prefix}/app#pw", "--", sys.executable, "halves.py",
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    printed(result.stdout, result.stderr)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"before {CONCEALED} after\n"


def test_output_is_not_held_back_and_signals_still_reach_the_child(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """A line with no value shows while the child runs (nothing waits for more output), and
    a SIGTERM to inject reaches the child, whose exit code is inject's."""
    value = awkward_value()
    bao.kv_put(f"{prefix}/app", pw=value)
    script = "trap 'echo \"got TERM $PW\"; exit 42' TERM; echo ready; while :; do sleep 0.05; done"
    argv = inject_argv("-e", f"PW=vault:{prefix}/app#pw", "--", "sh", "-c", script)
    with supervise(argv, env=inject_env(bao, MASKED), cwd=tmp_path) as running:
        wait_for(lambda: "ready\n" in running.stdout(), timeout_s=10, what="the child's first line")
        code = running.stop(signal.SIGTERM, timeout_s=10)
        out = running.stdout()
    printed(out, running.stderr())
    assert code == 42, running.stderr()
    assert out == f"ready\ngot TERM {CONCEALED}\n"


def test_dev_conceals_by_default_and_can_be_told_not_to(tmp_path: Path) -> None:
    """`inject dev` masks the child's output unless mask_output is false."""
    value = awkward_value()
    write(tmp_path / "secrets.toml", f'["secret/app"]\npw = "{value}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))}
    env["HOME"] = "/nonexistent-home"
    argv = ("dev", "--secrets", "secrets.toml", "-e", "PW=vault:secret/app#pw", "--", "sh", "-c")
    masked = run_inject(*argv, 'printf "%s|" "$PW"; exit 3', env=env, cwd=tmp_path, timeout_s=60)
    printed(masked.stdout, masked.stderr)
    assert masked.returncode == 3, masked.stderr
    assert masked.stdout == f"{CONCEALED}|"
    plain = run_inject(
        *argv, 'printf "%s" "${#PW}"', env={**env, "INJECT_MASK_OUTPUT": "false"}, cwd=tmp_path, timeout_s=60
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == str(len(value))  # the length only: the value itself stays forbidden


def test_mask_output_with_no_watch_is_a_usage_error(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """With --no-watch inject is replaced by the command, so nothing could conceal its output:
    one line saying so, exit 2, and the command never runs."""
    bao.kv_put(f"{prefix}/app", pw=awkward_value())
    result = run_inject(
        "--no-watch", "-e", f"PW=vault:{prefix}/app#pw", "--", "sh", "-c", "echo ran",
        env=inject_env(bao, MASKED), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == EXIT_USAGE
    assert "no_watch and mask_output" in error_line(result)
    assert "ran" not in result.stdout


def test_a_rotated_value_is_concealed_after_the_restart(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A new KV version restarts the child with the new value: the relay (which outlives the
    first child) conceals the new value too."""
    first, second = awkward_value(), awkward_value()
    bao.kv_put(f"{prefix}/app", pw=first)
    script = 'echo "pw=$PW"; while :; do sleep 0.05; done'
    argv = inject_argv("--poll-interval", "1s", "-e", f"PW=vault:{prefix}/app#pw", "--", "sh", "-c", script)
    with supervise(argv, env=inject_env(bao, MASKED), cwd=tmp_path) as running:
        wait_for(lambda: "pw=" in running.stdout(), timeout_s=10, what="the first child's line")
        bao.kv_put(f"{prefix}/app", pw=second)
        wait_for(lambda: running.stdout().count("pw=") == 2, timeout_s=20, what="the restarted child's line")
        out = running.stdout()
    printed(out, running.stderr())
    assert out == f"pw={CONCEALED}\npw={CONCEALED}\n"


def test_signals_are_forwarded_promptly_while_the_readers_wait(bao: Bao, tmp_path: Path) -> None:
    """The child alone (no secrets) with masking on: each SIGUSR1 to inject reaches the child
    well within the loop's one-second idle wake, with the readers sitting in read()."""
    child = SignalChild.create(tmp_path)
    argv = inject_argv("--", *child.argv())
    with supervise(argv, env=inject_env(bao, MASKED), cwd=tmp_path) as running:
        [start] = child.wait_starts(1)
        for count in range(1, 4):
            sent = time.monotonic()
            running.send_signal(signal.SIGUSR1)
            wait_for(
                lambda n=count: child.signals(start["pid"]).count("USR1") >= n,
                timeout_s=5,
                what=f"SIGUSR1 #{count} in the child",
            )
            assert time.monotonic() - sent < 0.9
        assert running.stop(signal.SIGTERM, timeout_s=10) == 0  # the child's exit on TERM
