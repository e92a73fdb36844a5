"""What every measurement shares: the profile (sizes, durations), the ``Bench`` state
(server, tokens, process registry, current secret values, result rows), and waits
that fail fast when a process under test dies.

The measurements live in ``measure_*.py``; each is a function of one ``Bench`` that
appends rows to ``bench.rows``:

1. ``measure_render``: ``inject render`` vs ``bao agent`` with ``exit_after_auth``;
2. and 4. ``measure_watch``: steady state and server load, in one window;
3. ``measure_latency``: change-to-child and change-to-file latency;
5. ``measure_scale``: many ``inject watch`` processes, before and after a server restart.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from baoserver import Server
from procs import Registry, ensure_running, wait_until
from report import Row
from tools import (
    KEY,
    AgentExec,
    agent_hcl,
    inject_toml,
    kv_path,
)

READY_TIMEOUT_S = 90.0
KB_PER_MB = 1024
TOOLS = ("inject", "agent")


@dataclass(frozen=True)
class Profile:
    """How big and how long each measurement is."""

    name: str
    sizes: tuple[int, ...]
    reps: int
    warmup: bool
    steady_paths: int
    settle_s: float
    steady_window_s: float
    changes: int
    watchers: int
    watcher_paths: int
    scale_window_s: float
    outage_s: float
    poll_interval_s: float = 1.0

    @property
    def poll(self) -> str:
        """The poll interval as both tools' config spells it."""
        return f"{self.poll_interval_s:g}s"


@dataclass
class Bench:
    """The shared state of one benchmark run."""

    profile: Profile
    server: Server
    registry: Registry
    work: Path
    bao: str
    inject_cmd: list[str]
    env: dict[str, str]
    token_files: dict[str, Path]  # "inject", "agent", "root"
    accessors: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)  # secret name -> current password
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(6))  # noqa: S311 - not crypto

    def seed(self, names: Sequence[str]) -> None:
        """Write a first version of each named secret (value derived from the name)."""
        for name in names:
            self.values[name] = f"v1-{name}"
            self.server.kv_put(kv_path(name), {KEY: self.values[name]})

    def log(self, name: str) -> Path:
        """A log file for one process under test."""
        return self.work / "logs" / f"{name}.log"

    def agent_argv(self, config: Path) -> list[str]:
        """``bao agent`` with this config file."""
        return [self.bao, "agent", f"-config={config}"]

    def inject_config(self, path: Path, templates: Sequence[tuple[Path, Path]], *, poll: bool) -> Path:
        """Write inject's TOML for these templates; return its path."""
        path.write_text(
            inject_toml(
                address=self.server.address,
                token_file=self.token_files["inject"],
                templates=templates,
                poll_interval=self.profile.poll if poll else "",
            )
        )
        return path

    def agent_config(
        self,
        path: Path,
        *,
        templates: Sequence[tuple[Path, Path]] = (),
        exit_after_auth: bool = False,
        render_interval: str = "",
        exec_mode: AgentExec | None = None,
    ) -> Path:
        """Write bao agent's HCL for these templates or this exec mode; return its path."""
        path.write_text(
            agent_hcl(
                address=self.server.address,
                token_file=self.token_files["agent"],
                templates=templates,
                exit_after_auth=exit_after_auth,
                render_interval=render_interval,
                exec_mode=exec_mode,
            )
        )
        return path


def names(count: int) -> list[str]:
    """The shared pool of secret names p0..p{count-1}."""
    return [f"p{i}" for i in range(count)]


def outputs_ok(bench: Bench, pairs: Sequence[tuple[Path, Path]], groups: Sequence[Sequence[str]]) -> bool:
    for (_, dest), group in zip(pairs, groups, strict=True):
        try:
            text = dest.read_text()
        except FileNotFoundError:
            return False
        if text != "".join(bench.values[n] + "\n" for n in group):
            return False
    return True


# --- shared waits -------------------------------------------------------------------


def wait_outputs(
    bench: Bench,
    procs: list[subprocess.Popen[bytes]],
    logs: list[Path],
    ready: Callable[[], bool],
    what: str,
    timeout_s: float = READY_TIMEOUT_S,
) -> None:
    def check() -> bool:
        ensure_running(procs, logs)
        return ready()

    wait_until(check, timeout_s=timeout_s, what=what, step_s=0.05)


def sleep_checked(seconds: float, procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    """Sleep ``seconds`` while checking that the processes under test stay up."""
    deadline = time.monotonic() + max(0.0, seconds)
    while (left := deadline - time.monotonic()) > 0:
        ensure_running(procs, logs)
        time.sleep(min(0.2, left))
