"""`inject dev` (its own embedded OpenBao, seeded from a file) and `--version`."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.e2e.helpers_e2e import error_line, inject_argv, refuses_connections, write
from tests.support import record_output, run_inject, secret_value
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
    result = run_inject(
        "dev",
        "--secrets",
        "secrets.toml",
        "-c",
        "app.toml",
        "--",
        "sh",
        "-c",
        'printf "%s|%s" "$OPENAI_API_KEY" "${VAULT_TOKEN:-none}"',
        env=_dev_env(),
        cwd=tmp_path,
        timeout_s=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{api_key}|none"
    assert (tmp_path / "out" / "db.txt").read_text() == password
    found = re.search(r"dev server at http://127\.0\.0\.1:(\d+)", result.stderr)
    assert found, result.stderr
    assert refuses_connections(int(found.group(1)))


def test_dev_passes_the_child_exit_code(tmp_path: Path) -> None:
    """Under `inject dev` the child's exit code is still inject's exit code."""
    write(tmp_path / "secrets.toml", '["secret/app"]\nkey = "dev-only"\n')
    result = run_inject(
        "dev",
        "--secrets",
        "secrets.toml",
        "-e",
        "KEY=vault:secret/app#key",
        "--",
        "sh",
        "-c",
        'test "$KEY" = dev-only && exit 9',
        env=_dev_env(),
        cwd=tmp_path,
        timeout_s=60,
    )
    assert result.returncode == 9, result.stderr


def test_dev_leaves_the_users_vault_token_alone(tmp_path: Path) -> None:
    """`inject dev` neither overwrites ~/.vault-token nor needs a writable HOME."""
    home = tmp_path / "home"
    token_file = write(home / ".vault-token", "users-own-token\n")
    write(tmp_path / "secrets.toml", '["secret/app"]\nkey = "dev-only"\n')
    env = {**_dev_env(), "HOME": str(home)}
    result = run_inject(
        "dev",
        "--secrets",
        "secrets.toml",
        "-e",
        "KEY=vault:secret/app#key",
        "--",
        "sh",
        "-c",
        'printf %s "$KEY"',
        env=env,
        cwd=tmp_path,
        timeout_s=60,
    )
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
    result = subprocess.run(
        inject_argv("--version"),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        check=False,
    )
    record_output(result.stderr)
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout
