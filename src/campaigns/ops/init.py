"""`init`: create the campaign directory and database with every job pending.

Idempotent: the same configuration again changes nothing. A changed one is refused
(saying what changed) unless `force`: then existing jobs keep their state and new
jobs are added, provided no job is dropped and no output of a job that ran moves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml

from campaigns.core.expand import Expansion
from campaigns.core.filesystems import THIS_HOST
from campaigns.core.states import JobState
from campaigns.errors import ConfigChangedError, InputError
from campaigns.node.files import write_atomic
from campaigns.ops import location, provenance
from campaigns.ops.context import Context
from campaigns.ops.lock import CampaignLock
from campaigns.ops.reports import InitReport


def init(ctx: Context, force: bool = False) -> InitReport:
    """Create the campaign directory and database, every job pending; idempotent."""
    ctx = ctx.as_written()  # `init` adopts the file as it is now, not the recorded campaign
    expansion = ctx.expansion  # every config error surfaces before anything is created
    if ctx.base_path_error is not None:
        raise ctx.base_path_error
    layout = ctx.layout
    if ctx.initialised():
        return _reinit(ctx, expansion, force)
    store = ctx.open_store()
    try:
        # Asking the database first: a bad URL or login creates no folder.
        known = store.reachable() and store.is_initialised()
    except BaseException:
        store.close()
        raise
    if known:
        store.close()
        raise InputError(
            f"{store.shown} already holds campaign '{ctx.spec.slug}' but "
            f"{layout.config_file} is missing; move the database away or point --db-url "
            "elsewhere."
        )
    # On a server the lease keeps other hosts out; the lock file only guards this `init`.
    lock = CampaignLock(layout.lock_file, sharing=THIS_HOST if store.is_server else store.sharing)
    try:
        lock.check()  # where the lock would not hold, refuse before any folder is made
    except BaseException:
        store.close()
        raise
    for folder in layout.folders():
        folder.mkdir(parents=True, exist_ok=True)
    with lock:
        store.create(
            campaign={
                "name": ctx.spec.name,
                "version": ctx.spec.version,
                "slug": ctx.spec.slug,
                "config_hash": ctx.spec.config_hash,
                "source": str(ctx.config_path),
                "config": json.dumps(ctx.spec.merged, default=str),
            },
            groups=group_rows(expansion),
            jobs=job_rows(expansion, ctx.spec.config_hash),
            now=ctx.clock(),
        )
        store.close()
        location.write_record(layout, ctx.db_url, ctx.clock())
        _write_metadata(ctx)
    return InitReport(str(layout.root), len(expansion.jobs), created=True)


def _write_metadata(ctx: Context) -> None:
    """Provenance files, then the merged config last: its presence means "initialised"."""
    provenance.write(ctx.layout, ctx.spec, ctx.config_path)
    merged = yaml.safe_dump(dict(ctx.spec.merged), sort_keys=False)
    write_atomic(ctx.layout.config_file, merged)


def _reinit(ctx: Context, expansion: Expansion, force: bool) -> InitReport:
    store, root = ctx.store, str(ctx.layout.root)
    stored = store.campaign()
    if stored["config_hash"] == ctx.spec.config_hash:
        return InitReport(root, len(expansion.jobs), created=False)
    changes = provenance.diff(json.loads(stored["config"]), dict(ctx.spec.merged))
    if not force:
        raise ConfigChangedError(
            f"{ctx.config_path} differs from the configuration this campaign was created with "
            f"({ctx.layout.config_file}): {'; '.join(changes[:8])}"
            f"{' ...' if len(changes) > 8 else ''}. Run `init --force` to adopt the new "
            "configuration (existing jobs keep their state; new jobs are added), or use a new "
            "`campaign.version` for a new campaign."
        )
    with ctx.manager_lock():
        jobs = list(job_rows(expansion, ctx.spec.config_hash))
        check_adoption(store.jobs(columns=["key", "output", "state"]), jobs)
        added = store.adopt_config(
            config=json.dumps(ctx.spec.merged, default=str),
            config_hash=ctx.spec.config_hash,
            groups=group_rows(expansion),
            jobs=jobs,
            now=ctx.clock(),
        )
        _write_metadata(ctx)
    return InitReport(root, len(expansion.jobs), created=False, updated=True, added_jobs=added)


def check_adoption(existing: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> None:
    """A campaign never forgets a job, nor moves the output of a job that ran."""
    new_keys = {r["key"] for r in new}
    removed = [r["key"] for r in existing if r["key"] not in new_keys]
    if removed:
        raise ConfigChangedError(
            f"the new configuration drops {len(removed)} existing jobs (e.g. {removed[0]}); "
            "a campaign never forgets jobs. Start a new campaign version instead."
        )
    old = {r["key"]: r for r in existing}
    moved = [
        r["key"]
        for r in new
        if r["key"] in old
        and old[r["key"]]["output"] != r["output"]
        and old[r["key"]]["state"] != JobState.PENDING.value
    ]
    if moved:
        raise ConfigChangedError(
            f"the new output template moves the outputs of {len(moved)} jobs that already "
            f"ran (e.g. {moved[0]}); start a new campaign version instead."
        )


def group_rows(expansion: Expansion) -> list[dict[str, Any]]:
    """The job groups as store rows."""
    return [
        {
            "id": g.index,
            "resources": json.dumps(g.resources.as_dict()),
            "max_retries": g.max_retries,
        }
        for g in expansion.groups
    ]


def job_rows(expansion: Expansion, config_hash: str) -> Iterator[dict[str, Any]]:
    """Every job as a pending store row (id = expansion index + 1)."""
    for job in expansion.jobs:
        yield {
            "id": job.index + 1,
            "key": job.key,
            "uid": job.uid,
            "params": job.params_json or json.dumps(job.params),
            "output": job.output,
            "group_id": job.group,
            "config_hash": config_hash,
            "state": JobState.PENDING.value,
            "attempts": 0,
            "attempts_base": 0,
            "time_scale": 1.0,
            "memory_scale": 1.0,
        }
