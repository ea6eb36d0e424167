"""Load a campaign: read YAML, merge machine -> campaign, validate, build a `CampaignSpec`.

`load_campaign(path)` does the I/O; `build_spec(campaign_doc, machine_doc, schema)`
is pure, so tests build specs from inline YAML strings. Every problem is a
`ConfigError` naming the file, key path and line.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from campaigns import checks
from campaigns.checks import did_you_mean
from campaigns.backoff import BackoffPolicy
from campaigns.errors import ConfigError
from campaigns.spec import (
    Axis,
    CampaignSpec,
    Execution,
    Machine,
    Override,
    ParamValue,
    QARules,
)
from campaigns.yamlsource import Document, KeyPath, Locator, parse

#: Where machine files and the schema live (ships inside the package).
CONFIG_ROOT = Path(__file__).resolve().parent / "data"


def known_machines(config_root: Path = CONFIG_ROOT) -> list[str]:
    """Machine names available in `config/defaults/`."""
    return sorted(p.stem for p in (config_root / "defaults").glob("*.yaml"))


@lru_cache(maxsize=4)
def load_schema(config_root: Path = CONFIG_ROOT) -> dict[str, Any]:
    """The campaign JSON schema (YAML file)."""
    with open(config_root / "schemas" / "campaign_schema.yaml", encoding="utf-8") as fh:
        schema: dict[str, Any] = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return schema


def read_document(path: Path, what: str = "campaign file") -> Document:
    """Read and parse one YAML file; a missing file is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found.", file=str(path),
                          hint="Check the path; it is relative to the current directory.") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the {what}: {exc.__class__.__name__}: {exc}.",
                          file=str(path)) from None
    return parse(text, str(path))


def resolve_machine_path(campaign: Document, config_root: Path = CONFIG_ROOT) -> Path:
    """Find the machine file named by `campaign.machine` (a name or a relative path)."""
    section = campaign.data.get("campaign")
    name = section.get("machine", "local") if isinstance(section, dict) else "local"
    if not isinstance(name, str) or not name:
        raise ConfigError("`campaign.machine` must be a machine name or a path.",
                          file=campaign.path, key_path=("campaign", "machine"),
                          line=campaign.line_of(("campaign", "machine")))
    if "/" in name or name.endswith((".yaml", ".yml")):
        path = (Path(campaign.path).parent / name).resolve()
        if not path.is_file():
            raise ConfigError(f"machine file '{name}' not found (looked for {path}).",
                              file=campaign.path, key_path=("campaign", "machine"),
                              line=campaign.line_of(("campaign", "machine")))
        return path
    path = config_root / "defaults" / f"{name}.yaml"
    if not path.is_file():
        known = known_machines(config_root)
        raise ConfigError(
            f"unknown machine '{name}'. Known machines: {', '.join(known)}{did_you_mean(name, known)}",
            file=campaign.path, key_path=("campaign", "machine"),
            line=campaign.line_of(("campaign", "machine")),
            hint="Or give a path to your own machine file, relative to the campaign file.",
        )
    return path


