"""`qa`: check every completed output, write the reports and plots, optionally requeue.

The checks live in `campaigns.qa`; this operation reads the store, hands the checks
their targets, and records what `--requeue` decides through the retry policy.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from campaigns.core.policy import decide
from campaigns.core.states import FailureClass, JobState
from campaigns.ops.context import Context
from campaigns.qa.checks import Target
from campaigns.qa.incremental import facts, rules_hash, stored_row, to_store, unchanged
from campaigns.qa.pool import check_outputs
from campaigns.qa.report import COLUMNS, QAReport, error_text, utc_stamp, write_reports


def run_qa(
    ctx: Context,
    *,
    requeue: bool = False,
    plots: bool = True,
    threads: int | None = None,
    processes: int | None = None,
    full: bool = False,
) -> QAReport:
    """Check every completed job's output; write the reports (and plots); optionally requeue.

    With `requeue`, jobs with an invalid output become `failed` with failure class
    `invalid_output` and an error naming the problems. The attempt that wrote the
    output stays counted: jobs with attempts left are due at once (`retry --submit`
    reruns them), jobs without are exhausted and listed in `QAReport.exhausted`
    (`retry --reset KEY` starts them over). Counting it keeps a job whose program writes
    bad output every time from being rerun forever. `threads`/`processes` size the pools
    (default: automatic; processes=0 keeps the HDF5 checks in this process).
    The caller holds the campaign lock, so no reconciliation changes a job between its
    check and its requeue.

    Incremental: an output whose attempt, size, mtime, manifest and rules are those of
    its stored result is not opened again (its stored result is reported); `full`
    checks every output. What each check found is stored for the next run.
    """
    import pandas as pd

    started = time.perf_counter()
    store, layout, spec, now = ctx.store, ctx.layout, ctx.spec, ctx.clock()
    campaign = store.campaign()
    rows = store.qa_targets()
    targets = [
        Target(r["key"], r["uid"], r["output"], r["attempt"], r["manifest_path"], r["config_hash"])
        for r in rows
    ]
    rules = rules_hash(spec.qa, campaign["config_hash"])
    stored = {} if full else store.qa_results()
    results: list[dict[str, Any]] = [{}] * len(targets)
    todo: list[int] = []
    seen = []
    for index, (row, target) in enumerate(zip(rows, targets, strict=True)):
        facts_ = facts(target, layout.catalogs)
        kept = stored.get(row["id"])
        if unchanged(target, facts_, kept, rules):
            results[index] = stored_row(target, kept)  # type: ignore[arg-type]
        else:
            todo.append(index)
            seen.append(facts_)
    checked = check_outputs(
        [targets[i] for i in todo],
        layout.catalogs,
        campaign["config_hash"],
        spec.qa,
        threads=threads,
        processes=processes,
    )
    for index, result in zip(todo, checked, strict=True):
        results[index] = result
    if not ctx.read_only:
        store.save_qa_results(to_store([rows[i]["id"] for i in todo], checked, seen, rules), now)
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
        requeued, exhausted = _requeue(ctx, dict(invalid))
    plot_paths = [str(p) for p in summary_plots(ctx)] if plots else []
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
        opened=len(todo),
    )
    write_reports(report, frame)
    return report


def summary_plots(ctx: Context) -> list[Path]:
    """Draw the campaign's summary plots into qa/summary_plots/ from the store."""
    from campaigns.qa.plots import write_summary_plots

    store = ctx.store
    campaign = store.campaign()
    jobs = store.jobs(columns=["id", "state", "attempts", "group_id"])
    limits = {gid: g["max_retries"] + 1 for gid, g in store.groups().items()}
    for job in jobs:
        job["limit"] = limits.get(job["group_id"], 1)
    label = f"{campaign['name']} {campaign['version']}"
    return write_summary_plots(label, jobs, store.attempts(), ctx.layout.qa_plots)


def _requeue(ctx: Context, problems: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Fail the still-completed jobs with invalid outputs; (due keys, exhausted keys)."""
    store, now = ctx.store, ctx.clock()
    max_retries = {gid: g["max_retries"] for gid, g in store.groups().items()}
    rows = store.jobs(
        states=[JobState.COMPLETED.value],
        columns=["id", "key", "attempts", "attempts_used", "group_id"],
        keys=list(problems),
    )
    failures: list[dict[str, Any]] = []
    due: list[str] = []
    exhausted: list[str] = []
    for row in rows:
        decision = decide(
            ctx.policy,
            FailureClass.INVALID_OUTPUT,
            None,
            row["attempts_used"],
            max_retries[row["group_id"]],
            now,
            ctx.rng.random(),
        )
        (due if decision.next_retry_at is not None else exhausted).append(row["key"])
        failures.append(
            {
                "id": row["id"],
                "key": row["key"],
                "attempts": row["attempts"],
                "failure_class": FailureClass.INVALID_OUTPUT.value,
                "error": error_text(problems[row["key"]]),
                "next_retry_at": decision.next_retry_at,
            }
        )
    store.fail_completed(failures, now)
    return due, exhausted
