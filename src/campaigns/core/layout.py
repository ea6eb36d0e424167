"""The campaign directory and every path in it. Pure: `init` creates the folders.

<base_path>/<version>_<name-slug>/
  metadata/   campaign_config.yaml, campaign.db, provenance, the lock
  catalogs/   job outputs, laid out by `job.output`
  logs/       one folder per submitted array: spec, script, task logs, manifests
  qa/validation_reports/   qa/summary_plots/
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand_path(text: str, environ: Mapping[str, str]) -> str:
    """`$VAR`, `${VAR}` and a leading `~` replaced from `environ` (pure: the environment is
    passed in). An unset variable raises KeyError with its name."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in environ:
            raise KeyError(name)
        return environ[name]

    out = _VARIABLE.sub(value, text)
    if out == "~" or out.startswith("~/"):
        if "HOME" not in environ:
            raise KeyError("HOME")
        out = environ["HOME"] + out[1:]
    return out


@dataclass(frozen=True)
class Layout:
    """Paths of one campaign directory."""

    root: Path
    metadata: Path  # campaign_config.yaml, campaign.db, provenance files, manager.lock
    catalogs: Path  # job outputs
    logs: Path  # array-NNNNNN/ folders
    qa: Path
    qa_reports: Path
    qa_plots: Path
    config_file: Path  # written last by `init`: its presence means "initialised"
    db_file: Path
    lock_file: Path

    @classmethod
    def at(cls, root: Path) -> Layout:
        """The layout of the campaign directory `root`."""
        metadata, qa = root / "metadata", root / "qa"
        return cls(
            root,
            metadata,
            root / "catalogs",
            root / "logs",
            qa,
            qa / "validation_reports",
            qa / "summary_plots",
            metadata / "campaign_config.yaml",
            metadata / "campaign.db",
            metadata / "manager.lock",
        )

    @classmethod
    def for_campaign(
        cls,
        slug: str,
        base_path: str,
        root: str | os.PathLike[str] | None,
        environ: Mapping[str, str] | None = None,
    ) -> Layout:
        """`--root DIR` wins over `outputs.base_path`, whose `$VAR` and `~` are expanded from
        `environ` (KeyError: an unset variable); relative paths resolve against the cwd."""
        if root is not None:
            base = Path(root)
        else:
            base = Path(expand_path(base_path, environ if environ is not None else {}))
        return cls.at((base / slug).absolute())

    def db_url(self, configured: str | None = None) -> str:
        """The store's SQLAlchemy URL: the configured one, else SQLite in metadata/."""
        return configured or f"sqlite:///{self.db_file}"

    def folders(self) -> tuple[Path, ...]:
        """Every folder `init` creates."""
        return (self.metadata, self.catalogs, self.logs, self.qa_reports, self.qa_plots)

    def array_dir(self, submission_id: int) -> Path:
        """Folder of one submitted array under logs/."""
        return self.logs / f"array-{submission_id:06d}"

    def output(self, relative: str) -> Path:
        """Absolute path of an output given relative to catalogs/."""
        return self.catalogs / relative
