"""The one fake clock of the unit tests: monotonic seconds that move only when a test (or a
fake sleep, or a fake request that takes time) moves them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeClock:
    """Call it for the time; ``sleep`` records the wait and moves the time on."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
