"""Redaction against the real inject and OpenBao: what `plan` prints and what errors quote."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import error_line, write
from tests.support import Bao, forbid, inject_env, record_output, run_inject, secret_value
from vault_inject.errors import EXIT_RENDER, EXIT_SECRET


def test_plan_does_not_name_a_path_computed_from_a_secret_value(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """A path computed from a secret value (per-tenant secrets) is printed by `plan` as computed."""
    tenant = secret_value("tenant")
    bao.kv_put(f"{prefix}/tenant", name=tenant)
    bao.kv_put(f"{prefix}/{tenant}/db", password=secret_value())
    write(
        tmp_path / "db.j2",
        f"{{{{ secret('{prefix}/' ~ secret('{prefix}/tenant').name ~ '/db').password }}}}",
    )
    result = run_inject("plan", "-t", "db.j2:out/db.txt", env=inject_env(bao), cwd=tmp_path)
    record_output(result.stdout)
    assert result.returncode == 0, result.stderr
    assert tenant not in result.stdout
    assert f"reads (a path computed in the template) v1, {prefix}/tenant v1" in result.stdout


def test_missing_computed_path_error_masks_the_value(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A computed path that does not exist fails naming the template, with the value it holds masked."""
    tenant = secret_value("tenant")
    bao.kv_put(f"{prefix}/tenant", name=tenant)
    write(tmp_path / "db.j2", f"{{{{ secret('{prefix}/' ~ secret('{prefix}/tenant').name).x }}}}")
    result = run_inject("render", "-t", "db.j2:out/db.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == EXIT_SECRET, result.stderr
    line = error_line(result)
    assert "template 'db.j2'" in line
    assert tenant not in line
    assert "no secret at (a path computed in the template)" in line
    assert not (tmp_path / "out").exists()


# --- names computed in a template (issue 24 #7) ---------------------------------------------


def transformed_secret() -> str:
    """A unique mixed-case value; it and every easy transform of it are forbidden in any output."""
    value = "SuperSecretValue" + secrets.token_hex(6)
    for text in transforms(value):
        forbid(text)
    return value


def transforms(value: str) -> set[str]:
    """The value, upper, lower, reversed, swapped case and base64 (with and without padding)."""
    encoded = base64.b64encode(value.encode()).decode()
    return {value, value.upper(), value.lower(), value[::-1], value.swapcase(), encoded, encoded.rstrip("=")}


COMMANDS = [("render",), ("render", "--debug"), ("plan",), ("plan", "--debug")]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    ("expression", "exit_code"),
    [
        ("secret('{app}')[pw|upper]", EXIT_RENDER),
        ("secret('{app}')[pw|reverse|join]", EXIT_RENDER),
        ("secret('{app}')[pw|b64encode]", EXIT_RENDER),
        ("secret(pw|lower)", EXIT_SECRET),
        ("secret('{prefix}/' ~ pw)", EXIT_SECRET),
        ("secret('{prefix}/' ~ pw|upper)", EXIT_SECRET),
    ],
)
def test_a_key_or_path_computed_from_a_value_is_never_shown(
    bao: Bao, prefix: str, tmp_path: Path, command: tuple[str, ...], expression: str, exit_code: int
) -> None:
    """The attack: a transformed value used as a key or path. The one error line says the name was
    computed; no form of the value is on stderr or stdout, with --debug or in `plan` either."""
    value = transformed_secret()
    app = f"{prefix}/app"
    bao.kv_put(app, pw=value)
    used = expression.format(app=app, prefix=prefix)
    write(tmp_path / "a.j2", f"{{% set pw = secret('{app}').pw %}}{{{{ {used} }}}}")
    result = run_inject(*command, "-t", "a.j2:out/a.txt", env=inject_env(bao), cwd=tmp_path)
    record_output(result.stdout)
    assert result.returncode == exit_code, result.stderr
    output = result.stdout + result.stderr
    assert [text for text in transforms(value) if text in output] == [], output
    assert "computed in the template" in output
    assert "template 'a.j2' line 1" in output
    if "--debug" not in command:
        error_line(result)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_computed_path_that_exists_is_not_named_in_logs_or_plan(
    bao: Bao, prefix: str, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """A read of a path computed from a transformed value succeeds; `--debug` logs and `plan`
    lines say a computed path was read, and show nothing of it."""
    value = transformed_secret()
    bao.kv_put(f"{prefix}/app", pw=value)
    bao.kv_put(f"{prefix}/{value.lower()}", x="found-it")
    write(tmp_path / "a.j2", f"{{{{ secret('{prefix}/' ~ secret('{prefix}/app').pw|lower).x }}}}")
    result = run_inject(*command, "-t", "a.j2:out/a.txt", env=inject_env(bao), cwd=tmp_path)
    record_output(result.stdout)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert [text for text in transforms(value) if text in output] == [], output
    if command[0] == "plan":
        assert f"reads (a path computed in the template) v1, {prefix}/app v1" in result.stdout
    else:
        assert (tmp_path / "out/a.txt").read_text() == "found-it"


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("{{{{ secret('{app}')['nokey'] }}}}", "secret '{app}' has no key 'nokey'"),
        ("{{{{ secret('{app}').nokey }}}}", "secret '{app}' has no key 'nokey'"),
        ("{{{{ secret('{prefix}/nothing-here') }}}}", "'{prefix}/nothing-here'"),
    ],
)
def test_a_literal_key_or_path_is_still_named(
    bao: Bao, prefix: str, tmp_path: Path, template: str, named: str
) -> None:
    """Names written in the template source are quoted in the error, as before."""
    app = f"{prefix}/app"
    bao.kv_put(app, pw=secret_value())
    write(tmp_path / "a.j2", template.format(app=app, prefix=prefix))
    result = run_inject("render", "-t", "a.j2:out/a.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode in (EXIT_RENDER, EXIT_SECRET), result.stderr
    line = error_line(result)
    assert named.format(app=app, prefix=prefix) in line
    assert "computed" not in line
