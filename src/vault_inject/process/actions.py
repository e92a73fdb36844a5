"""What the child is told when outputs changed. Pure.

Each template may say what its change means (``on_change``, ``reload_signal``), else the
``[child]`` setting holds. When several outputs change at once the strongest action wins,
once: restart > signal > none, and each distinct signal is sent once. An env value can
only reach the child through a new process, so an env change restarts (unless ``[child]
on_change`` is ``none``: then the child keeps the env it started with).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..config import Config


@dataclass(frozen=True)
class Action:
    """Restart the child, or send it these signals (in this order), or nothing."""

    restart: bool = False
    signals: tuple[int, ...] = ()
    note: str = ""  # added to the causes in the log ("env changed")

    @property
    def nothing(self) -> bool:
        """True when the child is left alone."""
        return not self.restart and not self.signals

    def merged(self, other: Action) -> Action:
        """Both actions as one: a restart covers every signal; signals are kept once each."""
        if self.restart or other.restart:
            return Action(restart=True, note=self.note or other.note)
        signals = self.signals + tuple(s for s in other.signals if s not in self.signals)
        return Action(signals=signals)


def decide(config: Config, *, files: Iterable[str], env_changed: bool) -> Action:
    """The one action for a change of ``files`` (destinations) and maybe the env."""
    on_change, reload_signal = config.on_change, config.reload_signal
    if env_changed and on_change != "none":
        return Action(restart=True, note="env changed")
    changed = set(files)
    action = Action()
    for spec in config.templates:
        if spec.destination not in changed:
            continue
        mode = spec.on_change or on_change
        if mode == "restart":
            return Action(restart=True)
        if mode == "signal":
            signum = spec.reload_signal if spec.reload_signal is not None else reload_signal
            action = action.merged(Action(signals=(signum,)))
    return action
