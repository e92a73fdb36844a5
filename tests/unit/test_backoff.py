"""Exponential backoff with jitter as one pure function."""

from __future__ import annotations

import random

import pytest

from vault_inject.client.backoff import BASE, INITIAL_S, JITTER_S, MAX_S, delay_s, jittered


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.6), (6, 3.2)]
)
def test_delay_grows_exponentially_without_jitter(attempt: int, expected: float) -> None:
    """Without jitter, retry n waits initial * base**(n-1)."""
    assert delay_s(attempt, jitter_s=0) == pytest.approx(expected)


def test_delay_defaults_are_the_documented_constants() -> None:
    """The default curve is INITIAL_S doubling (BASE) up to MAX_S."""
    assert delay_s(1, jitter_s=0) == INITIAL_S
    assert delay_s(2, jitter_s=0) == INITIAL_S * BASE
    assert delay_s(100, jitter_s=0) == MAX_S


@pytest.mark.parametrize("attempt", [7, 8, 20, 100, 1000])
def test_delay_is_capped(attempt: int) -> None:
    """Once initial * base**(n-1) passes max_s, a delay lies in [max_s - jitter, max_s]."""
    assert delay_s(attempt, jitter_s=0) == MAX_S
    assert MAX_S - JITTER_S <= delay_s(attempt, rand=random.Random(attempt)) <= MAX_S


def test_capped_delays_still_spread_out() -> None:
    """Clients that all reached the cap do not retry in lock-step: their delays differ."""
    delays = {round(delay_s(50, rand=random.Random(seed)), 6) for seed in range(20)}
    assert len(delays) > 10


@pytest.mark.parametrize("attempt", [1025, 10**6])
def test_delay_stays_capped_for_very_long_outages(attempt: int) -> None:
    """Attempt numbers reached in a long outage still give max_s instead of overflowing."""
    assert delay_s(attempt, jitter_s=0) == MAX_S


@pytest.mark.parametrize("attempt", [0, -3])
def test_attempts_below_one_wait_the_initial_delay(attempt: int) -> None:
    """A zero or negative attempt number is treated as the first attempt."""
    assert delay_s(attempt, jitter_s=0) == INITIAL_S


def test_custom_curve_parameters() -> None:
    """initial_s, base and max_s shape the curve."""
    assert delay_s(3, initial_s=1.0, base=3.0, max_s=100.0, jitter_s=0) == 9.0
    assert delay_s(5, initial_s=1.0, base=3.0, max_s=50.0, jitter_s=0) == 50.0


@pytest.mark.parametrize("seed", range(50))
def test_jitter_within_bounds(seed: int) -> None:
    """Jitter adds between 0 and jitter_s to the exponential delay."""
    rand = random.Random(seed)
    for attempt in range(1, 6):
        base = INITIAL_S * BASE ** (attempt - 1)
        assert base <= delay_s(attempt, rand=rand) <= base + JITTER_S


def test_jitter_is_drawn_from_the_given_random() -> None:
    """The same seed gives the same delay (the testing switch instead of patched sleeps)."""
    expected = 0.4 + random.Random(7).uniform(0, JITTER_S)
    assert delay_s(3, rand=random.Random(7)) == pytest.approx(expected)
    assert delay_s(3, rand=random.Random(7)) == delay_s(3, rand=random.Random(7))


def test_jitter_actually_varies() -> None:
    """Different draws give different delays, so many clients spread out."""
    rand = random.Random(1)
    assert len({delay_s(2, rand=rand) for _ in range(20)}) > 1


@pytest.mark.parametrize("seed", range(50))
def test_jittered_stays_within_fraction(seed: int) -> None:
    """jittered(x) stays within +/- fraction of x."""
    rand = random.Random(seed)
    assert 54.0 <= jittered(60.0, rand=rand) <= 66.0
    assert 7.5 <= jittered(10.0, fraction=0.25, rand=rand) <= 12.5


def test_jittered_varies_both_ways() -> None:
    """jittered spreads values both below and above the nominal interval."""
    rand = random.Random(3)
    values = [jittered(60.0, rand=rand) for _ in range(200)]
    assert min(values) < 60.0 < max(values)


def test_jittered_zero_fraction_is_exact() -> None:
    """A zero fraction returns the interval unchanged."""
    assert jittered(60.0, fraction=0.0, rand=random.Random(0)) == 60.0
