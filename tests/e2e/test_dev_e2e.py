"""`inject dev` (its own embedded OpenBao, seeded from a file) and `--version`."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path

import psutil

from tests.e2e.helpers_e2e import error_line, refuses_connections, write
from tests.support import forbid, inject_argv, record_output, run_inject, secret_value, wait_for
from vault_inject import __version__


def _dev_env() -> dict[str, str]:
    """inject's environment with no server or token of its own: `inject dev` provides both."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))}
    env["HOME"] = "/nonexistent-home"
    return env


def test_dev_serves_seeded_secrets_and_stops_the_server(tmp_path: Path) -> None:
    """The child gets values from the secrets file; the dev server is gone once inject exits."""
    password, api_key = secret_value(), secret_value("key")
    write(
        tmp_path / "secrets.toml",
        f'["secret/infrastructure/postgres"]\nusername = "app"\npassword = "{password}"\n\n'
        f'["secret/external/openai"]\napi_key = "{api_key}"\n',
    )
    write(tmp_path / "db.j2", "{{ secret('secret/infrastructure/postgres').password }}")
    write(
        tmp_path / "app.toml",
        '[[template]]\nsource = "db.j2"\ndestination = "out/db.txt"\n'
        '[env]\nOPENAI_API_KEY = "vault:secret/external/openai#api_key"\n',
    )
    unmasked = {**_dev_env(), "INJECT_MASK_OUTPUT": "false"}  # the value itself is what this checks
    result = run_inject(
        "dev", "--secrets", "secrets.toml", "-c", "app.toml", "--", "sh", "-c",
        'printf "%s|%s" "$OPENAI_API_KEY" "${VAULT_TOKEN:-none}"',
        env=unmasked, cwd=tmp_path, timeout_s=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{api_key}|none"
    assert (tmp_path / "out" / "db.txt").read_text() == password
    found = re.search(r"dev server at http://127\.0\.0\.1:(\d+)", result.stderr)
    assert found, result.stderr
    assert refuses_connections(int(found.group(1)))


def _dev_with_key(tmp_path: Path, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`inject dev` seeding secret/app#key = "dev-only", with KEY from it, running ``sh -c script``."""
    write(tmp_path / "secrets.toml", '["secret/app"]\nkey = "dev-only"\n')
    args = ["dev", "--secrets", "secrets.toml", "-e", "KEY=vault:secret/app#key", "--", "sh", "-c", script]
    return run_inject(*args, env=env, cwd=tmp_path, timeout_s=60)


def test_dev_passes_the_child_exit_code(tmp_path: Path) -> None:
    """Under `inject dev` the child's exit code is still inject's exit code."""
    result = _dev_with_key(tmp_path, 'test "$KEY" = dev-only && exit 9', _dev_env())
    assert result.returncode == 9, result.stderr


def test_dev_leaves_the_users_vault_token_alone(tmp_path: Path) -> None:
    """`inject dev` neither overwrites ~/.vault-token nor needs a writable HOME."""
    home = tmp_path / "home"
    token_file = write(home / ".vault-token", "users-own-token\n")
    env = {**_dev_env(), "HOME": str(home), "INJECT_MASK_OUTPUT": "false"}  # the value is checked
    result = _dev_with_key(tmp_path, 'printf %s "$KEY"', env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "dev-only"
    assert token_file.read_text() == "users-own-token\n"
    assert sorted(p.name for p in home.iterdir()) == [".vault-token"]


def test_dev_bad_secrets_file_is_a_usage_error(tmp_path: Path) -> None:
    """A secrets file that is not valid TOML exits 2 naming the file, and no child runs."""
    write(tmp_path / "secrets.toml", '["secret/app"\nkey = "x"\n')
    marker = tmp_path / "child-ran"
    result = run_inject(
        "dev", "--secrets", "secrets.toml", "--", "touch", str(marker), env=_dev_env(), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "secrets.toml" in error_line(result)
    assert not marker.exists()


def test_dev_secrets_entry_must_be_a_table(tmp_path: Path) -> None:
    """A secrets file whose path maps to a plain value exits 2 naming the file and the path."""
    write(tmp_path / "secrets.toml", '"secret/app" = "not-a-table"\n')
    result = run_inject("dev", "--secrets", "secrets.toml", "--", "true", env=_dev_env(), cwd=tmp_path)
    assert result.returncode == 2
    line = error_line(result)
    assert "secrets.toml" in line
    assert "secret/app" in line


def test_version_option(tmp_path: Path) -> None:
    """`python -m vault_inject --version` prints the package version and exits 0."""
    result = run_inject("--version", env=os.environ, cwd=tmp_path, timeout_s=30)
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout


def _start_dev_with_sleeping_child(tmp_path: Path) -> subprocess.Popen[str]:
    """`inject dev` whose child writes ``ready`` then sleeps, with inject's stderr in a file."""
    write(tmp_path / "secrets.toml", '["secret/app"]\nkey = "dev-only"\n')
    with (tmp_path / "stderr").open("w") as stderr:
        return subprocess.Popen(
            inject_argv("dev", "--secrets", "secrets.toml", "--", "sh", "-c", "touch ready; exec sleep 60"),
            env=_dev_env(),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )


def _running_dev(tmp_path: Path, process: subprocess.Popen[str]) -> tuple[psutil.Process, Path]:
    """The bao server `inject dev` started, and its state directory (from inject's log)."""
    wait_for(lambda: (tmp_path / "ready").exists(), timeout_s=60, what="the dev child to start")
    found = re.search(r"token in (\S+)/token", (tmp_path / "stderr").read_text())
    assert found, (tmp_path / "stderr").read_text()
    servers = [p for p in psutil.Process(process.pid).children(recursive=True) if p.name() == "bao"]
    assert len(servers) == 1
    return servers[0], Path(found.group(1))


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _stop(process: subprocess.Popen[str], tmp_path: Path) -> None:
    """TERM a still-running inject dev and record what it printed."""
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=20)
    record_output((tmp_path / "stderr").read_text())


def _all_command_lines() -> list[bytes]:
    lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                lines.append(Path("/proc", entry, "cmdline").read_bytes())
    return lines


def test_dev_root_token_is_on_no_command_line(tmp_path: Path) -> None:
    """The dev server gets its root token from its environment: no /proc/*/cmdline holds it."""
    process = _start_dev_with_sleeping_child(tmp_path)
    try:
        server, state_dir = _running_dev(tmp_path, process)
        token = forbid((state_dir / "token").read_text().strip())
        assert token not in " ".join(server.cmdline()), "the root token is on the server's command line"
        assert not [line for line in _all_command_lines() if token.encode() in line], "token in a cmdline"
    finally:
        _stop(process, tmp_path)


def test_dev_server_dies_with_a_killed_inject_and_its_state_is_removed_next_start(tmp_path: Path) -> None:
    """After `kill -9` of inject dev its server exits at once; the next `inject dev` removes the
    token directory the killed run left behind."""
    process = _start_dev_with_sleeping_child(tmp_path)
    child = None
    try:
        server, state_dir = _running_dev(tmp_path, process)
        child = next(p for p in psutil.Process(process.pid).children() if p.name() == "sleep")
        process.kill()
        process.wait(timeout=10)
        wait_for(lambda: _gone(server), timeout_s=10, what="the dev server to exit with inject")
        assert (state_dir / "token").exists()  # nothing ran to remove it
    finally:
        _stop(process, tmp_path)
        if child is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
    again = run_inject("dev", "--secrets", "secrets.toml", "--", "true", env=_dev_env(), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert not state_dir.exists()
