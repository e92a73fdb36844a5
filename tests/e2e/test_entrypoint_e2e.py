"""Entrypoint details: a plain PID 1 with nothing to render, the user switch's HOME,
commands after the first render, and a token revoked from outside."""

from __future__ import annotations

import os
from pathlib import Path

from tests.e2e.auth_helpers import approle_in, kv_read, login_env, make_approle, reader_policy
from tests.e2e.helpers_e2e import write
from tests.e2e.supervise_helpers import SignalChild
from tests.support import Bao, inject_argv, inject_env, run_inject, secret_value, supervise


def _no_server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))}
    env["HOME"] = "/nonexistent-home"
    return env


def test_nothing_to_render_needs_no_server_or_token(tmp_path: Path) -> None:
    """With no templates and no references, inject is a plain PID 1: no token, no server, exit code passes."""
    result = run_inject("--", "sh", "-c", "exit 5", env=_no_server_env(), cwd=tmp_path, timeout_s=20)
    assert result.returncode == 5, result.stderr
    assert "error" not in result.stderr


def test_user_switch_sets_home_user_and_logname(bao: Bao, tmp_path: Path) -> None:
    """`--user nobody` gives the child nobody's HOME, USER and LOGNAME (as gosu does)."""
    result = run_inject(
        "--user", "nobody", "--", "sh", "-c", 'printf "%s %s %s" "$HOME" "$USER" "$LOGNAME"',
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "/nonexistent nobody nobody"


def test_template_command_runs_after_first_render_even_with_no_watch(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """A template's command runs once the first render wrote its file, before the command is exec'd."""
    bao.kv_put(f"{prefix}/app", v=secret_value())
    write(tmp_path / "a.j2", f"{{{{ secret('{prefix}/app').v }}}}")
    write(
        tmp_path / "inject.toml",
        f'[[template]]\nsource = "a.j2"\ndestination = "a.txt"\ncommand = "echo ran > {tmp_path}/marker"\n',
    )
    result = run_inject("--no-watch", "--", "cat", "marker", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ran\n"


def test_token_revoked_from_outside_logs_in_again_and_keeps_updating(
    bao: Bao, approle_mount: str, prefix: str, tmp_path: Path
) -> None:
    """When every token of the AppRole is revoked, inject logs in again and the next change still arrives."""
    path = f"{prefix}/app"
    bao.kv_put(path, v=secret_value())
    approle_in(tmp_path, make_approle(bao, approle_mount, reader_policy(bao, kv_read(path))))
    child = SignalChild.create(tmp_path)
    argv = [
        *inject_argv("--poll-interval", "300ms", "-e", f"APP_V=vault:{path}#v"),
        "--",
        *child.argv("APP_V"),
    ]
    with supervise(argv, env=login_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)
        bao.api("PUT", f"sys/leases/revoke-prefix/auth/{approle_mount}/login")
        inject.wait_log("no longer accepts inject's token; logged in again", timeout_s=5)
        new = secret_value()
        bao.kv_put(path, v=new)
        assert child.wait_starts(2, timeout_s=5)[1]["env"]["APP_V"] == new
