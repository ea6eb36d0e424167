"""What produced this campaign: files and versions kept in metadata/.

metadata/campaign_source.yaml   the campaign file as written
metadata/machine.yaml           the machine file used
metadata/campaign_config.yaml   the merged config (written by init, last)
metadata/provenance.json        config hash, package version, git SHA, Python and libraries
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from campaigns.core.layout import Layout
from campaigns.core.spec import CampaignSpec
from campaigns.node.files import write_atomic

LIBRARIES = (
    "pyyaml",
    "jsonschema",
    "submitit",
    "sqlalchemy",
    "tenacity",
    "pandas",
    "h5py",
    "numpy",
    "mpi4py",
    "rich",
    "matplotlib",
)


def versions() -> dict[str, str | None]:
    """Installed versions of campaigns and the libraries it relies on."""
    out: dict[str, str | None] = {}
    for name in ("campaigns", *LIBRARIES):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_sha() -> str | None:
    """The commit of the campaigns source tree, when it is a git checkout."""
    source = Path(__file__).resolve().parent
    git = shutil.which("git")
    if git is None:
        return None
    try:
        result = subprocess.run(
            [git, "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    dirty = subprocess.run(
        [git, "-C", str(source), "status", "--porcelain", "--", "."],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.strip()
    return result.stdout.strip() + ("-dirty" if dirty else "")


def write(layout: Layout, spec: CampaignSpec, campaign_file: Path) -> None:
    """Copy the source files and record versions in metadata/."""
    write_atomic(
        layout.metadata / "campaign_source.yaml", campaign_file.read_text(encoding="utf-8")
    )
    if spec.machine.source:
        write_atomic(
            layout.metadata / "machine.yaml", Path(spec.machine.source).read_text(encoding="utf-8")
        )
    record = {
        "config_hash": spec.config_hash,
        "campaign_file": str(campaign_file.resolve()),
        "machine_file": spec.machine.source,
        "base_path": spec.base_path,  # as written: `$PSCRATCH/campaigns`
        "campaign_dir": str(layout.root),  # resolved at init
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions(),
    }
    write_atomic(layout.metadata / "provenance.json", json.dumps(record, indent=2) + "\n")


def diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human lines naming every key that differs between two configs."""
    lines = []
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in old:
            lines.append(f"{path} added")
        elif key not in new:
            lines.append(f"{path} removed")
        elif isinstance(old[key], Mapping) and isinstance(new[key], Mapping):
            lines.extend(diff(old[key], new[key], path))
        elif old[key] != new[key]:
            before, after = _around_change(old[key], new[key])
            lines.append(f"{path}: {before} -> {after}")
    return lines


def _around_change(old: Any, new: Any, width: int = 40) -> tuple[str, str]:
    """Both values as JSON, each cut to the part around where they first differ (a long
    command that changed one flag shows that flag, not their common start)."""
    a, b = json.dumps(old, default=str), json.dumps(new, default=str)
    if len(a) <= width and len(b) <= width:
        return a, b
    start = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    start = max(0, start - 12)
    return _cut(a, start, width), _cut(b, start, width)


def _cut(text: str, start: int, width: int) -> str:
    part = text[start : start + width]
    return ("..." if start else "") + part + ("..." if start + width < len(text) else "")
