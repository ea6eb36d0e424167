"""Quality checks of finished outputs: manifests, checksums, the campaign's HDF5 rules.

`run_qa` checks the output of every `completed` job against the manifest its
latest attempt left (size, sha256, config hash) and, for HDF5 files, the
campaign's `qa:` rules (required datasets, min_rows, finite values, root
attributes). It writes, under qa/validation_reports/:

    qa_<YYYYmmddTHHMMSSZ>.json   summary, rules, the invalid jobs and their problems
    qa_<YYYYmmddTHHMMSSZ>.csv    one row per checked job
    latest.json, latest.csv      copies of the newest pair

and the summary plots (`campaigns.plots`). Cost at scale: manifests are read and
files hashed in a thread pool (hashlib releases the GIL, and threads hide
shared-filesystem latency); h5py serialises every call behind one global lock,
so the HDF5 rules of large campaigns run in a pool of processes instead.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaigns.reports import iso
from campaigns.spec import CampaignSpec, QARules
from campaigns.worker import sha256_of, write_atomic

if TYPE_CHECKING:
    import h5py
    import pandas as pd

    from campaigns.layout import Layout
    from campaigns.store import Store

HDF5_SUFFIXES = (".h5", ".hdf5", ".he5")
COLUMNS = ("key", "uid", "output", "attempt", "ok", "problems", "size", "sha256", "seconds")
#: Below this many HDF5 files, processes cost more to start than they save.
PROCESS_THRESHOLD = 1000
#: At most this many worker processes (login nodes are shared).
MAX_PROCESSES = 16
#: Bytes read at once when scanning a dataset for NaN/inf.
BLOCK_BYTES = 16 << 20
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


@dataclass(frozen=True)
class Target:
    """One completed job to check."""

    key: str
    uid: str
    output: str  # relative to catalogs/
    attempt: int | None
    manifest: str | None  # path of the latest attempt's manifest
    config_hash: str | None = None  # the config the job last ran under (its row's)


def run_qa(
    store: Store,
    layout: Layout,
    spec: CampaignSpec,
    now: datetime,
    *,
    requeue: bool = False,
    plots: bool = True,
    threads: int | None = None,
    processes: int | None = None,
) -> QAReport:
    """Check every completed job's output; write the reports (and plots); optionally requeue.

    With `requeue`, jobs with an invalid output become `failed` with failure class
    `invalid_output` and an error naming the problems (`Store.mark_invalid`). The
    attempt that wrote the output stays counted: jobs with attempts left are due at
    once (`retry --submit` reruns them), jobs without are exhausted and listed in
    `QAReport.exhausted` (`retry --reset KEY` starts them over). Counting it keeps a
    job whose program writes bad output every time from being rerun forever.
    `threads`/`processes` size the pools (default: automatic; processes=0 keeps the
    HDF5 checks in this process).
    """
    import pandas as pd

    started = time.perf_counter()
    campaign = store.campaign()
    rows = store.qa_targets()
    ids = {r["key"]: r["id"] for r in rows}
    targets = [
        Target(
            r["key"], r["uid"], r["output"], r["attempt"], r["manifest_path"], r.get("config_hash")
        )
        for r in rows
    ]
    results = check_outputs(
        targets,
        layout.catalogs,
        campaign["config_hash"],
        spec.qa,
        threads=threads,
        processes=processes,
    )
    invalid = [(row["key"], list(row["problems"])) for row in results if row["problems"]]
    frame = pd.DataFrame(
        [{**row, "problems": "; ".join(row["problems"])} for row in results], columns=list(COLUMNS)
    )
    frame["ok"] = frame["ok"].astype(bool)
    counts = store.counts()  # before any requeue: the states QA saw
    not_checked = {state: n for state, n in sorted(counts.items()) if state != "completed" and n}
    requeued: list[str] = []
    exhausted: list[str] = []
    if requeue and invalid:
        errors = [_error_text(problems) for _, problems in invalid]
        due, spent = store.mark_invalid([ids[key] for key, _ in invalid], errors, now)
        key_of = {v: k for k, v in ids.items()}
        requeued = [key_of[i] for i in due]
        exhausted = [key_of[i] for i in spent]
    plot_paths: list[str] = []
    if plots:
        from campaigns.plots import write_summary_plots

        plot_paths = [str(p) for p in write_summary_plots(store, layout)]
    stamp = utc_stamp(now)
    folder = layout.qa_reports
    report = QAReport(
        name=campaign["name"],
        version=campaign["version"],
        path=str(layout.root),
        checked_at=now,
        config_hash=campaign["config_hash"],
        rules=asdict(spec.qa),
        checked=len(frame),
        passed=int(frame["ok"].sum()),
        invalid=invalid,
        not_checked=not_checked,
        bytes_checked=int(frame["size"].fillna(0).sum()),
        seconds=time.perf_counter() - started,
        report=str(folder / f"qa_{stamp}.json"),
        latest=str(folder / "latest.json"),
        csv=str(folder / f"qa_{stamp}.csv"),
        plots=plot_paths,
        requeued=requeued,
        exhausted=exhausted,
        results=frame,
    )
    write_reports(report, frame)
    return report


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


def _error_text(problems: Sequence[str]) -> str:
    text = "invalid output: " + "; ".join(problems)
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 3] + "..."


# -- checking -------------------------------------------------------------------------


def check_outputs(
    targets: Sequence[Target],
    catalogs: Path,
    config_hash: str,
    rules: QARules,
    *,
    threads: int | None = None,
    processes: int | None = None,
) -> list[dict[str, Any]]:
    """One result row (COLUMNS, problems as a list) per target, in order.

    Manifests and checksums run in a thread pool. The HDF5 rules run meanwhile in this
    thread (h5py serialises all threads anyway) or, for many files on several cores,
    in `processes` worker processes (`python -m campaigns.qa`).
    """
    cpus = os.cpu_count() or 1
    threads = threads or min(32, 4 * cpus)
    hdf5 = [
        (i, str(catalogs / t.output))
        for i, t in enumerate(targets)
        if Path(t.output).suffix.lower() in HDF5_SUFFIXES
    ]
    if processes is None:
        processes = min(cpus, MAX_PROCESSES) if len(hdf5) >= PROCESS_THRESHOLD and cpus > 1 else 0
    with ThreadPoolExecutor(threads, thread_name_prefix="qa") as pool:
        pending = pool.map(lambda t: _check_files(t, catalogs, config_hash), targets)
        if processes:
            found = _hdf5_in_processes(hdf5, rules, processes)
        else:
            found = check_hdf5_batch(hdf5, rules)
        rows = list(pending)
    for index, (problems, seconds) in found.items():
        row = rows[index]
        if row["size"]:  # a missing or empty file has said all there is to say
            row["problems"].extend(problems)
        row["seconds"] += seconds
    for row in rows:
        row["ok"] = not row["problems"]
        row["seconds"] = round(row["seconds"], 6)
    return rows


def _hdf5_in_processes(
    paths: Sequence[tuple[int, str]], rules: QARules, processes: int
) -> dict[int, tuple[list[str], float]]:
    """`check_hdf5_batch` split over worker processes; a failed worker's share runs here.

    Plain subprocesses fed JSON on stdin, not multiprocessing: they never re-import the
    caller's __main__ nor fork a process that runs threads.
    """
    import campaigns

    shares = [list(paths[k::processes]) for k in range(processes)]  # interleaved: mixed sizes
    env = dict(os.environ)
    source = str(Path(campaigns.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    rules_json = asdict(rules)

    def run(share: list[tuple[int, str]]) -> dict[int, tuple[list[str], float]]:
        payload = json.dumps({"rules": rules_json, "paths": share})
        try:
            done = subprocess.run(
                [sys.executable, "-m", "campaigns.qa"],
                input=payload,
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if done.returncode == 0:
                answer = json.loads(done.stdout)
                return {int(k): (list(v[0]), float(v[1])) for k, v in answer.items()}
        except (OSError, ValueError):
            pass
        return check_hdf5_batch(share, rules)  # the worker could not run: do its share here

    found: dict[int, tuple[list[str], float]] = {}
    with ThreadPoolExecutor(processes) as feeders:
        for part in feeders.map(run, [s for s in shares if s]):
            found.update(part)
    return found


def _check_files(target: Target, catalogs: Path, config_hash: str) -> dict[str, Any]:
    """Manifest, existence, size and checksum of one job's output (problems as a list)."""
    started = time.perf_counter()
    problems: list[str] = []
    row: dict[str, Any] = {
        "key": target.key,
        "uid": target.uid,
        "output": target.output,
        "attempt": target.attempt,
        "ok": False,
        "problems": problems,
        "size": None,
        "sha256": None,
        "seconds": 0.0,
    }
    expected = _manifest_entry(target, target.config_hash or config_hash, problems)
    path = catalogs / target.output
    try:
        info = path.stat()
    except FileNotFoundError:
        problems.append(f"output missing: catalogs/{target.output}")
        info = None
    except OSError as exc:
        problems.append(f"cannot read output catalogs/{target.output}: {exc.strerror}")
        info = None
    if info is not None:
        row["size"] = info.st_size
        if not path.is_file():
            problems.append(f"output catalogs/{target.output} is not a regular file")
            row["size"] = 0
        elif info.st_size == 0:
            problems.append(f"output is empty (0 bytes): catalogs/{target.output}")
        elif expected is not None and expected.get("size") not in (None, info.st_size):
            problems.append(
                f"size mismatch: {info.st_size} bytes on disk, the manifest says "
                f"{expected['size']} (truncated or rewritten)"
            )
        elif expected is not None and expected.get("sha256"):
            try:
                digest = sha256_of(path)
            except OSError as exc:
                problems.append(f"cannot read output catalogs/{target.output}: {exc.strerror}")
            else:
                row["sha256"] = digest
                if digest != expected["sha256"]:
                    problems.append(
                        f"checksum mismatch: sha256 {digest[:12]}... on disk, the "
                        f"manifest says {str(expected['sha256'])[:12]}..."
                    )
    row["seconds"] = time.perf_counter() - started
    return row


