"""Hostile templates against the real `inject render` and OpenBao: refused fast, in little memory.

Each template first reads a real secret, then tries to make a huge value or run for minutes.
inject must exit 3 with one line naming the template, within the render budget, and its peak
resident size (``ru_maxrss`` of that very process, ``helpers_e2e.measured``) must stay under 150 MB. The
child runs under a 1 GiB address-space limit only so that a regression cannot exhaust the
shared test machine; the budget, not that limit, is what must stop it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import measured, write
from tests.support import Bao, inject_argv, inject_env, record_output, secret_value
from tests.unit.test_sandbox import HOSTILE, REFUSED, SLOW
from vault_inject.errors import EXIT_RENDER

MAX_PEAK_BYTES = 150 * 1000 * 1000
SAFETY_AS_BYTES = 1024 * 1024 * 1024
RENDER_TIMEOUT = "2s"


def _render(text: str, *, bao: Bao, prefix: str, tmp_path: Path) -> tuple[int, str, int, float]:
    """Run `inject render` of ``text`` (after a real secret read): exit code, stderr, peak bytes, seconds."""
    bao.kv_put(f"{prefix}/app", value=secret_value())
    write(tmp_path / "evil.j2", "{% set v = secret('" + prefix + "/app').value %}" + text)
    env = inject_env(bao, {"INJECT_RENDER_TIMEOUT": RENDER_TIMEOUT, "INJECT_RETRY_TIMEOUT": "5s"})
    code, peak_bytes, output, seconds = measured(
        inject_argv("render", "-t", "evil.j2:out/evil.txt"),
        env=env,
        cwd=tmp_path,
        limit_bytes=SAFETY_AS_BYTES,
    )
    record_output(output)
    return code, output, peak_bytes, seconds


@pytest.mark.parametrize("text", [*HOSTILE, *SLOW.values()])
def test_hostile_template_is_refused_by_real_inject_within_budget(
    bao: Bao, prefix: str, tmp_path: Path, text: str
) -> None:
    """The real inject refuses each hostile template: exit 3, one line naming it, under 150 MB, no file."""
    code, stderr, peak_bytes, seconds = _render(text, bao=bao, prefix=prefix, tmp_path=tmp_path)
    assert code == EXIT_RENDER, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "template 'evil.j2'" in lines[0]
    assert re.search(REFUSED + "|more than 2s of CPU time", lines[0]), lines[0]
    assert peak_bytes < MAX_PEAK_BYTES, f"peak RSS {peak_bytes / 1e6:.0f} MB"
    assert not (tmp_path / "out" / "evil.txt").exists()
    assert seconds < 30
