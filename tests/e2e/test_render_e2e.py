"""Rendering against a real OpenBao: KV v1/v2 paths, versions, one read per path,
ambient references, config files, option precedence and token sources."""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import (
    PRINT_ENV_NAMES,
    closed_port,
    error_line,
    reader_token,
    write,
)
from tests.support import Bao, inject_env, run_inject, secret_value


@pytest.fixture
def kv1_mount(bao: Bao) -> Iterator[str]:
    """A fresh KV version 1 mount with a unique name, removed after the test."""
    mount = f"kv1-{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"sys/mounts/{mount}", json={"type": "kv", "options": {"version": "1"}})
    yield mount
    bao.api("DELETE", f"sys/mounts/{mount}")


def _render_one(bao: Bao, tmp_path: Path, template: str, *args: str) -> str:
    write(tmp_path / "t.j2", template)
    result = run_inject("render", "-t", "t.j2:out.txt", *args, env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return (tmp_path / "out.txt").read_text()


# --- KV paths and versions -------------------------------------------------------------


def test_kv2_path_as_typed_gets_data_segment(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`secret('secret/x')` on a KV v2 mount reads `secret/data/x` without the user typing it."""
    password = secret_value()
    bao.kv_put(f"{prefix}/app", password=password)
    out = _render_one(bao, tmp_path, f"p={{{{ secret('{prefix}/app').password }}}}")
    assert out == f"p={password}"


def test_kv2_full_api_path_also_works(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """The full API form `secret/data/...` reads the same KV v2 secret, in templates and refs."""
    password = secret_value()
    bao.kv_put(f"{prefix}/app", password=password)
    api_path = prefix.replace("secret/", "secret/data/", 1) + "/app"
    write(tmp_path / "t.j2", f"{{{{ secret('{api_path}').password }}}}")
    _renders_and_passes(bao, tmp_path, f"{api_path}", password)


def _renders_and_passes(bao: Bao, tmp_path: Path, path: str, password: str) -> None:
    """t.j2 renders ``password`` into out.txt, and ``PW=vault:PATH#password`` hands it to the child."""
    args = ["-t", "t.j2:out.txt", "-e", f"PW=vault:{path}#password", "--", "sh", "-c", 'printf %s "$PW"']
    result = run_inject(*args, env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == password
    assert (tmp_path / "out.txt").read_text() == password


def test_kv1_mount_is_read_as_is(bao: Bao, kv1_mount: str, tmp_path: Path) -> None:
    """A KV v1 mount is detected and read without a `data/` segment, by template and ref."""
    password = secret_value()
    bao.api("POST", f"{kv1_mount}/app", json={"password": password})
    write(tmp_path / "t.j2", f"{{{{ secret('{kv1_mount}/app').password }}}}")
    _renders_and_passes(bao, tmp_path, f"{kv1_mount}/app", password)


def test_version_suffix_pins_an_older_version(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`#KEY#1` and `secret(path, version=1)` read version 1 after version 2 was written."""
    old, new = secret_value("old"), secret_value("new")
    assert bao.kv_put(f"{prefix}/rotating", key=old) == 1
    assert bao.kv_put(f"{prefix}/rotating", key=new) == 2
    write(
        tmp_path / "t.j2",
        f"{{{{ secret('{prefix}/rotating', version=1).key }}}} {{{{ secret('{prefix}/rotating').key }}}}",
    )
    result = run_inject(
        "-t", "t.j2:out.txt", "-e", f"OLD=vault:{prefix}/rotating#key#1", "-e",
        f"NEW=vault:{prefix}/rotating#key", "--", "sh", "-c", 'printf "%s %s" "$OLD" "$NEW"',
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{old} {new}"
    assert (tmp_path / "out.txt").read_text() == f"{old} {new}"


def test_version_on_kv1_path_is_a_clean_error(bao: Bao, kv1_mount: str, tmp_path: Path) -> None:
    """A version asked of a KV v1 secret fails with one line naming the path, nothing run."""
    bao.api("POST", f"{kv1_mount}/app", json={"password": secret_value()})
    marker = tmp_path / "started"
    result = run_inject(
        "-e", f"PW=vault:{kv1_mount}/app#password#1", "--", "touch", str(marker),
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    line = error_line(result)
    assert f"{kv1_mount}/app" in line
    assert "version" in line
    assert not marker.exists()


# --- one read per distinct path --------------------------------------------------------


def _reads_of(audit_file: Path, api_path: str) -> int:
    count = 0
    for line in audit_file.read_text().splitlines():
        entry = json.loads(line)
        request = entry.get("request") or {}
        if (
            entry.get("type") == "request"
            and request.get("operation") == "read"
            and request.get("path") == api_path
        ):
            count += 1
    return count


def test_each_distinct_path_is_read_once_per_render(audited: tuple[Bao, Path], tmp_path: Path) -> None:
    """Two templates and two env refs on one path cause exactly one read request to the server."""
    bao, audit_log = audited
    prefix = f"secret/t-{uuid.uuid4().hex[:10]}"
    username, password = secret_value("user"), secret_value()
    bao.kv_put(f"{prefix}/infrastructure/postgres", username=username, password=password)
    path = f"{prefix}/infrastructure/postgres"
    write(tmp_path / "a.j2", f"{{{{ secret('{path}').username }}}}")
    write(tmp_path / "b.j2", f"{{{{ secret('{path}').password }}}}")
    result = run_inject(
        "-t", "a.j2:a.txt", "-t", "b.j2:b.txt", "-e", f"DB_USER=vault:{path}#username", "-e",
        f"DB_PASS=vault:{path}#password", "--", "sh", "-c", 'printf "%s %s" "$DB_USER" "$DB_PASS"',
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{username} {password}"
    assert (tmp_path / "a.txt").read_text() == username
    assert (tmp_path / "b.txt").read_text() == password
    assert _reads_of(audit_log, f"secret/data/{path.removeprefix('secret/')}") == 1


# --- ambient references, env templates and config files ---------------------------------


def test_ambient_references_reach_the_child_resolved(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """inject's own `vault:` and `bao:` env values are resolved for the child with no config."""
    username, password = secret_value("user"), secret_value()
    bao.kv_put(f"{prefix}/infrastructure/postgres", username=username, password=password)
    env = inject_env(
        bao,
        {
            "DB_PASS": f"vault:{prefix}/infrastructure/postgres#password",
            "DB_USER": f"bao:{prefix}/infrastructure/postgres#username",
            "PLAIN": "unchanged",
        },
    )
    result = run_inject(
        "--", "sh", "-c", 'printf "%s %s %s" "$DB_USER" "$DB_PASS" "$PLAIN"', env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{username} {password} unchanged"


def test_env_values_may_be_jinja_templates(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`-e` and config `[env]` values with `{{ }}` are rendered with secret() and env()."""
    username, password = secret_value("user"), secret_value()
    path = f"{prefix}/infrastructure/postgres"
    bao.kv_put(path, username=username, password=password)
    write(
        tmp_path / "inject.toml",
        f"[env]\nDSN = \"postgresql://{{{{ secret('{path}').username }}}}@{{{{ env('DB_HOST') }}}}/app\"\n",
    )
    result = run_inject(
        "-e", f"AUTH={{{{ secret('{path}').password | b64encode | b64decode }}}}", "--", "sh", "-c",
        'printf "%s|%s" "$DSN" "$AUTH"',
        env=inject_env(bao, {"DB_HOST": "db.internal"}), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"postgresql://{username}@db.internal/app|{password}"


def test_config_file_templates_and_env(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`-c FILE` with [[template]] (source and contents) and [env] renders files and child env."""
    api_key, password = secret_value("key"), secret_value()
    bao.kv_put(f"{prefix}/external/openai", api_key=api_key)
    bao.kv_put(f"{prefix}/infrastructure/redis", password=password)
    conf_dir = tmp_path / "conf"
    write(conf_dir / "redis.j2", f"password: {{{{ secret('{prefix}/infrastructure/redis').password }}}}\n")
    write(
        conf_dir / "app.toml",
        "[[template]]\n"
        'source = "redis.j2"\n'
        'destination = "out/redis.yml"\n'
        "[[template]]\n"
        f"contents = \"key={{{{ secret('{prefix}/external/openai').api_key }}}}\"\n"
        'destination = "out/key.txt"\n'
        "[env]\n"
        f'OPENAI_API_KEY = "vault:{prefix}/external/openai#api_key"\n',
    )
    result = run_inject(
        "-c", "conf/app.toml", "--", "sh", "-c", 'printf %s "$OPENAI_API_KEY"',
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == api_key
    # relative paths in the config file are relative to the file's directory
    assert (conf_dir / "out" / "redis.yml").read_text() == f"password: {password}\n"
    assert (conf_dir / "out" / "key.txt").read_text() == f"key={api_key}"


def test_env_address_beats_config_file(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A wrong `[vault] address` in the config file is overridden by VAULT_ADDR."""
    password = secret_value()
    bao.kv_put(f"{prefix}/app", password=password)
    write(
        tmp_path / "inject.toml",
        f'[vault]\naddress = "http://127.0.0.1:{closed_port()}"\nretry_timeout = "1s"\n',
    )
    out = _render_one(bao, tmp_path, f"{{{{ secret('{prefix}/app').password }}}}")
    assert out == password


def test_cli_address_beats_env_and_config(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`--address` wins over a wrong VAULT_ADDR and a wrong config file address."""
    password = secret_value()
    bao.kv_put(f"{prefix}/app", password=password)
    write(tmp_path / "inject.toml", f'[vault]\naddress = "http://127.0.0.1:{closed_port()}"\n')
    write(tmp_path / "t.j2", f"{{{{ secret('{prefix}/app').password }}}}")
    env = inject_env(bao, {"VAULT_ADDR": f"http://127.0.0.1:{closed_port()}"})
    result = run_inject(
        "render", "--retry-timeout", "1", "--address", bao.address, "-t", "t.j2:out.txt",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == password


# --- token sources and what the child may see -----------------------------------------------


def _token_env(bao: Bao, **extra: str) -> dict[str, str]:
    env = inject_env(bao, extra)
    if "VAULT_TOKEN" not in extra:
        del env["VAULT_TOKEN"]
    return env


def _render_with(env: dict[str, str], tmp_path: Path, prefix: str, *args: str) -> str:
    write(tmp_path / "t.j2", f"{{{{ secret('{prefix}/app').password }}}}")
    result = run_inject("render", "-t", "t.j2:out.txt", *args, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return (tmp_path / "out.txt").read_text()


def test_token_from_vault_token(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """VAULT_TOKEN authenticates inject."""
    password = secret_value()
    bao.kv_put(f"{prefix}/app", password=password)
    env = _token_env(bao, VAULT_TOKEN=reader_token(bao, f"{prefix}/app"))
    assert _render_with(env, tmp_path, prefix) == password


def test_token_from_bao_token(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """BAO_TOKEN authenticates inject when VAULT_TOKEN is not set."""
    password = secret_value()
    bao.kv_put(f"{prefix}/app", password=password)
    env = _token_env(bao, BAO_TOKEN=reader_token(bao, f"{prefix}/app"))
    assert _render_with(env, tmp_path, prefix) == password


def test_token_from_token_file_beats_env(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`--token-file` is used (surrounding whitespace ignored) even when VAULT_TOKEN is wrong."""
    password = secret_value()
    bao.kv_put(f"{prefix}/app", password=password)
    token_file = write(tmp_path / "token", f"  {reader_token(bao, f'{prefix}/app')}\n")
    env = _token_env(bao, VAULT_TOKEN="s.not-a-real-token")
    assert _render_with(env, tmp_path, prefix, "--token-file", str(token_file)) == password


def test_token_from_home_vault_token(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """With no token in the environment, `~/.vault-token` is used."""
    password = secret_value()
    bao.kv_put(f"{prefix}/app", password=password)
    home = tmp_path / "home"
    write(home / ".vault-token", reader_token(bao, f"{prefix}/app") + "\n")
    env = _token_env(bao, HOME=str(home))
    assert _render_with(env, tmp_path, prefix) == password


def test_child_env_has_no_tokens(bao: Bao, tmp_path: Path) -> None:
    """The child sees neither VAULT_TOKEN nor BAO_TOKEN, but does see ordinary variables."""
    env = inject_env(bao, {"BAO_TOKEN": bao.token, "APP_MODE": "test"})
    result = run_inject("--", sys.executable, "-c", PRINT_ENV_NAMES, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = json.loads(result.stdout)
    assert "APP_MODE" in names
    assert "VAULT_ADDR" in names
    assert "VAULT_TOKEN" not in names
    assert "BAO_TOKEN" not in names


def test_child_pass_env_allows_the_token(bao: Bao, tmp_path: Path) -> None:
    """`[child] pass_env = ["VAULT_TOKEN"]` hands VAULT_TOKEN (only) to the child."""
    write(tmp_path / "inject.toml", '[child]\npass_env = ["VAULT_TOKEN"]\n')
    env = inject_env(bao, {"BAO_TOKEN": bao.token})
    result = run_inject("--", sys.executable, "-c", PRINT_ENV_NAMES, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = json.loads(result.stdout)
    assert "VAULT_TOKEN" in names
    assert "BAO_TOKEN" not in names


def _readme_jinja_blocks() -> list[str]:
    """The ```jinja blocks of the README."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    return [block.split("\n```", 1)[0] for block in text.split("```jinja\n")[1:]]


@pytest.mark.parametrize("number", range(len(_readme_jinja_blocks())))
def test_readme_template_examples_render_without_a_blank_first_line(
    bao: Bao, prefix: str, tmp_path: Path, number: int
) -> None:
    """Each README template, rendered for real, starts with its first line of content: a
    `{%- set %}` line leaves no blank line behind."""
    block = _readme_jinja_blocks()[number].replace("secret/infrastructure/postgres", f"{prefix}/pg")
    bao.kv_put(f"{prefix}/pg", username="app", password=secret_value())
    write(tmp_path / "t.j2", block + "\n")
    result = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rendered = (tmp_path / "out.txt").read_text()
    assert rendered.strip(), rendered
    assert rendered.splitlines()[0].strip(), repr(rendered)


def test_text_log_lines_start_with_the_time(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """Every line a real `inject render` logs in the text format starts with a UTC time to
    the millisecond, then `inject:`."""
    bao.kv_put(f"{prefix}/app", password=secret_value())
    write(tmp_path / "t.j2", f"{{{{ secret('{prefix}/app').password }}}}")
    result = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any("rendered 1 file(s)" in line for line in lines), result.stderr
    for line in lines:
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z inject: ", line), line
