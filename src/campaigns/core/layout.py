"""The campaign directory and every path in it.

<base_path>/<version>_<name-slug>/
  metadata/   campaign_config.yaml, campaign.db, provenance, the lock
  catalogs/   job outputs, laid out by `job.output`
  logs/       one folder per submitted array: spec, script, task logs, manifests
  qa/validation_reports/   qa/summary_plots/
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Paths of one campaign directory (pure: `init` creates the folders)."""

    root: Path

    @classmethod
    def for_campaign(cls, slug: str, base_path: str, root: str | os.PathLike[str] | None) -> Layout:
        """`--root DIR` wins over `outputs.base_path`; relative paths resolve against the cwd."""
        base = Path(root) if root is not None else Path(base_path).expanduser()
        return cls((base / slug).absolute())

    @property
    def metadata(self) -> Path:
        return self.root / "metadata"

    @property
    def catalogs(self) -> Path:
        return self.root / "catalogs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def qa(self) -> Path:
        return self.root / "qa"

    @property
    def qa_reports(self) -> Path:
        return self.qa / "validation_reports"

    @property
    def qa_plots(self) -> Path:
        return self.qa / "summary_plots"

    @property
    def config_file(self) -> Path:
        return self.metadata / "campaign_config.yaml"

    @property
    def db_file(self) -> Path:
        return self.metadata / "campaign.db"

    @property
    def lock_file(self) -> Path:
        return self.metadata / "manager.lock"

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
