"""What happens after a failure, per failure class. Pure.

- exit codes listed as permanent (a usage error, say) fail for good at once;
- infrastructure failures (node failure, preemption, boot failure, a lost task)
  retry after a short fixed delay: the job did nothing wrong;
- an invalid output (found by `qa --requeue`) is due again at once;
- a timeout retries with its time limit multiplied (capped);
- running out of memory retries with more memory (capped);
- everything else retries with exponential backoff with jitter.
Every retry spends one attempt; a job runs at most `max_retries + 1` times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from campaigns.core.backoff import BackoffPolicy, attempts_left
from campaigns.core.states import FailureClass

INFRASTRUCTURE = frozenset(
    {FailureClass.NODE_FAIL, FailureClass.PREEMPTED, FailureClass.BOOT_FAIL, FailureClass.LOST}
)


@dataclass(frozen=True)
class RetryPolicy:
    """`execution.retry_policy` with its defaults."""

    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    permanent_exit_codes: frozenset[int] = frozenset()
    infrastructure_delay_seconds: float = 30.0
    timeout_factor: float = 1.5
    max_time_minutes: int | None = None
    memory_factor: float = 2.0
    max_memory_mb: int | None = None

    @classmethod
    def from_config(cls, execution: Mapping[str, Any]) -> RetryPolicy:
        """Build from the merged `execution` section."""
        section = dict(execution.get("retry_policy") or {})
        return cls(
            backoff=BackoffPolicy.from_config(execution.get("retry_backoff")),
            permanent_exit_codes=frozenset(section.get("permanent_exit_codes", ())),
            infrastructure_delay_seconds=float(section.get("infrastructure_delay_seconds", 30)),
            timeout_factor=float(section.get("timeout_factor", 1.5)),
            max_time_minutes=section.get("max_time_minutes"),
            memory_factor=float(section.get("memory_factor", 2.0)),
            max_memory_mb=section.get("max_memory_mb"),
        )


@dataclass(frozen=True)
class Decision:
    """After a failed attempt: when the job may run again, and with what scaling."""

    next_retry_at: datetime | None  # None: failed for good
    time_scale: float
    memory_scale: float
    reason: str


def decide(
    policy: RetryPolicy,
    failure: FailureClass,
    exit_code: int | None,
    attempts: int,
    max_retries: int,
    failed_at: datetime,
    draw: float,
    time_scale: float = 1.0,
    memory_scale: float = 1.0,
) -> Decision:
    """The retry decision for a job whose attempt number `attempts` just failed."""
    if failure == FailureClass.EXIT_CODE and exit_code in policy.permanent_exit_codes:
        return Decision(
            None,
            time_scale,
            memory_scale,
            f"exit code {exit_code} is listed as permanent: not retried",
        )
    if not attempts_left(attempts, max_retries):
        return Decision(
            None, time_scale, memory_scale, f"no attempts left ({attempts} of {max_retries + 1})"
        )
    if failure == FailureClass.INVALID_OUTPUT:
        return Decision(failed_at, time_scale, memory_scale, "invalid output: rerun at once")
    if failure in INFRASTRUCTURE:
        at = failed_at + timedelta(seconds=policy.infrastructure_delay_seconds)
        return Decision(at, time_scale, memory_scale, f"{failure.value}: retry soon")
    at = policy.backoff.next_retry_at(failed_at, attempts, draw)
    if failure == FailureClass.TIMEOUT:
        return Decision(
            at,
            time_scale * policy.timeout_factor,
            memory_scale,
            f"timeout: retry with {policy.timeout_factor}x the time limit",
        )
    if failure == FailureClass.OUT_OF_MEMORY:
        return Decision(
            at,
            time_scale,
            memory_scale * policy.memory_factor,
            f"out of memory: retry with {policy.memory_factor}x the memory",
        )
    return Decision(at, time_scale, memory_scale, "retry after backoff")


def scaled(
    minutes: int, memory_mb: int | None, time_scale: float, memory_scale: float, policy: RetryPolicy
) -> tuple[int, int | None]:
    """Time limit and memory after escalation, within the policy's caps."""
    new_minutes = max(1, round(minutes * time_scale))
    if policy.max_time_minutes is not None:
        new_minutes = min(new_minutes, max(minutes, policy.max_time_minutes))
    new_memory = memory_mb
    if memory_mb is not None:
        new_memory = max(1, round(memory_mb * memory_scale))
        if policy.max_memory_mb is not None:
            new_memory = min(new_memory, max(memory_mb, policy.max_memory_mb))
    return new_minutes, new_memory
