"""Incremental QA: which outputs changed since their stored result, and the rows kept.

An output is checked again when anything `qa` judged it by may have changed: its
attempt, its size or mtime, its manifest's size or mtime, or the rules and config
(`rules_hash`). Otherwise the stored result stands and the file is not opened. The
facts are taken before a check, so a file rewritten during one is checked next time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from campaigns.core.spec import QARules
from campaigns.qa.checks import Target

#: The file facts compared with the stored ones.
FACTS = ("output_size", "output_mtime_ns", "manifest_size", "manifest_mtime_ns")


def rules_hash(rules: QARules, config_hash: str) -> str:
    """A hash of what every result depends on besides the files: the rules and the config."""
    text = json.dumps({"rules": asdict(rules), "config": config_hash}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def facts(target: Target, catalogs: Path) -> dict[str, int | None]:
    """Size and mtime (ns) of the output and of its manifest; None where there is no file."""
    out: dict[str, int | None] = dict.fromkeys(FACTS)
    for prefix, path in (("output", catalogs / target.output), ("manifest", target.manifest)):
        if path is None:
            continue
        try:
            info = os.stat(path)
        except OSError:
            continue
        out[f"{prefix}_size"] = info.st_size
        out[f"{prefix}_mtime_ns"] = info.st_mtime_ns
    return out


def unchanged(
    target: Target, seen: Mapping[str, int | None], stored: Mapping[str, Any] | None, rules: str
) -> bool:
    """True when `stored` judged this very output (same attempt, facts and rules)."""
    if stored is None or seen["output_size"] is None:  # a missing output is cheap to recheck
        return False
    return (
        stored["rules_hash"] == rules
        and stored["attempt"] == target.attempt
        and all(stored[name] == seen[name] for name in FACTS)
    )


def stored_row(target: Target, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The report row of a result kept from an earlier `qa` (the same as checking again)."""
    return {
        "key": target.key,
        "uid": target.uid,
        "output": target.output,
        "attempt": target.attempt,
        "ok": bool(stored["ok"]),
        "problems": list(stored["problems"]),
        "size": stored["output_size"],
        "sha256": stored["sha256"],
        "seconds": stored["seconds"],
    }


def to_store(
    job_ids: Sequence[int],
    rows: Sequence[Mapping[str, Any]],
    seen: Sequence[Mapping[str, int | None]],
    rules: str,
) -> list[dict[str, Any]]:
    """The records of freshly checked outputs, for the store."""
    return [
        {
            "job_id": job_id,
            "attempt": row["attempt"],
            "rules_hash": rules,
            **facts_,
            "ok": bool(row["ok"]),
            "problems": list(row["problems"]),
            "sha256": row["sha256"],
            "seconds": float(row["seconds"]),
        }
        for job_id, row, facts_ in zip(job_ids, rows, seen, strict=True)
    ]
