"""Moments as text and back: ISO-8601 UTC, as reports, manifests and the JSON output use it."""

from __future__ import annotations

from datetime import datetime


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC text (`...Z`), or None."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    """An ISO-8601 moment (`Z` or an offset) as an aware datetime; None for no text."""
    if not text:
        return None
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
