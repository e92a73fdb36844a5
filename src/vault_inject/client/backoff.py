"""Exponential backoff with jitter, as one pure function (after stamina)."""

from __future__ import annotations

import random

INITIAL_S = 0.1
BASE = 2.0
MAX_S = 5.0
JITTER_S = 0.25
MAX_EXPONENT = 64


def delay_s(
    attempt: int,
    *,
    initial_s: float = INITIAL_S,
    base: float = BASE,
    max_s: float = MAX_S,
    jitter_s: float = JITTER_S,
    rand: random.Random | None = None,
) -> float:
    """Seconds before retry ``attempt`` (1-based): initial * base**(n-1) + jitter, and once that
    passes ``max_s``, ``max_s - jitter`` (so capped retries still spread out)."""
    jitter = (rand or _RANDOM).uniform(0, jitter_s) if jitter_s > 0 else 0.0
    exponent = min(max(0, attempt - 1), MAX_EXPONENT)  # past this the cap always wins
    delay = initial_s * base**exponent + jitter
    # At the cap, jitter below it: many clients that hit the cap together must not stay in step.
    return delay if delay <= max_s else max(0.0, max_s - jitter)


def jittered(seconds: float, *, fraction: float = 0.1, rand: random.Random | None = None) -> float:
    """``seconds`` moved by up to +/- ``fraction`` of itself, so many pollers spread out."""
    return seconds * (1 + (rand or _RANDOM).uniform(-fraction, fraction))


_RANDOM = random.Random()  # noqa: S311 - timing jitter, not a secret
