"""Failures of a real inject: each exits with its documented code, prints one line naming
the thing (file, line, path, key), never a traceback, and never a secret value.
Also `inject check`, which reads everything and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import closed_port, error_line, reader_token, write
from tests.support import Bao, forbid, inject_env, run_inject, secret_value

# --- usage and config errors (exit 2) -----------------------------------------------------


def test_bad_toml_names_file_and_line(bao: Bao, tmp_path: Path) -> None:
    """A config file that is not valid TOML exits 2 naming the file and the line."""
    write(tmp_path / "broken.toml", '[vault]\naddress = "http://x"\n[child\n')
    result = run_inject("render", "-c", "broken.toml", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 2
    line = error_line(result)
    assert "broken.toml" in line
    assert "line 3" in line


def test_unknown_config_key_names_key_and_file(bao: Bao, tmp_path: Path) -> None:
    """A misspelt key in the config file exits 2 naming the key and the file."""
    write(tmp_path / "inject.toml", '[vault]\nadress = "http://127.0.0.1:8200"\n')
    result = run_inject("render", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 2
    line = error_line(result)
    assert "adress" in line
    assert "inject.toml" in line
    assert line.endswith("unknown key 'vault.adress'; did you mean 'vault.address'?")


def test_unknown_template_key_names_key_and_file(bao: Bao, tmp_path: Path) -> None:
    """A misspelt key inside a [[template]] exits 2 naming the key and the file."""
    write(
        tmp_path / "app.toml",
        '[[template]]\ncontents = "x"\ndestination = "out.txt"\nmode = "0600"\n',
    )
    result = run_inject("render", "-c", "app.toml", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 2
    line = error_line(result)
    assert "'mode'" in line
    assert "app.toml" in line


def test_misspelt_template_key_suggests_the_nearest_key(bao: Bao, tmp_path: Path) -> None:
    """``destinaton`` in a [[template]] exits 2 and suggests ``destination``."""
    write(tmp_path / "inject.toml", '[[template]]\ncontents = "x"\ndestinaton = "out.txt"\n')
    result = run_inject("render", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 2
    line = error_line(result)
    assert line.endswith("template #1: unknown key 'destinaton'; did you mean 'destination'?")
    assert not (tmp_path / "out.txt").exists()


def test_an_option_of_a_long_running_command_is_refused_by_render(bao: Bao, tmp_path: Path) -> None:
    """`inject render --listen ... --splay ...` exits 2 naming the commands that take --listen,
    and writes nothing (it used to be accepted and ignored)."""
    write(tmp_path / "t.j2", "x")
    result = run_inject(
        "render", "--listen", "127.0.0.1:9102", "--splay", "5s", "-t", "t.j2:out.txt",
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "No such option '--listen' for render: it is an option of inject 'run', 'watch' and 'dev'." in (
        result.stderr
    )
    assert "Try 'inject render --help' for help." in result.stderr
    assert not (tmp_path / "out.txt").exists()


def test_help_of_a_real_run_lists_the_commands_options_by_section(bao: Bao, tmp_path: Path) -> None:
    """`inject render --help`, run for real, exits 0 with sections and typed values, and no
    option of a long-running command."""
    result = run_inject("render", "--help", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0
    for part in ["Server:", "Auth:", "Outputs:", "Logging:", "--retry-timeout DURATION", "--auth [token|"]:
        assert part in result.stdout
    for absent in ["--listen", "--splay", "--no-watch", "--on-change", "--kill-", "TEXT"]:
        assert absent not in result.stdout


@pytest.mark.parametrize(
    "value", ["vault:secret/app", "vault:secret/app#", "vault:#key", "vault:secret/app#key#latest"]
)
def test_malformed_reference_in_env_option(bao: Bao, tmp_path: Path, value: str) -> None:
    """A malformed `-e NAME=vault:...` exits 2 naming the variable, before any child starts."""
    marker = tmp_path / "child-ran"
    result = run_inject(
        "-e", f"DB_PASS={value}", "--", "touch", str(marker), env=inject_env(bao), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "DB_PASS" in error_line(result)
    assert not marker.exists()


def test_missing_template_source_is_a_usage_error(bao: Bao, tmp_path: Path) -> None:
    """A template source file that does not exist exits 2 naming the file."""
    result = run_inject("render", "-t", "nowhere.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 2
    assert "nowhere.j2" in error_line(result)
    assert not (tmp_path / "out.txt").exists()


# --- secret and auth errors (exit 4) ------------------------------------------------------


def test_missing_key_names_path_and_key(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A reference to a key the secret lacks exits 4 naming the path and the key, not the values."""
    bao.kv_put(f"{prefix}/app", password=secret_value())
    result = run_inject(
        "-e", f"X=vault:{prefix}/app#pasword", "--", "true", env=inject_env(bao), cwd=tmp_path
    )
    assert result.returncode == 4
    line = error_line(result)
    assert line.endswith(f"env X: secret '{prefix}/app' has no key 'pasword'; did you mean 'password'?")


