"""Redaction against the real inject and OpenBao: what `plan` prints and what errors quote."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.helpers_e2e import error_line, write
from tests.support import Bao, inject_env, record_output, run_inject, secret_value
from vault_inject.errors import EXIT_SECRET
from vault_inject.log import MASK


def test_plan_masks_a_secret_value_used_as_a_path_segment(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A path computed from a secret value (per-tenant secrets) is printed by `plan` with the value masked."""
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
    assert f"{prefix}/{MASK}/db v1" in result.stdout


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
    assert not (tmp_path / "out").exists()
