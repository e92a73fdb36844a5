"""The shortest end-to-end path: a KV secret rendered into a file and an env var."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.support import Bao, inject_env, run_inject, secret_value


def test_render_writes_secret_file_0600(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`inject render -t` writes the secret into the destination with mode 0600."""
    password = secret_value()
    bao.kv_put(f"{prefix}/infrastructure/postgres", username="app", password=password)
    (tmp_path / "db.j2").write_text(
        f"password: {{{{ secret('{prefix}/infrastructure/postgres').password }}}}\n"
    )
    result = run_inject("render", "-t", "db.j2:out/db.yml", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out" / "db.yml"
    assert out.read_text() == f"password: {password}\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_run_passes_env_reference_to_child(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`inject -e NAME=vault:PATH#KEY -- CMD` gives the child the value and its exit code passes through."""
    api_key = secret_value()
    bao.kv_put(f"{prefix}/external/openai", api_key=api_key)
    result = run_inject(
        "-e", f"OPENAI_API_KEY=vault:{prefix}/external/openai#api_key", "--", "sh", "-c",
        'printf %s "$OPENAI_API_KEY"; exit 7',
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 7, result.stderr
    assert result.stdout == api_key