def test_missing_path_names_path(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A reference to a path with no secret exits 4 naming the path."""
    result = run_inject(
        "-e", f"X=vault:{prefix}/nothing-here#key", "--", "true", env=inject_env(bao), cwd=tmp_path
    )
    assert result.returncode == 4
    assert f"{prefix}/nothing-here" in error_line(result)


def test_missing_path_in_template_names_template_line_and_path(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """secret() of a missing path exits 4 naming the template, its line and the path; no file."""
    write(tmp_path / "t.j2", f"a: 1\nb: {{{{ secret('{prefix}/nothing-here').key }}}}\n")
    result = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 4
    line = error_line(result)
    assert "template 't.j2' line 2" in line
    assert f"{prefix}/nothing-here" in line
    assert not (tmp_path / "out.txt").exists()


def test_permission_denied_names_the_path(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A token whose policy allows only another path exits 4 with 'permission denied' and the path."""
    bao.kv_put(f"{prefix}/allowed", key=secret_value())
    bao.kv_put(f"{prefix}/forbidden", key=secret_value())
    token = reader_token(bao, f"{prefix}/allowed")
    result = run_inject(
        "-e", f"OK=vault:{prefix}/allowed#key", "-e", f"NO=vault:{prefix}/forbidden#key", "--", "true",
        env=inject_env(bao, token=token), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 4
    line = error_line(result)
    assert "permission denied" in line
    assert f"{prefix}/forbidden" in line


def test_invalid_token_is_an_auth_error(bao: Bao, tmp_path: Path) -> None:
    """A token the server does not know exits 4 with one line that does not repeat the token."""
    token = forbid("s.e2e-invalid-" + secret_value("tok"))
    marker = tmp_path / "child-ran"
    result = run_inject(
        "-e", "X=vault:secret/app#key", "--", "touch", str(marker),
        env=inject_env(bao, token=token), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 4
    assert "token" in error_line(result)
    assert not marker.exists()


# --- unreachable server (exit 5) ------------------------------------------------------------


def test_unreachable_server_exits_5_and_writes_nothing(bao: Bao, tmp_path: Path) -> None:
    """A server that never answers exits 5 after --retry-timeout: no file, no child."""
    write(tmp_path / "t.j2", "{{ secret('secret/app').key }}")
    marker = tmp_path / "child-ran"
    env = inject_env(bao, {"VAULT_ADDR": f"http://127.0.0.1:{closed_port()}"})
    result = run_inject(
        "--retry-timeout", "1", "-t", "t.j2:out.txt", "--", "touch", str(marker),
        env=env, cwd=tmp_path, timeout_s=15,
    )  # fmt: skip
    assert result.returncode == 5
    assert "127.0.0.1" in error_line(result)
    assert not (tmp_path / "out.txt").exists()
    assert not marker.exists()


# --- template errors (exit 3) ---------------------------------------------------------------


def test_template_syntax_error_names_template_and_line(bao: Bao, tmp_path: Path) -> None:
    """A Jinja syntax error exits 3 naming the template file and the line."""
    write(tmp_path / "app.yml.j2", "a: 1\nb: 2\nc: {{ secret('secret/x').key \n")
    result = run_inject("render", "-t", "app.yml.j2:out.yml", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 3
    line = error_line(result)
    assert "app.yml.j2" in line
    assert "line 3" in line


def test_missing_key_in_template_names_template_line_and_key(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A missing key inside a template exits 3 naming the template, its line and the key."""
    bao.kv_put(f"{prefix}/app", password=secret_value())
    write(tmp_path / "app.yml.j2", f"a: 1\nb: {{{{ secret('{prefix}/app').pasword }}}}\n")
    result = run_inject("render", "-t", "app.yml.j2:out.yml", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 3
    line = error_line(result)
    assert "app.yml.j2" in line
    assert "line 2" in line
    assert line.endswith(f"secret '{prefix}/app' has no key 'pasword'; did you mean 'password'?")


def test_missing_key_computed_in_template_gets_no_suggestion(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A key the template computes is not shown, and no key is guessed for it (exit 3)."""
    bao.kv_put(f"{prefix}/app", password=secret_value())
    write(tmp_path / "t.j2", f"{{% set k = 'pas' %}}{{{{ secret('{prefix}/app')[k ~ 'word'] }}}}\n")
    result = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 3
    line = error_line(result)
    assert line.endswith("has no key (computed in the template)"), line
    assert "did you mean" not in line


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ env.__globals__['os'].system('touch {marker}') }}",
        "{{ secret.__init__.__globals__['__builtins__']['__import__']('os').system('touch {marker}') }}",
        "{{ cycler.__init__.__globals__.os.system('touch {marker}') }}",
        "{{ range.__self__.__import__('os').system('touch {marker}') }}",
    ],
)
def test_sandbox_escape_is_refused(bao: Bao, tmp_path: Path, escape: str) -> None:
    """Template code that reaches for Python internals exits 3 and runs nothing."""
    marker = tmp_path / "pwned"
    write(tmp_path / "evil.j2", escape.replace("{marker}", str(marker)))
    result = run_inject("render", "-t", "evil.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 3
    assert "evil.j2" in error_line(result)
    assert not marker.exists()
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("expression", ["{{ 2.0 ** 100000 }}", "{{ 1 // 0 }}", "{{ range(10 ** 9) | list }}"])
def test_python_errors_inside_the_sandbox_are_render_errors(
    bao: Bao, tmp_path: Path, expression: str
) -> None:
    """Overflow, division by zero or a huge range in a template exit 3 with one line naming it."""
    write(tmp_path / "calc.j2", f"a: 1\nb: {expression}\n")
    result = run_inject("render", "-t", "calc.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 3
    assert "template 'calc.j2' line 2" in error_line(result)
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("debug", [False, True])
def test_error_quoting_a_value_is_redacted(bao: Bao, prefix: str, tmp_path: Path, debug: bool) -> None:
    """An error whose text would contain a secret value masks it, with or without --debug."""
    password = secret_value()
    bao.kv_put(f"{prefix}/app", password=password)
    # Looking a key up *by the secret's value* puts the value into the error message.
    write(tmp_path / "t.j2", f"{{% set s = secret('{prefix}/app') %}}{{{{ s[s.password] }}}}")
    flags = ["--debug"] if debug else []
    result = run_inject("render", *flags, "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 3
    assert password not in result.stderr
    assert "t.j2" in result.stderr
    if not debug:
        error_line(result)


# --- inject check -----------------------------------------------------------------------------


def test_check_reads_everything_and_writes_nothing(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`inject check` exits 0 when every secret is readable and writes no file."""
    bao.kv_put(f"{prefix}/app", password=secret_value())
    write(tmp_path / "t.j2", f"{{{{ secret('{prefix}/app').password }}}}")
    result = run_inject(
        "check", "-t", "t.j2:out/out.txt", "-e", f"PW=vault:{prefix}/app#password",
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.j2"]


def test_check_fails_on_a_forbidden_path(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`inject check` exits 4 naming the path the token may not read."""
    bao.kv_put(f"{prefix}/allowed", key=secret_value())
    bao.kv_put(f"{prefix}/forbidden", key=secret_value())
    token = reader_token(bao, f"{prefix}/allowed")
    write(tmp_path / "t.j2", f"{{{{ secret('{prefix}/forbidden').key }}}}")
    result = run_inject("check", "-t", "t.j2:out.txt", env=inject_env(bao, token=token), cwd=tmp_path)
    assert result.returncode == 4
    line = error_line(result)
    assert "permission denied" in line
    assert f"{prefix}/forbidden" in line
    assert not (tmp_path / "out.txt").exists()


# --- saying what went wrong, while it is going wrong (issue 27) -----------------------------


def test_retrying_is_said_at_once_where_and_why(bao: Bao, tmp_path: Path) -> None:
    """A wrong port: the first failed round says at info level what is retried, where, why and
    for how long (not silence until the budget ends), then exit 5."""
    address = f"http://127.0.0.1:{closed_port()}"
    write(tmp_path / "t.j2", "{{ secret('secret/app').key }}")
    env = inject_env(bao, {"VAULT_ADDR": address})
    result = run_inject("render", "--retry-timeout", "3s", "-t", "t.j2:out.txt", env=env, cwd=tmp_path)
    assert result.returncode == 5
    retrying = [line for line in result.stderr.splitlines() if "retrying token lookup" in line]
    assert len(retrying) == 1, result.stderr
    assert f"{address} did not answer (connection refused or reset)" in retrying[0]
    assert "giving up in" in retrying[0]


def test_a_host_name_that_does_not_resolve_is_said_so(bao: Bao, tmp_path: Path) -> None:
    """An unresolvable host (RFC 6761 .invalid) says the name did not resolve, not "refused"."""
    env = inject_env(bao, {"VAULT_ADDR": "http://no-such-host.invalid:8200"})
    result = run_inject("render", "--retry-timeout", "0", "-e", "X=vault:secret/a#k", env=env, cwd=tmp_path)
    assert result.returncode == 5
    assert "host name did not resolve" in error_line(result)
    assert "refused" not in error_line(result)


def test_https_against_a_plain_http_server_says_so(bao: Bao, tmp_path: Path) -> None:
    """https:// to the plain-HTTP dev server: the TLS error suggests an http:// address."""
    env = inject_env(bao, {"VAULT_ADDR": bao.address.replace("http://", "https://")})
    result = run_inject("render", "--retry-timeout", "0", "-e", "X=vault:secret/a#k", env=env, cwd=tmp_path)
    assert result.returncode == 5
    assert "plain HTTP" in error_line(result)


def test_a_missing_version_is_named(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`#password#99` of a secret with one version names version 99, not just "no secret"."""
    bao.kv_put(f"{prefix}/app", password=secret_value())
    result = run_inject(
        "render", "-e", f"X=vault:{prefix}/app#password#99", env=inject_env(bao), cwd=tmp_path
    )
    assert result.returncode == 4
    assert f"'{prefix}/app' has no version 99" in error_line(result)


def test_a_path_under_no_mount_says_so_even_to_a_root_token(bao: Bao, tmp_path: Path) -> None:
    """The server refuses the mount lookup of an unmounted path even to root ("preflight
    capability check"): inject says nothing is mounted there, not "permission denied"."""
    result = run_inject("render", "-e", "X=vault:nosuchmount/app#k", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 4
    line = error_line(result)
    assert "'nosuchmount/app': no secrets engine is mounted there" in line
    assert "permission denied" not in line
