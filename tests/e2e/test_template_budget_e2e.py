"""Hostile templates against the real `inject render` and OpenBao: refused fast, in little memory.

Each template first reads a real secret, then tries to make a huge value or run for minutes.
inject must exit 3 with one line naming the template, within the render budget, and its peak
resident size (``ru_maxrss`` of that very process, ``helpers_e2e.measured``) must stay under 150 MB. The
child runs under a 1 GiB address-space limit only so that a regression cannot exhaust the
shared test machine; the budget, not that limit, is what must stop it.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import measured, without_time, write
from tests.support import Bao, inject_argv, inject_env, record_output, secret_value, supervise, wait_for
from tests.unit.test_sandbox import COSTLY, COSTLY_ALLOWED, HOSTILE, ISSUE_24, REFUSED, SLOW
from vault_inject.errors import EXIT_RENDER

MAX_PEAK_BYTES = 150 * 1000 * 1000
SAFETY_AS_BYTES = 1024 * 1024 * 1024
RENDER_TIMEOUT = "2s"


def _render(text: str, *, bao: Bao, prefix: str, tmp_path: Path) -> tuple[int, str, int, float]:
    """Run `inject render` of ``text`` (after a real secret read): exit code, stderr, peak bytes,
    CPU seconds (user + system, of that process alone)."""
    bao.kv_put(f"{prefix}/app", value=secret_value())
    write(tmp_path / "evil.j2", "{% set v = secret('" + prefix + "/app').value %}" + text)
    env = inject_env(bao, {"INJECT_RENDER_TIMEOUT": RENDER_TIMEOUT, "INJECT_RETRY_TIMEOUT": "5s"})
    code, peak_bytes, output, cpu_s = measured(
        inject_argv("render", "-t", "evil.j2:out/evil.txt"),
        env=env,
        cwd=tmp_path,
        limit_bytes=SAFETY_AS_BYTES,
    )
    record_output(output)
    return code, output, peak_bytes, cpu_s


@pytest.mark.parametrize("text", [*HOSTILE, *SLOW.values()])
def test_hostile_template_is_refused_by_real_inject_within_budget(
    bao: Bao, prefix: str, tmp_path: Path, text: str
) -> None:
    """The real inject refuses each hostile template: exit 3, one line naming it, under 150 MB, no file."""
    code, stderr, peak_bytes, cpu_s = _render(text, bao=bao, prefix=prefix, tmp_path=tmp_path)
    assert code == EXIT_RENDER, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "template 'evil.j2'" in lines[0]
    assert re.search(REFUSED + "|more than 2s of CPU time", lines[0]), lines[0]
    assert peak_bytes < MAX_PEAK_BYTES, f"peak RSS {peak_bytes / 1e6:.0f} MB"
    assert not (tmp_path / "out" / "evil.txt").exists()
    assert cpu_s < 10


@pytest.mark.parametrize("text", ISSUE_24)
def test_issue_24_payloads_are_refused_before_they_allocate_or_run(
    bao: Bao, prefix: str, tmp_path: Path, text: str
) -> None:
    """Issue 24's payloads (gigabytes from one method or filter; one call running for 30 s)
    through the real `inject render`: exit 3, one line naming the template and its line and
    saying what was too large, peak RSS under 150 MB, and far less CPU than the 2 s budget."""
    code, stderr, peak_bytes, cpu_s = _render(text, bao=bao, prefix=prefix, tmp_path=tmp_path)
    assert code == EXIT_RENDER, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert without_time(lines[0]).startswith(
        "inject: error: template 'evil.j2' line 1: unsafe operation refused by the sandbox: "
    )
    assert re.search(REFUSED, lines[0]), lines[0]
    assert peak_bytes < MAX_PEAK_BYTES, f"peak RSS {peak_bytes / 1e6:.0f} MB"
    assert cpu_s < 1.5, f"{cpu_s:.1f}s of CPU"
    assert not (tmp_path / "out" / "evil.txt").exists()


# A child that writes, on SIGTERM, the CLOCK_MONOTONIC time it got it (the same clock in
# every process of the machine), then exits.
TERM_CLOCK_CHILD = r"""
import os, signal, sys, time
record = sys.argv[1]
def on_term(signum, frame):
    with open(record + ".tmp", "w") as handle:
        handle.write(repr(time.monotonic()))
    os.rename(record + ".tmp", record)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
while True:
    signal.pause()
"""


def _cpu_s(pid: int) -> float:
    """utime + stime of a running process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize(
    "text",
    [
        *COSTLY.values(),
        pytest.param(
            COSTLY_ALLOWED,
            marks=pytest.mark.xfail(
                strict=False,
                reason="calls just inside the work limit, back to back: ~200 ms on a loaded machine, often less (issue 24, open)",
            ),
        ),
    ],
    ids=[*COSTLY.keys(), "largest calls allowed"],
)
def test_sigterm_reaches_the_child_within_100ms_while_a_costly_template_rerenders(
    bao: Bao, prefix: str, tmp_path: Path, text: str
) -> None:
    """`inject -- child`: a KV change makes the re-render run a costly call (issue 24's
    30 s `max`, or a loop of the largest calls allowed); SIGTERM to inject while it renders
    reaches the child within 100 ms (the call never holds the interpreter longer)."""
    path = f"{prefix}/costly"
    bao.kv_put(path, v="calm")
    write(tmp_path / "costly.j2", "{% if secret('" + path + "').v != 'calm' %}" + text + "{% endif %}ok\n")
    write(tmp_path / "child.py", TERM_CLOCK_CHILD)
    record = tmp_path / "term-at"
    argv = inject_argv(
        "--poll-interval", "100ms", "-t", "costly.j2:out/costly.txt",
        "--", sys.executable, str(tmp_path / "child.py"), str(record),
    )  # fmt: skip
    env = inject_env(bao, {"INJECT_RENDER_TIMEOUT": "60s"})
    with supervise(argv, env=env, cwd=tmp_path) as running:
        calm_cpu_s = _cpu_s(running.pid)
        bao.kv_put(path, v="storm")
        wait_for(
            lambda: _cpu_s(running.pid) > calm_cpu_s + 0.3 or running.lines("keeping the last good"),
            timeout_s=20,
            what="the costly re-render to run (or be refused)",
        )
        sent_at = time.monotonic()
        running.send_signal(signal.SIGTERM)
        wait_for(record.exists, timeout_s=60, what="SIGTERM in the child")
        delay_s = float(record.read_text()) - sent_at
        running.wait(timeout_s=60)
    assert delay_s < 0.1, f"SIGTERM reached the child {delay_s * 1000:.0f} ms after inject got it"