def load_campaign(path: str | os.PathLike[str], config_root: Path = CONFIG_ROOT) -> CampaignSpec:
    """Load, merge and validate a campaign file and its machine file."""
    campaign = read_document(Path(path))
    machine = read_document(resolve_machine_path(campaign, config_root), "machine file")
    return build_spec(campaign, machine, load_schema(config_root))


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `over` into a copy of `base`: mappings merge recursively, the rest is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def config_hash(merged: Mapping[str, Any]) -> str:
    """Stable hash of a merged config (sorted-key JSON)."""
    text = json.dumps(merged, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_spec(campaign: Document, machine: Document, schema: Mapping[str, Any]) -> CampaignSpec:
    """Merge the two tiers, validate them, and build the campaign's spec (pure)."""
    merged = deep_merge(machine.data, campaign.data)
    merged.setdefault("machine", {}).setdefault("name", Path(machine.path).stem)
    locate = Locator((campaign, machine))
    validate_schema(merged, schema, locate)
    axes = checks.build_axes(merged["parameters"], locate)
    job = merged["job"]
    outputs = merged.get("outputs", {})
    output = _output_template(job, outputs, locate)
    execution = _execution(merged.get("execution", {}))
    overrides = _overrides(merged.get("overrides", []), axes, locate)
    checks.check_templates(job["command"], output, axes, locate)
    checks.check_resources(merged, overrides, locate)
    spec = CampaignSpec(
        name=merged["campaign"]["name"],
        version=str(merged["campaign"]["version"]),
        source=campaign.path,
        machine=_machine(merged.get("machine", {}), machine.path),
        axes=axes,
        command=job["command"],
        output=output,
        atomic_output=job.get("atomic_output", True),
        env={k: str(v) for k, v in job.get("env", {}).items()},
        execution=execution,
        base_resources=merged.get("resources", {}),
        job_types=merged.get("job_types", {}),
        memory_levels=merged.get("memory_levels", {}),
        overrides=overrides,
        compression=outputs.get("compression", "gzip"),
        metadata_format=outputs.get("metadata_format", "json"),
        base_path=outputs.get("base_path", "./campaigns"),
        db_url=outputs.get("db_url"),
        qa=_qa_rules(merged.get("qa", {})),
        merged=merged,
        config_hash=config_hash(merged),
        locate=locate,
    )
    return spec


def validate_schema(merged: Mapping[str, Any], schema: Mapping[str, Any], locate: Locator) -> None:
    """Validate against the JSON schema; raise the first problem (by file position)."""
    validator = jsonschema.Draft202012Validator(schema)
    problems = [_explain(error, locate) for error in validator.iter_errors(merged)]
    if not problems:
        return
    problems.sort(key=lambda e: (e.file != locate.documents[0].path, e.line or 0))
    first = problems[0]
    if len(problems) > 1:
        more = len(problems) - 1
        first = ConfigError(first.message, file=first.file, key_path=first.key_path, line=first.line,
                            hint=(first.hint + " " if first.hint else "")
                            + f"({more} more problem{'s' if more > 1 else ''}: run `validate` again "
                            "after fixing this one.)")
    raise first


def _explain(error: jsonschema.ValidationError, locate: Locator) -> ConfigError:
    path: KeyPath = tuple(error.absolute_path)
    kind = error.validator
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        key = unknown[0] if unknown else ""
        where = f" in '{'.'.join(map(str, path))}'" if path else " at the top level"
        allowed_text = f" Allowed keys here: {', '.join(allowed)}." if allowed else ""
        return locate.error(f"unknown key '{key}'{where}{did_you_mean(key, allowed)}{allowed_text}",
                            path + (key,))
    if kind == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return locate.error(f"missing required key '{missing[0] if missing else '?'}'.", path)
    if kind == "type":
        wanted = error.validator_value
        wanted_text = " or ".join(wanted) if isinstance(wanted, list) else wanted
        return locate.error(
            f"expected {wanted_text}, got {_type_name(error.instance)} {error.instance!r}.", path)
    if kind == "enum":
        choices = ", ".join(map(str, error.validator_value))
        return locate.error(f"{error.instance!r} is not allowed; choose one of: {choices}"
                            f"{did_you_mean(str(error.instance), map(str, error.validator_value))}",
                            path)
    if kind == "oneOf" and len(path) == 2 and path[0] == "parameters":
        return locate.error(
            f"parameter axis '{path[1]}' must be a list of values, {{range: [start, stop]}}, "
            f"{{range: [start, stop, step]}} (integers, stop excluded) or {{zip: {{name: [values], ...}}}}"
            f"{_axis_hint(error.instance)}", path)
    if kind == "oneOf" and error.context:
        best = jsonschema.exceptions.best_match(error.context)
        if best is not None:
            return _explain(best, locate)
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    text = f"{error.message}."
    return locate.error(text, path, hint=f"Expected: {description}" if description else None)


def _axis_hint(instance: Any) -> str:
    if isinstance(instance, dict):
        keys = [str(k) for k in instance if k not in ("range", "zip")]
        if keys:
            return f"; unknown key '{keys[0]}'{did_you_mean(keys[0], ['range', 'zip'])}"
        if "range" in instance:
            return f"; got range {instance['range']!r}."
    return "."


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "the string", bool: "the boolean",
            int: "the integer", float: "the number", type(None): "nothing (null)"}.get(
        type(value), type(value).__name__)


