"""The context of one command: everything an operation works with, built once.

`Context(config)` reads the campaign file and its machine file once, validates them
(skipping the schema when they still merge to the config recorded at `init`), and
collects the collaborators every operation receives instead of reaching for them:
the spec, the campaign directory, the store, the schedulers, the clock, the random
source and the retry policy.

A campaign whose file was edited after `init` (or no longer validates) is opened as it was
recorded (`metadata/campaign_config.yaml`): `status`, `monitor`, `cancel`, `qa` and the
autopilot's ticks keep working on what was submitted, `edit` says what differs, and only the
commands that act on the file as written (`init --force`, `validate`; `submit` and `retry`
refuse) read the file itself (`as_written`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from campaigns.core.config import (
    build_spec,
    deep_merge,
    load_schema,
    peek_location,
    read_document,
    read_documents,
    with_backends,
)
from campaigns.core.expand import Expansion, expand
from campaigns.core.layout import Layout
from campaigns.core.planning import Limits
from campaigns.core.policy import RetryPolicy
from campaigns.core.site_checks import SiteReview, ceilings, review_site
from campaigns.core.spec import CampaignSpec, Resources
from campaigns.core.yamlsource import Document
from campaigns.errors import ConfigChangedError, ConfigError, InputError
from campaigns.ops import location, provenance
from campaigns.ops.lock import CampaignLease, CampaignLock
from campaigns.scheduler import registry
from campaigns.scheduler.base import Scheduler
from campaigns.store import Store


def utcnow() -> datetime:
    """The real clock (operations take a clock so tests can move time)."""
    return datetime.now(timezone.utc)


class Context:
    """One campaign, as one command sees it."""

    def __init__(
        self,
        config: str | os.PathLike[str],
        *,
        root: str | os.PathLike[str] | None = None,
        db_url: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        schedulers: Mapping[str, Scheduler] | None = None,
        read_only: bool = False,
    ) -> None:
        """Read, validate and locate the campaign: the files are parsed exactly once.

        `root` puts the campaign directory under it (instead of `outputs.base_path`),
        `db_url` chooses another database (`ops.location` says which is the default);
        `clock`, `rng` and `schedulers` (backend name -> instance) replace the real ones,
        for tests and embedding. `read_only` opens the store so that nothing can be written
        (the web dashboard's view).
        """
        self.config_path = Path(config)
        campaign, machine = read_documents(self.config_path)
        schema = with_backends(load_schema(), [*registry.names(), *(schedulers or {})])
        recorded = _recorded(campaign, machine, root)
        #: The file differs from the campaign recorded at `init`: what differs (else None).
        self.edit: FileEdit | None = None
        try:
            spec = build_spec(campaign, machine, schema, validated_hash=recorded and recorded[0])
            site = review_site(spec)  # what the site refuses is a ConfigError
            if recorded is not None and spec.config_hash != recorded[0]:
                self.edit = FileEdit(self.config_path, spec, site, None)
        except ConfigError as exc:
            if recorded is None:
                raise
            self.edit = FileEdit(self.config_path, None, None, exc)
        if self.edit is not None and recorded is not None:
            try:
                old = _recorded_spec(recorded[1], schema, recorded[0])
                spec, site = old, review_site(old)
                self.edit = self.edit.against(old, deep_merge(machine.data, campaign.data))
            except ConfigError:
                # The record no longer builds (edited by hand, or an older format): the file
                # as written, as before; `lock` refuses to run it on this campaign.
                if self.edit.error is not None:
                    raise self.edit.error from None
                self.edit = None
        self.spec: CampaignSpec = spec
        self.site: SiteReview = site
        #: An unset variable in `outputs.base_path`: `init` and every command that needs the
        #: campaign directory raise it; `validate` and `estimate` only warn.
        self.base_path_error: ConfigError | None = None
        try:
            self.layout = Layout.for_campaign(self.spec.slug, self.spec.base_path, root, os.environ)
        except KeyError as exc:
            self.base_path_error = _unset(self.spec, str(exc.args[0]))
            self.layout = Layout.at((Path(self.spec.base_path) / self.spec.slug).absolute())
        self.db_url = location.resolve(db_url, self.layout, self.spec.db_url)
        self.clock = clock
        self.rng = rng or random.Random()
        self._schedulers: dict[str, Scheduler] = dict(schedulers or {})
        self._expansion: Expansion | None = None
        self._store: Store | None = None
        self.read_only = read_only

    @property
    def policy(self) -> RetryPolicy:
        """The campaign's retry policy (`execution.retry_backoff` and `retry_policy`)."""
        return self.spec.execution.retry

    def policy_for(self, resources: Resources) -> RetryPolicy:
        """The retry policy of jobs asking for `resources`: escalation stays within the QOS
        walltime and the node's memory."""
        return ceilings(self.spec.machine.site, resources, self.spec.execution.retry)

    @property
    def expansion(self) -> Expansion:
        """Every job of the campaign (computed once)."""
        if self._expansion is None:
            self._expansion = expand(self.spec)
        return self._expansion

    def initialised(self) -> bool:
        """True once `init` has run here (it writes the merged config last)."""
        return self.base_path_error is None and self.layout.config_file.is_file()

    @property
    def store(self) -> Store:
        """The campaign database; `init` must have run."""
        if self._store is None:
            if self.base_path_error is not None:
                raise self.base_path_error
            if not self.initialised():
                raise InputError(
                    f"campaign not initialised: {self.layout.root} does not exist. "
                    f"Run `init {self.config_path}` first."
                )
            self._store = self.open_store()
        return self._store

    def open_store(self) -> Store:
        """A new connection to the campaign's database (the campaign found by its slug)."""
        if self.base_path_error is not None:
            raise self.base_path_error
        return Store(self.db_url, slug=self.spec.slug, read_only=self.read_only)

    def backend(self, requested: str | None = None) -> str:
        """--backend, else `execution.backend`, else the machine's, else `auto`; resolved."""
        name = requested or self.spec.execution.backend or self.spec.machine.backend or "auto"
        if name in self._schedulers:
            return name
        return registry.resolve(name)

    def scheduler(self, name: str) -> Scheduler:
        """The backend called `name` (one instance per command)."""
        if name not in self._schedulers:
            self._schedulers[name] = registry.create(name, self.spec.machine)
        return self._schedulers[name]

    def limits(self, scheduler: Scheduler | None = None) -> Limits:
        """Array limits: the machine file's MaxArraySize, else the scheduler's, if one is given."""
        execution, machine = self.spec.execution, self.spec.machine
        max_array = machine.max_array_size
        if max_array is None and scheduler is not None:
            max_array = scheduler.max_array_size()
        return Limits(
            batch_size=execution.batch_size,
            max_array_size=max_array,
            jobs_per_task=execution.jobs_per_task,
            array_parallelism=execution.array_parallelism,
            max_queued_jobs=self.site.max_queued_jobs or machine.max_queued_jobs,
            max_running_jobs=self.site.max_running_jobs,
        )

    def as_written(self) -> Context:
        """This campaign as its file is written now: `self`, unless the file changed since
        `init` (then a view of the same campaign with the file's spec; its ConfigError when
        the file no longer validates)."""
        if self.edit is None:
            return self
        if self.edit.spec is None or self.edit.site is None:
            assert self.edit.error is not None
            raise self.edit.error
        self.store  # noqa: B018 -- opened once, shared by the view (closed with this context)
        view = copy.copy(self)
        view.spec, view.site = self.edit.spec, self.edit.site
        view.edit, view._expansion = None, None
        return view

    def refuse_edit(self, command: str) -> None:
        """`command` acts on the file as the user wrote it: refuse while the file differs from
        the campaign recorded at `init` (exit 2, saying what differs and what to run)."""
        if self.edit is not None:
            raise ConfigChangedError(
                f"`{command}` refused: {self.edit.describe()}. Run `init --force "
                f"{self.config_path}` to adopt the change (it says what it would do), or restore "
                "the file. `status`, `monitor`, `cancel`, `qa` and the autopilot keep working on "
                "the campaign as recorded."
            )

    def edit_notes(self) -> list[str]:
        """A warning for commands that run the campaign as recorded while the file differs."""
        if self.edit is None:
            return []
        return [
            f"{self.edit.describe()}; this runs the campaign as recorded in "
            f"{self.layout.config_file} until `init --force {self.config_path}` adopts the "
            "change (or the file is restored)"
        ]

    def lock(self) -> CampaignLock | CampaignLease:
        """The campaign's manager lock (checks first that the campaign exists, as configured)."""
        stored = self.store.campaign()["config_hash"]
        if stored != self.spec.config_hash:
            raise ConfigChangedError(
                f"{self.config_path} has changed since `init` (stored config hash {stored}, file "
                f"{self.spec.config_hash}). Run `init --force {self.config_path}` to adopt the "
                "change (it says what changed), or restore the file."
            )
        return self.manager_lock()

    def manager_lock(self) -> CampaignLock | CampaignLease:
        """A lease row in a server database, else the lock file beside the SQLite one (a
        lock that other hosts see where the database's filesystem is shared)."""
        if self.store.is_server:
            return CampaignLease(self.store)
        return CampaignLock(self.layout.lock_file, sharing=self.store.sharing)

    def close(self) -> None:
        """Release the database."""
        if self._store is not None:
            self._store.close()
            self._store = None


def _unset(spec: CampaignSpec, name: str) -> ConfigError:
    """The error for an unset variable in `outputs.base_path`."""
    error = spec.error(
        f"`outputs.base_path` ({spec.base_path}) uses ${name}, which is not set here.",
        ("outputs", "base_path"),
        hint=f"Set {name} (on a NERSC login node $PSCRATCH and $CFS are set for you), or "
        "put the campaign elsewhere with --root DIR.",
    )
    assert isinstance(error, ConfigError)
    return error


@dataclass(frozen=True)
class FileEdit:
    """How the campaign file differs from the campaign recorded at `init`."""

    path: Path
    spec: CampaignSpec | None  # the file as written (None: it no longer validates)
    site: SiteReview | None
    error: ConfigError | None  # why it no longer validates
    changes: tuple[str, ...] = ()  # the keys that differ, as `init` names them
    digest: str = ""  # identifies this edit (the file's merged config)

    def against(self, recorded: CampaignSpec, merged: Mapping[str, Any]) -> FileEdit:
        """This edit with what differs from the `recorded` campaign filled in."""
        written = self.spec.merged if self.spec is not None else merged
        changes = tuple(provenance.diff(recorded.merged, written))
        digest = self.spec.config_hash if self.spec is not None else _digest(written)
        return replace(self, changes=changes, digest=digest)

    def describe(self) -> str:
        """One phrase: the file changed since `init`, and how."""
        if self.error is not None:
            first = str(self.error).splitlines()[0]
            return f"{self.path} has changed since `init` and no longer validates ({first})"
        shown = "; ".join(self.changes[:4]) + (" ..." if len(self.changes) > 4 else "")
        return f"{self.path} has changed since `init` ({shown or 'no key differs'})"


def _digest(merged: Mapping[str, Any]) -> str:
    """A short fingerprint of a config that may not validate."""
    text = json.dumps(merged, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _recorded(
    campaign: Document, machine: Document, root: str | os.PathLike[str] | None
) -> tuple[str, Layout] | None:
    """The config hash recorded at `init` of the campaign these documents name, and where the
    campaign is; None when it was never initialised (or cannot be found)."""
    location = peek_location(campaign, machine)
    if location is None:
        return None
    try:
        layout = Layout.for_campaign(*location, root, os.environ)
    except KeyError:
        return None  # an unset variable in the base path: nothing recorded can be found
    try:
        record = json.loads((layout.metadata / "provenance.json").read_text())
    except (OSError, ValueError):
        return None
    value = record.get("config_hash") if isinstance(record, dict) else None
    if not isinstance(value, str) or not layout.config_file.is_file():
        return None  # `init` writes the merged config last: without it, nothing was recorded
    return value, layout


def _recorded_spec(layout: Layout, schema: Mapping[str, Any], digest: str) -> CampaignSpec:
    """The campaign as `init` recorded it (the merged config holds the machine's settings)."""
    document = read_document(layout.config_file, "recorded campaign config")
    machine = Document(str(layout.config_file), {})
    return build_spec(document, machine, schema, validated_hash=digest)
