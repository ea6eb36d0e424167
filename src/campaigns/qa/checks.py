"""Checks of one finished output: its manifest, size and checksum, and the HDF5 rules.

`check_files` compares an output with the manifest its attempt left (size, sha256,
config hash); `check_hdf5` applies the campaign's `qa:` rules (required datasets,
min_rows, finite values, root attributes) through h5py's low-level API.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaigns.core.spec import QARules
from campaigns.node.files import sha256_of

if TYPE_CHECKING:
    import h5py

HDF5_SUFFIXES = (".h5", ".hdf5", ".he5")
#: Bytes read at once when scanning a dataset for NaN/inf.
BLOCK_BYTES = 16 << 20


@dataclass(frozen=True)
class Target:
    """One completed job to check."""

    key: str
    uid: str
    output: str  # relative to catalogs/
    attempt: int | None
    manifest: str | None  # path of the latest attempt's manifest
    config_hash: str | None = None  # the config the job last ran under (its row's)


def check_files(target: Target, catalogs: Path, config_hash: str) -> dict[str, Any]:
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
