"""Waiting in tests: on a condition, with a generous deadline, never for a fixed time (CI
shares two cores with other work, so anything can take several times longer than here)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 15, what: str = "condition") -> T:
    """Poll `condition()` until it returns something truthy (returned); fail after `timeout`
    seconds, naming `what` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.1)