def _output_template(job: Mapping[str, Any], outputs: Mapping[str, Any], locate: Locator) -> str:
    output = job.get("output")
    scheme = outputs.get("naming_scheme")
    if output and scheme and output != scheme:
        raise locate.error("`job.output` and `outputs.naming_scheme` are the same setting "
                           "(one is an alias of the other) but give different templates; keep one.",
                           ("outputs", "naming_scheme"))
    template = output or scheme
    if not template:
        raise locate.error("no output template: set `job.output` (or its alias "
                           "`outputs.naming_scheme`), e.g. \"r{realization:04d}/mock.hdf5\".", ("job",))
    return str(template)


def _execution(section: Mapping[str, Any]) -> Execution:
    return Execution(
        batch_size=section.get("batch_size", 100),
        max_retries=section.get("max_retries", 3),
        backoff=BackoffPolicy.from_config(section.get("retry_backoff")),
        timeout_hours=float(section.get("timeout_hours", 1.0)),
        array_parallelism=section.get("array_parallelism", 256),
        jobs_per_task=section.get("jobs_per_task", 1),
        backend=section.get("backend"),
        local_workers=section.get("local_workers", 0),
    )


def _machine(section: Mapping[str, Any], source: str) -> Machine:
    return Machine(
        name=section.get("name", Path(source).stem),
        backend=section.get("backend", "auto"),
        max_array_size=section.get("max_array_size"),
        max_queued_jobs=section.get("max_queued_jobs", 5000),
        launcher=section.get("launcher", "srun --mpi=pmix"),
        setup=tuple(section.get("setup", ())),
        python=section.get("python"),
        poll_interval_seconds=float(section.get("poll_interval_seconds", 30)),
        source=source,
    )


def _overrides(entries: list[Mapping[str, Any]], axes: tuple[Axis, ...],
               locate: Locator) -> tuple[Override, ...]:
    values: dict[str, list[ParamValue]] = {}
    for axis in axes:
        for i, name in enumerate(axis.names):
            values[name] = [row[i] for row in axis.rows]
    out = []
    for index, entry in enumerate(entries):
        match: dict[str, tuple[ParamValue, ...]] = {}
        for name, wanted in entry["match"].items():
            where = ("overrides", index, "match", name)
            if name not in values:
                raise locate.error(f"override matches on '{name}', which is not a parameter"
                                   f"{did_you_mean(name, values)} Parameters: {', '.join(values)}.",
                                   where)
            allowed = tuple(wanted) if isinstance(wanted, list) else (wanted,)
            override = Override(match={name: allowed}, resources={}, execution={})
            if not any(override.selects({name: v}) for v in values[name]):
                raise locate.error(f"override value {wanted!r} for '{name}' matches no job "
                                   f"(values on that axis: {_preview(values[name])}).", where)
            match[name] = allowed
        out.append(Override(match=match, resources=entry.get("resources", {}),
                            execution=entry.get("execution", {})))
    return tuple(out)


def _preview(values: list[ParamValue], limit: int = 8) -> str:
    shown = ", ".join(map(repr, values[:limit]))
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _qa_rules(section: Mapping[str, Any]) -> QARules:
    return QARules(
        required_datasets=tuple(section.get("required_datasets", ())),
        min_rows=section.get("min_rows", 0),
        finite_datasets=tuple(section.get("finite_datasets", ())),
        required_attributes=tuple(section.get("required_attributes", ())),
    )
