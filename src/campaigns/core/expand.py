"""Parameter space -> jobs: deterministic keys, output paths, resource groups. Pure.

The same campaign file gives the same jobs, keys and order on every machine:
axes multiply in the order written (the last axis varies fastest).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from campaigns.core.checks import template_fields
from campaigns.core.config import merge_resources
from campaigns.core.spec import (  # noqa: F401 -- canonical is part of this module's API
    CampaignSpec,
    JobGroup,
    ParamValue,
    Resources,
    canonical,
    key_text,
    memory_mb,
)

SAFE_PATH = re.compile(r"^[A-Za-z0-9_.+\-=,:@%/]+$")


@dataclass(frozen=True)
class JobSpec:
    """One job of the campaign, before it is ever run."""

    index: int  # position in expansion order, from 0
    key: str  # readable and unique: "realization=7,redshift=1.5"
    uid: str  # short stable hash of the key, safe in file names
    params: dict[str, ParamValue]
    output: str  # relative to catalogs/
    group: int  # index into Expansion.groups
    params_json: str = ""  # `params` as JSON text (built per axis row: cheap at 100,000 jobs)


@dataclass(frozen=True)
class Expansion:
    """All jobs of a campaign and the resource groups they fall in."""

    jobs: list[JobSpec]
    groups: list[JobGroup]


def _typed(name: str, value: ParamValue) -> str:
    return f"{name}\x1e{type(value).__name__}\x1e{canonical(value)}"


def job_uid(params: Mapping[str, ParamValue]) -> str:
    """16 hex digits identifying the parameter values *and* their types."""
    return _uid("\x1f".join(_typed(k, v) for k, v in params.items()))


def _uid(typed: str) -> str:
    # 64 bits: with 5 million jobs a collision has odds of about 1e-6 (40 bits: near certain).
    return hashlib.blake2b(typed.encode(), digest_size=8).hexdigest()


def expand(spec: CampaignSpec) -> Expansion:
    """Every job of the campaign, in order, with checked output paths."""
    axes = spec.axes
    names = spec.parameter_names
    # For each axis row: its key fragment and a bitmask of overrides it does not rule out.
    all_bits = (1 << len(spec.overrides)) - 1
    row_info: list[list[tuple[str, str, int, str]]] = []
    for axis in axes:
        infos = []
        for row in axis.rows:
            fragment = ",".join(f"{n}={key_text(v)}" for n, v in zip(axis.names, row, strict=True))
            typed = "\x1f".join(_typed(n, v) for n, v in zip(axis.names, row, strict=True))
            as_json = json.dumps(dict(zip(axis.names, row, strict=True)))[1:-1]
            mask = all_bits
            for bit, override in enumerate(spec.overrides):
                if not override.admits(dict(zip(axis.names, row, strict=True))):
                    mask &= ~(1 << bit)
            infos.append((fragment, typed, mask, as_json))
        row_info.append(infos)
    group_of_mask: dict[int, int] = {}
    groups: list[JobGroup] = []
    jobs: list[JobSpec] = []
    seen_outputs: dict[str, str] = {}
    seen_keys: dict[str, int] = {}
    output_template = spec.output
    for index, rows in enumerate(itertools.product(*(range(len(a.rows)) for a in axes))):
        values: list[ParamValue] = []
        fragments = []
        typed_parts: list[str] = []
        json_parts: list[str] = []
        mask = all_bits
        for axis, infos, r in zip(axes, row_info, rows, strict=True):
            values.extend(axis.rows[r])
            fragment, typed_fragment, row_mask, as_json = infos[r]
            fragments.append(fragment)
            typed_parts.append(typed_fragment)
            json_parts.append(as_json)
            mask &= row_mask
        params = dict(zip(names, values, strict=True))
        key = ",".join(fragments)
        if key in seen_keys:
            # Only string values holding ',' or '=' can do this: they read like the separators.
            raise spec.error(
                f"two different jobs get the same key '{key}': a "
                "string value that contains ',' or '=' reads like another "
                "parameter (or, far less likely, two values share a hash). Remove those "
                "characters from the values.",
                ("parameters",),
            )
        seen_keys[key] = index
        output = output_template.format(**params, job_key=key)
        _check_output(spec, output, key, seen_outputs)
        group = group_of_mask.get(mask)
        if group is None:
            group = group_of_mask[mask] = len(groups)
            groups.append(resolve_group(spec, mask, group))
        jobs.append(
            JobSpec(
                index,
                key,
                _uid("\x1f".join(typed_parts)),
                params,
                output,
                group,
                "{" + ", ".join(json_parts) + "}",
            )
        )
    return Expansion(jobs, groups)


def _check_output(spec: CampaignSpec, output: str, key: str, seen: dict[str, str]) -> None:
    rooted = "/" + output
    # No absolute path, no '.', '..' or hidden parts, no '//': the path stays in catalogs/.
    if not SAFE_PATH.match(output) or "/." in rooted or "//" in rooted or rooted.endswith("/"):
        raise spec.error(
            f"output path '{output}' of job {key} is not a plain relative path inside catalogs/ "
            "(no leading '/', no '..' or '.' parts, no '//', no spaces or shell characters).",
            ("job", "output"),
        )
    other = seen.get(output)
    if other is not None:
        raise spec.error(
            f"jobs {other} and {key} would both write '{output}': the output "
            "template must contain every parameter that varies.",
            ("job", "output"),
        )
    seen[output] = key


def override_masks(spec: CampaignSpec) -> list[int]:
    """Every set of overrides (a bitmask) some job of the campaign falls under, without
    expanding the jobs: one pass over each axis's rows."""
    reachable = {(1 << len(spec.overrides)) - 1}
    for axis in spec.axes:
        masks = set()
        for row in axis.rows:
            values = dict(zip(axis.names, row, strict=True))
            mask = 0
            for bit, override in enumerate(spec.overrides):
                if override.admits(values):
                    mask |= 1 << bit
            masks.add(mask)
        reachable = {a & b for a in reachable for b in masks}
    return sorted(reachable)


