"""Summary plots of a campaign, as PNGs in qa/summary_plots/. The only module using matplotlib.

    completion_over_time.png   cumulative completed jobs against wall-clock time (UTC)
    runtime_distribution.png   histogram of completed attempts' runtimes, median and p90 marked
    failures_by_class.png      failed attempts per failure class
    attempts_per_job.png       how many jobs needed 1, 2, 3 ... attempts, by current state

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, so no
global backend switch and no GUI); every plot says so in words when there is
nothing to draw yet.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from campaigns.node.files import replacing

if TYPE_CHECKING:
    from matplotlib.axes import Axes

SIZE = (8.0, 4.5)  # inches: 800 x 450 pixels at DPI
DPI = 100
COLORS = {
    "completed": "#2e8b57",
    "failed": "#c0392b",
    "other": "#95a5a6",
    "line": "#1f4e79",
    "p90": "#d35400",
}
FILES = (
    "completion_over_time.png",
    "runtime_distribution.png",
    "failures_by_class.png",
    "attempts_per_job.png",
)


def write_summary_plots(
    label: str,
    jobs: Sequence[Mapping[str, Any]],
    attempts: Sequence[Mapping[str, Any]],
    folder: Path,
) -> list[Path]:
    """Draw the four summary plots into `folder`; return their paths.

    `jobs`: id, state, attempts and `limit` (the most attempts the job may make);
    `attempts`: the store's attempt rows.
    """
    folder.mkdir(parents=True, exist_ok=True)
    drawers = (_completion, _runtimes, _failures, _attempts_per_job)
    paths = []
    for name, draw in zip(FILES, drawers, strict=True):
        fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
        fig.get_layout_engine().set(w_pad=0.15, h_pad=0.1)  # type: ignore[union-attr, call-arg]
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.set_axisbelow(True)  # grid lines behind bars
        draw(ax, label, jobs, attempts)
        paths.append(_save(fig, folder / name))
    return paths


def _counts_axis(axis: Any) -> None:
    """Whole numbers with thousands separators on a count axis."""
    axis.set_major_locator(MaxNLocator(integer=True))
    axis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:,.0f}"))


def _title(ax: Axes, label: str, what: str) -> None:
    text = f"{label}: {what}"
    if len(text) > 70:  # the campaign's name on its own line(s), the plot's subject below
        text = "\n".join([*textwrap.wrap(f"{label}:", 70), what])
    ax.set_title(text, fontsize=12, loc="left")


def _empty(ax: Axes, message: str) -> None:
    """An explanatory text instead of a plot."""
    ax.text(
        0.5,
        0.5,
        message,
        ha="center",
        va="center",
        fontsize=12,
        color="#555555",
        transform=ax.transAxes,
        wrap=True,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _state_summary(jobs: Sequence[Mapping[str, Any]]) -> str:
    counts = Counter(j["state"] for j in jobs)
    return ", ".join(f"{n:,} {state}" for state, n in counts.most_common())


def _completion(
    ax: Axes, label: str, jobs: Sequence[Mapping[str, Any]], attempts: Sequence[Mapping[str, Any]]
) -> None:
    _title(ax, label, "completion over time")
    total = len(jobs)
    done = {j["id"] for j in jobs if j["state"] == "completed"}
    latest: dict[int, datetime] = {}
    for a in attempts:  # one point per job now completed: its latest completed attempt
        if a["state"] == "completed" and a["ended_at"] is not None and a["job_id"] in done:
            latest[a["job_id"]] = max(a["ended_at"], latest.get(a["job_id"], a["ended_at"]))
    if not latest:
        _empty(ax, f"No job has completed yet.\n{total:,} jobs: {_state_summary(jobs)}.")
        return
    ends = sorted(latest.values())
    starts = [a["started_at"] for a in attempts if a["started_at"] is not None]
    first = min([*starts, ends[0]])
    times = [first, *ends]
    counts = list(range(len(ends) + 1))
    ax.step(times, counts, where="post", color=COLORS["line"], linewidth=2, label="completed jobs")
    ax.axhline(
        total, color=COLORS["other"], linestyle="--", linewidth=1.2, label=f"all {total:,} jobs"
    )
    span = ends[-1] - first
    pad = max(span * 0.03, timedelta(seconds=2))
    ax.set_xlim(first - pad, ends[-1] + pad)
    ax.set_ylim(0, total * 1.08 if total else 1)
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=7))  # type: ignore[no-untyped-call]
    fmt, day = _time_format(first, ends[-1])
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=timezone.utc))  # type: ignore[no-untyped-call]
    _counts_axis(ax.yaxis)
    ax.set_xlabel(f"wall-clock time (UTC{day})")
    ax.set_ylabel("completed jobs (cumulative)")
    ax.grid(alpha=0.3)
    share = 100.0 * len(ends) / total if total else 0.0
    ax.legend(
        loc="lower right",
        title=f"{len(ends):,} of {total:,} completed ({share:.0f}%) in "
        f"{_span_text(span.total_seconds())}",
    )


def _time_format(first: datetime, last: datetime) -> tuple[str, str]:
    """Tick format for the span, and the date to name in the label when all ticks share it."""
    first, last = first.astimezone(timezone.utc), last.astimezone(timezone.utc)
    if first.date() != last.date():
        return "%m-%d %H:%M", ""
    fmt = "%H:%M:%S" if last - first < timedelta(minutes=30) else "%H:%M"
    return fmt, f", {first:%Y-%m-%d}"


def _span_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _runtimes(
    ax: Axes, label: str, jobs: Sequence[Mapping[str, Any]], attempts: Sequence[Mapping[str, Any]]
) -> None:
    import numpy as np

    _title(ax, label, "job runtime distribution")
    seconds = np.array(
        [
            (a["ended_at"] - a["started_at"]).total_seconds()
            for a in attempts
            if a["state"] == "completed"
            and a["started_at"] is not None
            and a["ended_at"] is not None
        ]
    )
    if seconds.size == 0:
        _empty(
            ax, f"No completed attempt to time yet.\n{len(jobs):,} jobs: {_state_summary(jobs)}."
        )
        return
    top = float(seconds.max())
    unit, scale = ("s", 1.0) if top <= 180 else ("min", 60.0) if top <= 3 * 3600 else ("h", 3600.0)
    values = seconds / scale
    low, high = float(values.min()), float(values.max())
    whole = unit == "s" and high - low <= 60 and bool(np.all(seconds == np.round(seconds)))
    if whole:  # whole seconds (manifest times have 1 s resolution): one bar per second
        edges = np.arange(low - 0.5, high + 1.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    elif high - low < 1e-9:  # all alike: one centred bar
        width = max(abs(low) * 0.1, 0.5)
        edges = np.array([low - width, low + width])
    else:
        edges = np.histogram_bin_edges(values, bins="auto")
        if len(edges) > 61:
            edges = np.linspace(low, high, 61)
    heights, _, _ = ax.hist(
        values,
        bins=list(edges),
        color=COLORS["completed"],
        alpha=0.85,
        edgecolor="white",
        rwidth=0.8 if whole else None,
    )
    ax.set_ylim(0, float(np.max(heights)) * 1.3)  # room for the legend above the bars
    median, p90 = np.percentile(values, [50, 90])
    ax.axvline(median, color=COLORS["line"], linewidth=2, label=f"median {median:.3g} {unit}")
    ax.axvline(p90, color=COLORS["p90"], linewidth=2, linestyle="--", label=f"p90 {p90:.3g} {unit}")
    note = ", to the whole second" if whole else ""
    ax.set_xlabel(f"runtime of a completed attempt ({unit}{note})")
    ax.set_ylabel("attempts")
    _counts_axis(ax.yaxis)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper right", title=f"{seconds.size:,} completed attempts")


def _failures(
    ax: Axes, label: str, jobs: Sequence[Mapping[str, Any]], attempts: Sequence[Mapping[str, Any]]
) -> None:
    _title(ax, label, "failures by class")
    ran = [a for a in attempts if a["state"] not in ("queued", "running")]
    classes = Counter(a["failure_class"] for a in ran if a["failure_class"])
    if not classes:
        text = (
            f"No failures: all {len(ran):,} finished attempts succeeded."
            if ran
            else "No attempt has finished yet, so no failures."
        )
        _empty(ax, text)
        return
    ordered = classes.most_common()[::-1]  # largest on top
    names = [name.replace("_", " ") for name, _ in ordered]
    counts = [n for _, n in ordered]
    bars = ax.barh(names, counts, height=0.6, color=COLORS["failed"], alpha=0.85)
    ax.bar_label(bars, labels=[f"{n:,}" for n in counts], padding=3)
    ax.set_xlim(0, max(counts) * 1.15)
    ax.set_ylim(-0.8, len(names) - 0.2)
    _counts_axis(ax.xaxis)
    ax.set_xlabel(f"failed attempts ({sum(counts):,} of {len(ran):,} finished attempts failed)")
    ax.set_ylabel("failure class")
    ax.grid(alpha=0.3, axis="x")


def _attempts_per_job(
    ax: Axes, label: str, jobs: Sequence[Mapping[str, Any]], attempts: Sequence[Mapping[str, Any]]
) -> None:
    _title(ax, label, "attempts per job")
    ran = [j for j in jobs if j["attempts"]]
    if not ran:
        _empty(ax, f"No job has been submitted yet.\n{len(jobs):,} jobs: {_state_summary(jobs)}.")
        return
    limit = max(j["limit"] for j in jobs)
    top = max(limit, *(j["attempts"] for j in ran))
    xs = list(range(1, top + 1))
    bottom = [0] * len(xs)
    failed = Counter(j["attempts"] for j in ran if j["state"] == "failed")
    for kind, states in (
        ("completed", ("completed",)),
        ("failed", ("failed",)),
        ("other", ("pending", "queued", "running", "cancelled")),
    ):
        per = Counter(j["attempts"] for j in ran if j["state"] in states)
        heights = [per.get(x, 0) for x in xs]
        if any(heights):
            name = "queued, running, pending or cancelled" if kind == "other" else kind
            ax.bar(
                xs,
                heights,
                bottom=bottom,
                color=COLORS[kind],
                alpha=0.85,
                width=0.6,
                label=f"{name} now",
            )
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for x, total in zip(xs, bottom, strict=True):
        if total:
            text = f"{total:,}" + (f" ({failed[x]:,} failed)" if failed[x] else "")
            ax.annotate(
                text,
                (x, total),
                ha="center",
                va="bottom",
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax.set_xticks(xs)
    ax.set_xlim(0.4, top + 0.6)
    mixed = len({j["limit"] for j in jobs}) > 1  # overrides may give groups other limits
    ax.axvline(
        limit + 0.45,
        color=COLORS["other"],
        linestyle=":",
        linewidth=1.5,
        label=f"{'highest ' if mixed else ''}attempt limit ({limit} = max_retries + 1)",
    )
    ax.set_ylim(0, max(bottom) * 1.15)
    _counts_axis(ax.yaxis)
    ax.set_xlabel("attempts made (submissions of the job)")
    ax.set_ylabel("jobs")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper right", framealpha=0.95)


def _save(fig: Figure, path: Path) -> Path:
    """Write the PNG atomically, so a viewer never sees half a file."""
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path
