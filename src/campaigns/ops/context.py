"""The context of one command: everything an operation works with, built once.

`Context(config)` reads the campaign file and its machine file once, validates them
(skipping the schema when they still merge to the config recorded at `init`), and
collects the collaborators every operation receives instead of reaching for them:
the spec, the campaign directory, the store, the schedulers, the clock, the random
source and the retry policy.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from campaigns.core.config import (
    build_spec,
    load_schema,
    peek_location,
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
from campaigns.ops import location
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
        recorded = _recorded_hash(campaign, machine, root)
        self.spec: CampaignSpec = build_spec(campaign, machine, schema, validated_hash=recorded)
        self.site: SiteReview = review_site(self.spec)  # what the site refuses is a ConfigError
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


def _recorded_hash(
    campaign: Document, machine: Document, root: str | os.PathLike[str] | None
) -> str | None:
    """The config hash recorded at `init` of the campaign these documents name, if any."""
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
    return value if isinstance(value, str) else None