def resolve_group(spec: CampaignSpec, override_mask: int, index: int) -> JobGroup:
    """Resources and retry limit for jobs selected by the overrides in `override_mask`."""
    section: dict[str, Any] = dict(spec.base_resources)
    execution: dict[str, Any] = {}
    for bit, override in enumerate(spec.overrides):
        if override_mask & (1 << bit):
            section = merge_resources(section, override.resources)
            execution.update(override.execution)
    job_type = section.get("job_type")
    fields = dict(spec.job_types.get(job_type, {})) if job_type else {}
    fields.pop("job_type", None)
    fields.update({k: v for k, v in section.items() if k not in ("job_type", "memory_requirement")})
    memory = fields.pop("memory", None)
    fields.pop("memory_requirement", None)
    level = section.get("memory_requirement")
    if "memory" not in section and level is not None:
        memory = spec.memory_levels[level]
    hours = float(execution.get("timeout_hours", spec.execution.timeout_hours))
    options = fields.pop("sbatch_options", {}) or {}
    resources = Resources(
        memory_mb=memory_mb(memory) if memory is not None else None,
        time_minutes=max(1, math.ceil(hours * 60)),
        sbatch_options=tuple(sorted((str(k), str(v)) for k, v in options.items())),
        **fields,
    )
    return JobGroup(index, resources, int(execution.get("max_retries", spec.execution.max_retries)))


@dataclass(frozen=True)
class CommandTemplate:
    """A parsed `job.command`; renders with every substituted value shell-quoted."""

    parts: tuple[tuple[str, str | None, str], ...]  # (literal, field name or None, format spec)

    @classmethod
    def parse(cls, template: str) -> CommandTemplate:
        """Pre-parse once, render many times."""
        import string

        template_fields(template)  # raises ValueError on malformed placeholders
        parts = tuple(
            (literal, name, spec or "")
            for literal, name, spec, _conv in string.Formatter().parse(template)
        )
        return cls(parts)

    def render(self, values: Mapping[str, Any]) -> str:
        """The command with each placeholder formatted, then quoted with shlex.quote."""
        out = []
        for literal, name, spec in self.parts:
            out.append(literal)
            if name is not None:
                out.append(shlex.quote(format(values[name], spec)))
        return "".join(out)


def iter_chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
