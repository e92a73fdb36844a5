"""The README's demo, run for real: `inject dev` with the example config, templates and app."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

from tests.support import run_inject

REPO = Path(__file__).resolve().parents[2]


def test_readme_demo_renders_the_seed_templates_and_the_app_gets_its_secrets(tmp_path: Path) -> None:
    """`inject dev --secrets examples/dev-secrets.toml -c examples/inject.toml -- python examples/app.py` exits 0."""
    for folder in ("examples", "templates"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("compose"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))}
    env["HOME"] = str(tmp_path)
    result = run_inject(
        "dev", "--secrets", "examples/dev-secrets.toml", "-c", "examples/inject.toml", "--", sys.executable,
        "examples/app.py",
        env=env, cwd=tmp_path, timeout_s=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert "all secrets present" in result.stdout
    run = tmp_path / "run"
    for name in ("production.yml", "app.env", "jwt-keys.json"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o600
    keys = json.loads((run / "jwt-keys.json").read_text())
    assert keys["version"] == 1
    assert keys["verify"] == [keys["sign"]]
