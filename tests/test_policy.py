"""The retry decision per failure class (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.core.backoff import BackoffPolicy
from campaigns.core.policy import INFRASTRUCTURE, RetryPolicy, decide, scaled
from campaigns.core.states import FailureClass

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
POLICY = RetryPolicy(
    backoff=BackoffPolicy(base_seconds=60, factor=2, max_seconds=600, jitter=0.0),
    permanent_exit_codes=frozenset({2, 64}),
    infrastructure_delay_seconds=30,
    timeout_factor=1.5,
    max_time_minutes=120,
    memory_factor=2.0,
    max_memory_mb=8000,
)


def test_permanent_exit_code_fails_for_good_at_once() -> None:
    d = decide(
        POLICY, FailureClass.EXIT_CODE, 64, attempts=1, max_retries=3, failed_at=T0, draw=0.5
    )
    assert d.next_retry_at is None and "permanent" in d.reason


def test_other_exit_codes_back_off_exponentially() -> None:
    delays = [
        decide(
            POLICY, FailureClass.EXIT_CODE, 1, attempts=n, max_retries=9, failed_at=T0, draw=0.5
        ).next_retry_at
        - T0
        for n in range(1, 7)
    ]
    assert delays == [timedelta(seconds=s) for s in (60, 120, 240, 480, 600, 600)]


def test_exhausted_after_max_retries_plus_one_attempts() -> None:
    # Attempt 3 of max_retries=3 (4 allowed) may retry; attempt 3 of max_retries=2 may not.
    d = decide(POLICY, FailureClass.EXIT_CODE, 1, 3, 3, T0, 0.5)
    assert d.next_retry_at == T0 + timedelta(seconds=240)
    assert decide(POLICY, FailureClass.EXIT_CODE, 1, 3, 2, T0, 0.5).next_retry_at is None
    assert decide(POLICY, FailureClass.NODE_FAIL, None, 4, 3, T0, 0.5).next_retry_at is None


@pytest.mark.parametrize("failure", sorted(INFRASTRUCTURE))
def test_infrastructure_failures_retry_soon(failure: FailureClass) -> None:
    d = decide(POLICY, failure, None, attempts=3, max_retries=5, failed_at=T0, draw=0.9)
    assert d.next_retry_at == T0 + timedelta(seconds=30)
    assert (d.time_scale, d.memory_scale) == (1.0, 1.0)


def test_timeout_scales_time_and_out_of_memory_scales_memory() -> None:
    d = decide(POLICY, FailureClass.TIMEOUT, None, 1, 3, T0, 0.5)
    assert (d.time_scale, d.memory_scale) == (1.5, 1.0)
    d = decide(POLICY, FailureClass.TIMEOUT, None, 2, 3, T0, 0.5, d.time_scale, d.memory_scale)
    assert d.time_scale == pytest.approx(2.25)
    d = decide(POLICY, FailureClass.OUT_OF_MEMORY, None, 1, 3, T0, 0.5)
    assert (d.time_scale, d.memory_scale) == (1.0, 2.0)


def test_scaled_resources_respect_caps() -> None:
    assert scaled(60, 1000, 1.5, 2.0, POLICY) == (90, 2000)
    assert scaled(100, 6000, 1.5, 2.0, POLICY) == (120, 8000)
    # A cap below the original never shrinks the request.
    assert scaled(200, 9000, 1.5, 2.0, POLICY) == (200, 9000)
    assert scaled(60, None, 1.0, 4.0, POLICY) == (60, None)


def test_policy_from_config_defaults_and_values() -> None:
    default = RetryPolicy.from_config({})
    assert default.permanent_exit_codes == frozenset() and default.timeout_factor == 1.5
    custom = RetryPolicy.from_config(
        {
            "retry_backoff": "none",
            "retry_policy": {"permanent_exit_codes": [2], "timeout_factor": 2},
        }
    )
    assert custom.permanent_exit_codes == {2} and custom.timeout_factor == 2.0
    assert custom.backoff.base_seconds == 0


@given(st.sampled_from(list(FailureClass)), st.integers(1, 20), st.integers(0, 10), st.floats(0, 1))
def test_decision_never_exceeds_the_attempt_limit(
    failure: FailureClass, attempts: int, max_retries: int, draw: float
) -> None:
    d = decide(POLICY, failure, 1, attempts, max_retries, T0, draw)
    if attempts >= max_retries + 1:
        assert d.next_retry_at is None
    elif d.next_retry_at is not None:
        assert d.next_retry_at >= T0
