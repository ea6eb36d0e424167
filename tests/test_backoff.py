"""The retry policy: delays, their bounds and growth, and where a failed job stands."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.core.backoff import BackoffPolicy, attempts_left, retry_standing

policies = st.builds(
    BackoffPolicy,
    base_seconds=st.floats(0, 1e4, allow_nan=False),
    factor=st.floats(1, 10, allow_nan=False),
    max_seconds=st.floats(0, 1e6, allow_nan=False),
    jitter=st.floats(0, 1, allow_nan=False),
)
attempts = st.integers(1, 10_000)
draws = st.floats(0, 1, allow_nan=False)
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Turn a hang (a loop over 10**18 attempts) into a test failure instead of a stuck run."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@settings(deadline=None)  # pure arithmetic; a loaded CI box must not flake it
@given(policies, attempts, draws)
def test_delay_lies_within_the_jitter_band(
    policy: BackoffPolicy, attempt: int, draw: float
) -> None:
    base = policy.base_delay(attempt)
    delay = policy.delay(attempt, draw)
    assert base * (1 - policy.jitter) <= delay <= base * (1 + policy.jitter)
    assert delay >= 0


@settings(deadline=None)  # pure arithmetic; a loaded CI box must not flake it
@given(policies, attempts)
def test_base_delay_follows_the_formula(policy: BackoffPolicy, attempt: int) -> None:
    assert policy.base_delay(attempt) == pytest.approx(
        expected_base_delay(policy, attempt), rel=1e-12
    )


def expected_base_delay(policy: BackoffPolicy, attempt: int) -> float:
    """min(max_seconds, base_seconds * factor**(attempt-1)), computed independently."""
    if policy.base_seconds == 0:
        return min(policy.max_seconds, 0.0)
    try:
        return min(policy.max_seconds, policy.base_seconds * policy.factor ** (attempt - 1))
    except OverflowError:  # factor**(n-1) beyond floats: the product is far past the cap
        return policy.max_seconds


@settings(deadline=None)  # pure arithmetic; a loaded CI box must not flake it
@given(policies, attempts)
def test_base_delay_never_decreases(policy: BackoffPolicy, attempt: int) -> None:
    assert policy.base_delay(attempt) <= policy.base_delay(attempt + 1)


@settings(deadline=None)
@given(policies, st.integers(10**6, 10**18))
def test_huge_attempt_numbers_neither_overflow_nor_hang(
    policy: BackoffPolicy, attempt: int
) -> None:
    with deadline(2):
        delay = policy.base_delay(attempt)
    assert delay == pytest.approx(expected_base_delay(policy, attempt), rel=1e-9)
    assert delay <= policy.max_seconds or delay == policy.base_seconds == 0


def test_huge_attempt_with_factor_one_is_fast() -> None:
    policy = BackoffPolicy(base_seconds=5, factor=1, max_seconds=100, jitter=0)
    with deadline(2):
        assert policy.base_delay(10**12) == 5
        assert BackoffPolicy.from_config("none").base_delay(10**12) == 0


@settings(deadline=None)  # pure arithmetic; a loaded CI box must not flake it
@given(policies, attempts, draws)
def test_next_retry_at_is_failed_at_plus_delay(
    policy: BackoffPolicy, attempt: int, draw: float
) -> None:
    at = policy.next_retry_at(T0, attempt, draw)
    assert at - T0 == timedelta(seconds=policy.delay(attempt, draw))
    assert at.tzinfo is timezone.utc


def test_default_exponential_schedule() -> None:
    policy = BackoffPolicy.from_config("exponential")
    assert [policy.base_delay(n) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert policy.delay(1, 0.0) == pytest.approx(54)
    assert policy.delay(1, 0.5) == pytest.approx(60)
    assert policy.delay(1, 1.0) == pytest.approx(66)
    assert BackoffPolicy.from_config(None) == policy


def test_none_means_no_wait() -> None:
    policy = BackoffPolicy.from_config("none")
    assert all(policy.delay(n, d) == 0 for n in (1, 2, 50) for d in (0, 0.5, 1))
    assert policy.next_retry_at(T0, 3, 0.7) == T0


def test_mapping_overrides_some_defaults() -> None:
    policy = BackoffPolicy.from_config({"base_seconds": 5, "factor": 3, "max_seconds": 100})
    assert policy == BackoffPolicy(base_seconds=5.0, factor=3.0, max_seconds=100.0, jitter=0.1)
    assert [policy.base_delay(n) for n in (1, 2, 3, 4)] == [5, 15, 45, 100]
    assert BackoffPolicy.from_config({"jitter": 0}).delay(2, 0.9) == 120


def test_unknown_spelling_is_rejected() -> None:
    with pytest.raises(ValueError):
        BackoffPolicy.from_config("linear")


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_start_at_one(attempt: int) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy().base_delay(attempt)


@pytest.mark.parametrize("draw", [-0.01, 1.01])
def test_draw_must_be_a_unit_number(draw: float) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy().delay(1, draw)


def test_attempts_left() -> None:
    assert attempts_left(0, 0) and not attempts_left(1, 0)
    assert attempts_left(3, 3) and not attempts_left(4, 3)


@pytest.mark.parametrize(
    "attempts, max_retries, offset, standing",
    [
        (4, 3, -10, "exhausted"),  # attempts == max_retries + 1: no attempt left
        (5, 3, -10, "exhausted"),
        (1, 0, -10, "exhausted"),
        (3, 3, 0, "due"),  # next_retry_at == now: due
        (3, 3, -1, "due"),
        (3, 3, 1, "waiting"),
        (1, 3, 3600, "waiting"),
        (0, 0, 0, "due"),
        (2, 3, None, "exhausted"),  # no next_retry_at: failed for good
    ],
)
def test_retry_standing(attempts: int, max_retries: int, offset: int | None, standing: str) -> None:
    at = None if offset is None else T0 + timedelta(seconds=offset)
    assert retry_standing(attempts, max_retries, at, T0) == standing


@settings(deadline=None)  # pure arithmetic; a loaded CI box must not flake it
@given(st.integers(0, 20), st.integers(0, 20), st.integers(-100, 100))
def test_retry_standing_agrees_with_attempts_left(
    attempts: int, max_retries: int, offset: int
) -> None:
    standing = retry_standing(attempts, max_retries, T0 + timedelta(seconds=offset), T0)
    if attempts >= max_retries + 1:
        assert standing == "exhausted"
    else:
        assert standing == ("due" if offset <= 0 else "waiting")