def _manifest_entry(
    target: Target, config_hash: str, problems: list[str]
) -> Mapping[str, Any] | None:
    """The manifest's record of the job's output; problems with the manifest go to `problems`."""
    if not target.manifest:
        problems.append(f"no manifest recorded for attempt {target.attempt}")
        return None
    try:
        with open(target.manifest, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        problems.append(f"manifest missing: {target.manifest}")
        return None
    except (OSError, ValueError) as exc:
        problems.append(f"manifest unreadable: {target.manifest}: {exc}")
        return None
    if not isinstance(manifest, dict):
        problems.append(f"manifest unreadable: {target.manifest} is not a JSON object")
        return None
    if manifest.get("uid") != target.uid or manifest.get("attempt") != target.attempt:
        problems.append(
            f"manifest {target.manifest} is for job {manifest.get('key')} attempt "
            f"{manifest.get('attempt')}, not attempt {target.attempt} of this job"
        )
    if manifest.get("config_hash") != config_hash:
        problems.append(
            f"config hash mismatch: the manifest says {manifest.get('config_hash')}, "
            f"the campaign is {config_hash} (made under another configuration)"
        )
    for entry in manifest.get("outputs") or ():
        if isinstance(entry, Mapping) and entry.get("path") == target.output:
            return entry
    problems.append(f"the manifest lists no output {target.output}")
    return None


def check_hdf5_batch(
    paths: Sequence[tuple[int, str]], rules: QARules
) -> dict[int, tuple[list[str], float]]:
    """`check_hdf5` over (index, path) pairs: index -> (problems, seconds)."""
    out = {}
    for index, path in paths:
        started = time.perf_counter()
        try:
            present = os.path.isfile(path) and os.path.getsize(path) > 0
        except OSError:  # gone since it was listed
            present = False
        if present:
            try:
                problems = check_hdf5(Path(path), rules)
            except Exception as exc:  # noqa: BLE001 -- one odd file must not stop a 40,000-file check
                problems = [f"cannot check HDF5 content: {type(exc).__name__}: {_short(exc)}"]
        else:
            problems = []  # the file checks report it
        out[index] = (problems, time.perf_counter() - started)
    return out


def check_hdf5(path: Path, rules: QARules) -> list[str]:
    """Problems of one HDF5 file under the campaign's `qa:` rules (none: valid).

    Uses h5py's low-level API for lookups and whole-dataset reads: at tens of thousands
    of small files the high-level objects' Python overhead is most of the cost.
    """
    problems: list[str] = []
    try:
        handle = _open_hdf5(path)
    except (OSError, ValueError) as exc:
        return [f"not a readable HDF5 file: {_short(exc)}"]
    with handle:
        try:
            for name in rules.required_attributes:
                if name not in handle.attrs:
                    problems.append(f"missing root attribute '{name}'")
            opened: dict[str, Any] = {}
            for rule, names in (
                ("required_datasets", rules.required_datasets),
                ("finite_datasets", rules.finite_datasets),
            ):
                for name in names:
                    if name in opened:
                        continue  # its absence is reported once
                    opened[name] = _dataset(handle, name, problems, rule)
            for name in rules.required_datasets:
                dataset = opened[name]
                if dataset is not None and rules.min_rows:
                    shape = dataset.shape
                    rows = shape[0] if shape else 1
                    if rows < rules.min_rows:
                        problems.append(
                            f"{name} has {rows} rows, fewer than min_rows {rules.min_rows}"
                        )
            for name in rules.finite_datasets:
                dataset = opened[name]
                if dataset is not None:
                    problem = _nonfinite(dataset, name)
                    if problem:
                        problems.append(problem)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            problems.append(f"cannot read HDF5 content: {_short(exc)}")
    return problems


def _open_hdf5(path: Path) -> h5py.File:
    import h5py

    try:
        # No file locks: QA only reads, and locks fail on some shared filesystems.
        return h5py.File(path, "r", locking=False)
    except TypeError:  # an h5py/HDF5 without the locking option
        return h5py.File(path, "r")


def _dataset(handle: h5py.File, name: str, problems: list[str], rule: str) -> Any:
    """The low-level DatasetID of `name`, or None (with a problem) if it is missing or a group."""
    import h5py

    try:
        item = h5py.h5o.open(handle.id, name.encode())
    except KeyError:
        problems.append(f"missing dataset {name} ({rule})")
        return None
    if not isinstance(item, h5py.h5d.DatasetID):
        problems.append(f"{name} is a group, not a dataset ({rule})")
        return None
    return item


def _nonfinite(dataset: Any, name: str) -> str | None:
    """`name holds NaN/inf values in N rows (first at row R)`, or None; read in blocks of rows."""
    import h5py
    import numpy as np

    dtype = dataset.dtype
    fields = [f for f in (dtype.names or ()) if dtype[f].kind in "fc"]
    if dtype.names is None and dtype.kind in "iub":
        return None  # integers are always finite
    if dtype.names is None and dtype.kind not in "fc":
        return f"{name} is not numeric ({dtype}); finite_datasets needs numbers"
    if dtype.names is not None and not fields:
        return None
    shape = dataset.shape
    size = math.prod(shape)
    if size == 0:
        return None
    row_bytes = max(1, dtype.itemsize * math.prod(shape[1:]))
    if not shape or size * dtype.itemsize <= BLOCK_BYTES:
        values = np.empty(shape, dtype=dtype)
        dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, values)
        blocks: Any = [(0, values)]
    else:
        high = h5py.Dataset(dataset)
        step = max(1, BLOCK_BYTES // row_bytes)
        if high.chunks:  # whole chunks per read: no chunk is decompressed twice
            step = max(high.chunks[0], step // high.chunks[0] * high.chunks[0])
        blocks = ((start, high[start : start + step]) for start in range(0, shape[0], step))
    count, first = 0, None
    for start, block in blocks:
        bad = _bad_mask(block, fields)
        if bad.ndim == 0:
            bad = bad.reshape(1)
        elif bad.ndim > 1:
            bad = bad.reshape(bad.shape[0], -1).any(axis=1)
        hits = np.flatnonzero(bad)
        if hits.size:
            count += int(hits.size)
            first = start + int(hits[0]) if first is None else first
    if not count:
        return None
    return f"{name} holds NaN/inf values in {count} rows (first at row {first})"


def _bad_mask(values: Any, fields: Sequence[str]) -> Any:
    """True where a value (or, for compound rows, any float field of it) is NaN or inf."""
    import numpy as np

    if not fields:
        return ~np.isfinite(values)
    mask = np.zeros(values.shape, dtype=bool)
    for name in fields:
        bad = ~np.isfinite(values[name])
        if bad.ndim > values.ndim:  # a field that is itself an array
            bad = bad.reshape(values.shape + (-1,)).any(axis=-1)
        mask |= bad
    return mask


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."


def utc_stamp(moment: datetime | None = None) -> str:
    """`YYYYmmddTHHMMSSZ` of a moment (default now), as report file names use it."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _worker_main() -> int:
    """`python -m campaigns.qa`: check the HDF5 files named on stdin (JSON), answer on stdout."""
    request = json.load(sys.stdin)
    given = request["rules"]
    rules = QARules(
        required_datasets=tuple(given["required_datasets"]),
        min_rows=int(given["min_rows"]),
        finite_datasets=tuple(given["finite_datasets"]),
        required_attributes=tuple(given["required_attributes"]),
    )
    found = check_hdf5_batch([(int(i), str(p)) for i, p in request["paths"]], rules)
    json.dump({str(i): [problems, seconds] for i, (problems, seconds) in found.items()}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker_main())
