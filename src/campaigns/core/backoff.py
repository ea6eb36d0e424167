"""The retry policy: how long a failed job waits, and whether it may run again. Pure.

The delay before attempt n+1 is ``min(max_seconds, base_seconds * factor**(n-1))``
multiplied by a jitter factor in ``[1 - jitter, 1 + jitter]``, counted from the
end of the failed attempt n. Randomness and the clock are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

DEFAULT_BASE_SECONDS = 60.0
DEFAULT_FACTOR = 2.0
DEFAULT_MAX_SECONDS = 3600.0
DEFAULT_JITTER = 0.1


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with jitter."""

    base_seconds: float = DEFAULT_BASE_SECONDS
    factor: float = DEFAULT_FACTOR
    max_seconds: float = DEFAULT_MAX_SECONDS
    jitter: float = DEFAULT_JITTER

    @classmethod
    def from_config(cls, value: str | dict[str, Any] | None) -> BackoffPolicy:
        """Build from `execution.retry_backoff` (`exponential`, `none` or a mapping)."""
        if value is None or value == "exponential":
            return cls()
        if value == "none":
            return cls(base_seconds=0.0, factor=1.0, max_seconds=0.0, jitter=0.0)
        if isinstance(value, dict):
            return cls(**{k: float(v) for k, v in value.items()})
        raise ValueError(f"unknown retry_backoff {value!r}")

    def base_delay(self, attempt: int) -> float:
        """Delay in seconds after failed attempt `attempt` (1-based), before jitter."""
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        if self.base_seconds <= 0 or self.factor == 1:
            # No growth: also keeps huge attempt numbers O(1) (a loop would spin for ages).
            return min(self.max_seconds, self.base_seconds)
        try:
            delay = self.base_seconds * self.factor ** (attempt - 1)
        except OverflowError:  # factor**n beyond float range: far past the cap anyway
            return self.max_seconds
        return min(self.max_seconds, delay)

    def delay(self, attempt: int, draw: float) -> float:
        """Jittered delay; `draw` is a uniform random number in [0, 1)."""
        if not 0.0 <= draw <= 1.0:
            raise ValueError("draw must lie in [0, 1]")
        base = self.base_delay(attempt)
        low, high = base * (1.0 - self.jitter), base * (1.0 + self.jitter)
        # Clamped: rounding must never push the delay out of its documented interval.
        return min(high, max(low, base * (1.0 - self.jitter + 2.0 * self.jitter * draw)))

    def next_retry_at(self, failed_at: datetime, attempt: int, draw: float) -> datetime:
        """When a job whose attempt `attempt` ended at `failed_at` may run again."""
        return failed_at + timedelta(seconds=self.delay(attempt, draw))


def attempts_left(attempts: int, max_retries: int) -> bool:
    """True while a job that ran `attempts` times may run once more."""
    return attempts < max_retries + 1


def retry_standing(
    attempts: int, max_retries: int, next_retry_at: datetime | None, now: datetime
) -> str:
    """Where a failed job stands: `exhausted` (no attempts left, or failed for good),
    `due` (may run again now) or `waiting` (its backoff has not elapsed)."""
    if not attempts_left(attempts, max_retries) or next_retry_at is None:
        return "exhausted"
    return "due" if next_retry_at <= now else "waiting"
