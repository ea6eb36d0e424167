"""The circuit breaker: when too many recent jobs fail, stop submitting. Pure.

A broken environment (a module that no longer loads, a full filesystem) makes every
job fail in turn; without a breaker a 40,000-job campaign burns its allocation on
them. The breaker looks at the most recently finished attempts since it was last
closed: when at least `failure_rate` of the last `window` failed, and at least
`min_failures` did, it opens. Running work is left alone; `submit --resume` closes it.
Cancelled attempts do not count (the user stopped them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Trip:
    """Why the breaker opens: `failures` of the last `finished` attempts failed."""

    failures: int
    finished: int

    def reason(self) -> str:
        """One line for status, notifications and the event log."""
        share = self.failures / self.finished
        return f"{self.failures} of the last {self.finished} finished jobs failed ({share:.0%})"


@dataclass(frozen=True)
class CircuitBreaker:
    """`execution.circuit_breaker`."""

    window: int = 200
    failure_rate: float = 0.5
    min_failures: int = 20
    enabled: bool = True

    @classmethod
    def from_config(cls, value: bool | Mapping[str, Any] | None) -> CircuitBreaker:
        """From the config: a mapping of settings, or `false` to turn it off."""
        if isinstance(value, bool) or value is None:
            return cls(enabled=value is not False)
        return cls(**dict(value))

    def trips(self, failed: Sequence[bool]) -> Trip | None:
        """The verdict on recent outcomes (newest first; True = failed), or None."""
        if not self.enabled:
            return None
        recent = failed[: self.window]
        failures = sum(recent)
        if failures >= self.min_failures and failures >= self.failure_rate * len(recent):
            return Trip(failures, len(recent))
        return None
