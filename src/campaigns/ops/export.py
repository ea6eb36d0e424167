"""Export the campaign's jobs as a table (`status --export FILE.csv|FILE.parquet`).

One row per job, in expansion order:

    key, uid, <one column per parameter, with YAML's types>, state, attempts,
    failure_class, exit_code, error, started_at, ended_at, runtime_seconds,
    output (relative to catalogs/), scheduler_id

Times are UTC (ISO-8601 in CSV). A parameter whose name clashes with one of the
fixed columns is written as `param_<name>`. Parquet needs pyarrow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaigns.errors import InputError
from campaigns.node.files import replacing

if TYPE_CHECKING:
    import pandas as pd

    from campaigns.store import Store

FORMATS = (".csv", ".parquet")
_FIXED_COLUMNS = (
    "key uid state attempts failure_class exit_code error started_at ended_at "
    "runtime_seconds output scheduler_id"
)
FIXED = tuple(_FIXED_COLUMNS.split())
# The store columns behind FIXED: `params` spreads into one column per parameter and
# `runtime_seconds` is derived from the times.
JOB_COLUMNS = ["params", *(c for c in FIXED if c != "runtime_seconds")]


@dataclass(frozen=True)
class ExportReport:
    """What `status --export` wrote."""

    path: str
    rows: int
    columns: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def check_path(path: str | os.PathLike[str]) -> str:
    """The format of an export path (`.csv` or `.parquet`); InputError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"cannot export to '{path}': the file name must end in .csv or .parquet.")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError(
                f"cannot export to '{path}': Parquet needs pyarrow. "
                "Run `pip install pyarrow`, or export to a .csv file."
            ) from None
    return suffix


def jobs_frame(store: Store) -> pd.DataFrame:
    """The export table as a DataFrame (parameters keep YAML's types)."""
    return rows_frame(store.jobs(columns=JOB_COLUMNS))


def rows_frame(rows: Sequence[Mapping[str, Any]], leading: Sequence[str] = ()) -> pd.DataFrame:
    """The export table of job rows (store columns), `leading` columns of the rows first."""
    import pandas as pd

    params = [json.loads(r["params"]) for r in rows]
    names: list[str] = []
    for p in params:  # every parameter, in the order the campaign declares them
        names.extend(n for n in p if n not in names)
    column = {n: f"param_{n}" if n in FIXED else n for n in names}
    records = []
    for row, p in zip(rows, params, strict=True):
        started, ended = row["started_at"], row["ended_at"]
        runtime = (ended - started).total_seconds() if started and ended else None
        record: dict[str, Any] = {c: row[c] for c in leading}
        record.update(key=row["key"], uid=row["uid"])
        record.update({column[n]: p.get(n) for n in names})
        record.update({k: row[k] for k in FIXED[2:] if k != "runtime_seconds"})
        record["runtime_seconds"] = runtime
        records.append(record)
    order = [*leading, "key", "uid", *column.values(), *FIXED[2:]]
    frame = pd.DataFrame.from_records(records, columns=order)
    for name in ("started_at", "ended_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    frame["runtime_seconds"] = frame["runtime_seconds"].astype("float64")
    frame["exit_code"] = frame["exit_code"].astype("Int64")  # nullable: no code yet
    return frame


def export_jobs(store: Store, path: str | os.PathLike[str]) -> ExportReport:
    """Write one row per job to `path` (.csv, or .parquet with pyarrow), atomically."""
    return write_frame(jobs_frame(store), path)


def write_frame(frame: pd.DataFrame, path: str | os.PathLike[str]) -> ExportReport:
    """Write an export table to `path` (.csv, or .parquet with pyarrow), atomically."""
    suffix = check_path(path)
    target = Path(path)
    with replacing(target) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
        else:
            frame.to_parquet(tmp, index=False)
    return ExportReport(str(target), len(frame), list(frame.columns))
