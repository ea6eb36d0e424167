"""What `qa` found: the report value and the files it is written to.

Under qa/validation_reports/:

    qa_<YYYYmmddTHHMMSSZ>.json   summary, rules, the invalid jobs and their problems
    qa_<YYYYmmddTHHMMSSZ>.csv    one row per checked job
    latest.json, latest.csv      copies of the newest pair
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaigns.core.times import iso
from campaigns.node.files import write_atomic

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("key", "uid", "output", "attempt", "ok", "problems", "size", "sha256", "seconds")
_ERROR_CHARS = 400  # longest error text stored on a requeued job


@dataclass(frozen=True)
class QAReport:
    """What `qa` found, and where it wrote its reports and plots."""

    name: str
    version: str
    path: str  # the campaign directory
    checked_at: datetime
    config_hash: str
    rules: dict[str, Any]
    checked: int  # completed jobs whose outputs were checked
    passed: int
    invalid: list[tuple[str, list[str]]]  # (job key, problems), in expansion order
    not_checked: dict[str, int]  # jobs in other states, by state
    bytes_checked: int
    seconds: float
    report: str  # qa_<time>.json
    latest: str  # latest.json
    csv: str  # qa_<time>.csv (latest.csv beside it)
    plots: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)  # keys now failed and due for a rerun
    exhausted: list[str] = field(default_factory=list)  # keys now failed with no attempts left
    results: pd.DataFrame | None = field(default=None, compare=False, repr=False)
    opened: int = 0  # outputs checked by this run; the others kept their stored result

    @property
    def ok(self) -> bool:
        """True when every checked output is valid."""
        return not self.invalid

    def to_dict(self) -> dict[str, Any]:
        """JSON form (also the content of the report files)."""
        uid_of: dict[str, Any] = {}
        output_of: dict[str, Any] = {}
        if self.results is not None and self.invalid:
            bad = self.results[~self.results["ok"]]
            uid_of = dict(zip(bad["key"], bad["uid"], strict=True))
            output_of = dict(zip(bad["key"], bad["output"], strict=True))
        return {
            "campaign": {"name": self.name, "version": self.version, "path": self.path},
            "checked_at": iso(self.checked_at),
            "config_hash": self.config_hash,
            "summary": {
                "checked": self.checked,
                "passed": self.passed,
                "invalid": len(self.invalid),
                "not_checked": self.not_checked,
                "bytes_checked": self.bytes_checked,
                "opened": self.opened,
                "seconds": round(self.seconds, 3),
            },
            "rules": self.rules,
            "invalid": [
                {
                    "key": key,
                    "uid": uid_of.get(key),
                    "output": output_of.get(key),
                    "problems": problems,
                }
                for key, problems in self.invalid
            ],
            "requeued": self.requeued,
            "exhausted": self.exhausted,
            "files": {
                "report": self.report,
                "latest": self.latest,
                "csv": self.csv,
                "plots": self.plots,
            },
        }


def write_reports(report: QAReport, frame: pd.DataFrame) -> None:
    """Write the JSON report and the per-job CSV, each also as latest.*."""
    text = json.dumps(report.to_dict(), indent=1) + "\n"
    table = frame.to_csv(index=False)
    folder = Path(report.report).parent
    for name, content in (
        (report.report, text),
        (report.latest, text),
        (report.csv, table),
        (str(folder / "latest.csv"), table),
    ):
        write_atomic(Path(name), content)


def error_text(problems: Sequence[str]) -> str:
    text = "invalid output: " + "; ".join(problems)
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 3] + "..."


def utc_stamp(moment: datetime | None = None) -> str:
    """`YYYYmmddTHHMMSSZ` of a moment (default now), as report file names use it."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
