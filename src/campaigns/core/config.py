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
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from campaigns.core import checks
from campaigns.core.breaker import CircuitBreaker
from campaigns.core.checks import did_you_mean
from campaigns.core.policy import RetryPolicy
from campaigns.core.schema_errors import explain, show, text_keys
from campaigns.core.secrets import mask_passwords
from campaigns.core.site import parse_site
from campaigns.core.spec import (
    Axis,
    CampaignSpec,
    Execution,
    Machine,
    Notify,
    Override,
    ParamValue,
    QARules,
    slugify,
)
from campaigns.core.yamlsource import Document, KeyPath, Locator, parse
from campaigns.errors import ConfigError

#: Where machine files and the schema live (ships inside the package).
CONFIG_ROOT = Path(__file__).resolve().parents[1] / "data"


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
        raise ConfigError(
            f"{what} not found.",
            file=str(path),
            hint="Check the path; it is relative to the current directory.",
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"the {what} path is a directory, not a YAML file.",
            file=str(path),
            hint="Give the path of the YAML file itself.",
        ) from None
    except PermissionError:
        raise ConfigError(f"no permission to read the {what}.", file=str(path)) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"the {what} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x}).",
            file=str(path),
            line=line,
            hint="Save it as UTF-8 (plain ASCII is fine).",
        ) from None
    return parse(text, str(path), what)


def resolve_machine_path(campaign: Document, config_root: Path = CONFIG_ROOT) -> Path:
    """Find the machine file named by `campaign.machine` (a name or a relative path)."""
    section = campaign.data.get("campaign")
    name = section.get("machine", "local") if isinstance(section, dict) else "local"
    if not isinstance(name, str) or not name:
        raise ConfigError(
            "`campaign.machine` must be a machine name or a path.",
            file=campaign.path,
            key_path=("campaign", "machine"),
            line=campaign.line_of(("campaign", "machine")),
        )
    if "/" in name or name.endswith((".yaml", ".yml")):
        path = (Path(campaign.path).parent / name).resolve()
        if not path.is_file():
            raise ConfigError(
                f"machine file '{name}' not found (looked for {path}).",
                file=campaign.path,
                key_path=("campaign", "machine"),
                line=campaign.line_of(("campaign", "machine")),
            )
        return path
    path = config_root / "defaults" / f"{name}.yaml"
    if not path.is_file():
        known = known_machines(config_root)
        raise ConfigError(
            f"unknown machine '{name}'. Known machines: {', '.join(known)}"
            f"{did_you_mean(name, known)}",
            file=campaign.path,
            key_path=("campaign", "machine"),
            line=campaign.line_of(("campaign", "machine")),
            hint="Or give a path to your own machine file, relative to the campaign file.",
        )
    return path


def read_documents(
    path: str | os.PathLike[str], config_root: Path = CONFIG_ROOT
) -> tuple[Document, Document]:
    """Read and parse the campaign file and the machine file it names: once per command."""
    campaign = read_document(Path(path))
    machine = read_document(resolve_machine_path(campaign, config_root), "machine file")
    return campaign, machine


def load_campaign(
    path: str | os.PathLike[str],
    config_root: Path = CONFIG_ROOT,
    *,
    validated_hash: str | None = None,
    backends: Sequence[str] | None = None,
) -> CampaignSpec:
    """Load, merge and validate a campaign file and its machine file.

    `validated_hash`: the hash of a merged config already validated (at `init`); when the
    files still merge to it, the schema validation is skipped (it is most of the cost of
    a read-only command such as `status`). The semantic checks always run.
    `backends`: the names `execution.backend` and `machine.backend` may take.
    """
    campaign, machine = read_documents(path, config_root)
    schema = with_backends(load_schema(config_root), backends)
    return build_spec(campaign, machine, schema, validated_hash=validated_hash)


def with_backends(schema: Mapping[str, Any], backends: Sequence[str] | None) -> dict[str, Any]:
    """The schema with the allowed backend names filled in (`auto` first); a copy."""
    out = copy.deepcopy(dict(schema))
    if backends is not None:
        out["$defs"]["backend"]["enum"] = list(dict.fromkeys(["auto", *backends]))
    return out


def peek_location(campaign: Document, machine: Document) -> tuple[str, str] | None:
    """(slug, base_path) of the campaign these documents describe, before any validation.

    Lets a command find the campaign's recorded config hash (and skip re-validating an
    unchanged config); None when the documents are too broken to tell.
    """
    try:
        section = campaign.data["campaign"]
        base = campaign.data.get("outputs", {}).get("base_path")
        if base is None:
            base = machine.data.get("outputs", {}).get("base_path", "./campaigns")
        return f"{slugify(str(section['version']))}_{slugify(str(section['name']))}", str(base)
    except (AttributeError, KeyError, TypeError):
        return None


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `over` into a copy of `base`: mappings merge recursively, the rest is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_resources(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`deep_merge` for a `resources` section: a later memory level beats an earlier `memory`.

    `memory` and `memory_requirement` are two spellings of one setting, so a later
    tier that names only a level must not be shadowed by an earlier explicit size.
    """
    out = deep_merge(base, over)
    if "memory_requirement" in over and "memory" not in over:
        out.pop("memory", None)
    return out


def config_hash(merged: Mapping[str, Any]) -> str:
    """Stable hash of a merged config (sorted-key JSON)."""
    text = json.dumps(text_keys(merged), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _safe_hash(merged: Mapping[str, Any]) -> str | None:
    try:
        return config_hash(merged)
    except (TypeError, ValueError):
        return None  # not even hashable: never valid


def build_spec(
    campaign: Document,
    machine: Document,
    schema: Mapping[str, Any],
    *,
    validated_hash: str | None = None,
) -> CampaignSpec:
    """Merge the two tiers, validate them, and build the campaign's spec (pure)."""
    merged = deep_merge(machine.data, campaign.data)
    base_resources, over_resources = machine.data.get("resources"), campaign.data.get("resources")
    if isinstance(base_resources, Mapping) and isinstance(over_resources, Mapping):
        merged["resources"] = merge_resources(base_resources, over_resources)
    if isinstance(merged.setdefault("machine", {}), dict):
        merged["machine"].setdefault("name", Path(machine.path).stem)
    locate = Locator((campaign, machine))
    digest = _safe_hash(merged)
    if digest is None or digest != validated_hash:
        check_keys(merged, locate)
        validate_schema(merged, schema, locate)
    assert digest is not None  # a valid config hashes
    axes = checks.build_axes(merged["parameters"], locate)
    job = merged["job"]
    outputs = merged.get("outputs", {})
    output = _output_template(job, outputs, locate)
    execution = _execution(merged.get("execution", {}))
    overrides = _overrides(merged.get("overrides", []), axes, locate)
    checks.check_path_values(merged["parameters"], axes, output, locate)
    checks.check_templates(job["command"], output, axes, locate)
    checks.check_resources(merged, overrides, locate)
    db_url = outputs.get("db_url")
    if db_url and mask_passwords(db_url) != db_url:
        raise locate.error(
            "the database URL holds a password, and the campaign file is copied into the "
            "campaign's metadata.",
            ("outputs", "db_url"),
            hint="Leave the password out of the URL and keep it in ~/.pgpass or PGPASSWORD.",
        )
    spec = CampaignSpec(
        name=merged["campaign"]["name"],
        version=str(merged["campaign"]["version"]),
        source=campaign.path,
        machine=_machine(merged.get("machine", {}), machine.path, locate),
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
        db_url=db_url,
        qa=_qa_rules(merged.get("qa", {})),
        notify=Notify(**merged.get("notify", {})),
        merged=merged,
        config_hash=digest,
        locate=locate,
    )
    return spec


def validate_schema(merged: Mapping[str, Any], schema: Mapping[str, Any], locate: Locator) -> None:
    """Validate against the JSON schema; raise the first problem (by file position)."""
    import jsonschema  # here, not at the top: read-only commands on a validated config skip it

    validator = jsonschema.Draft202012Validator(schema)
    problems = [explain(error, locate) for error in validator.iter_errors(merged)]
    if not problems:
        return
    # The campaign file before the machine file, then by line; problems without a line last.
    problems.sort(key=lambda e: (e.file != locate.documents[0].path, e.line is None, e.line or 0))
    first = problems[0]
    if len(problems) > 1:
        more = len(problems) - 1
        first = ConfigError(
            first.message,
            file=first.file,
            key_path=first.key_path,
            line=first.line,
            hint=(first.hint + " " if first.hint else "")
            + f"({more} more problem{'s' if more > 1 else ''}: run `validate` "
            "again after fixing this one.)",
        )
    raise first


def check_keys(value: Any, locate: Locator, path: KeyPath = ()) -> None:
    """Every key outside `science` must be text (YAML reads `1`, `on`, `no` as other types)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                file, line = locate.where(path + (key,))
                written = locate.spelling(path + (key,)) or show(key)
                raise ConfigError(
                    f"the key '{written}' is not text: YAML reads unquoted numbers, and words "
                    f"like on/off/yes/no, as numbers or booleans (this one as {show(key)}).",
                    file=file,
                    line=line,
                    key_path=path + (written,),
                    hint=f"Put the key in quotes: '{written}'.",
                )
            if path or key != "science":
                check_keys(item, locate, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_keys(item, locate, path + (index,))


def _output_template(job: Mapping[str, Any], outputs: Mapping[str, Any], locate: Locator) -> str:
    output = job.get("output")
    scheme = outputs.get("naming_scheme")
    if output and scheme and output != scheme:
        raise locate.error(
            "`job.output` and `outputs.naming_scheme` are the same setting "
            "(one is an alias of the other) but give different templates; keep one.",
            ("outputs", "naming_scheme"),
        )
    template = output or scheme
    if not template:
        raise locate.error(
            "no output template: set `job.output` (or its alias "
            '`outputs.naming_scheme`), e.g. "r{realization:04d}/mock.hdf5".',
            ("job",),
        )
    return str(template)


def _execution(section: Mapping[str, Any]) -> Execution:
    return Execution(
        batch_size=section.get("batch_size", 100),
        max_retries=section.get("max_retries", 3),
        retry=RetryPolicy.from_config(section),
        breaker=CircuitBreaker.from_config(section.get("circuit_breaker")),
        timeout_hours=float(section.get("timeout_hours", 1.0)),
        array_parallelism=section.get("array_parallelism", 256),
        jobs_per_task=section.get("jobs_per_task", 1),
        backend=section.get("backend"),
        local_workers=section.get("local_workers", 0),
    )


def _machine(section: Mapping[str, Any], source: str, locate: Locator) -> Machine:
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
        site=parse_site(section, locate),
        tick=tuple((str(k), str(v)) for k, v in section.get("tick", {}).items()),
    )


def _overrides(
    entries: list[Mapping[str, Any]], axes: tuple[Axis, ...], locate: Locator
) -> tuple[Override, ...]:
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
                raise locate.error(
                    f"override matches on '{name}', which is not a parameter"
                    f"{did_you_mean(name, values)} Parameters: {', '.join(values)}.",
                    where,
                )
            allowed = tuple(wanted) if isinstance(wanted, list) else (wanted,)
            override = Override(match={name: allowed}, resources={}, execution={})
            if not any(override.selects({name: v}) for v in values[name]):
                raise locate.error(
                    f"override value {show(wanted)} for '{name}' matches no job "
                    f"(values on that axis: {_preview(values[name])}).",
                    where,
                )
            match[name] = allowed
        override = Override(
            match=match, resources=entry.get("resources", {}), execution=entry.get("execution", {})
        )
        for axis in axes:
            # Zipped parameters vary together: each value may occur, yet never the combination.
            names = [n for n in axis.names if n in match]
            if len(names) > 1 and not any(
                override.admits(dict(zip(axis.names, row, strict=True))) for row in axis.rows
            ):
                wanted = " and ".join(f"{n}={show(entry['match'][n])}" for n in names)
                raise locate.error(
                    f"override matches no job: the zipped parameters of "
                    f"'{axis.label}' never take {wanted} together.",
                    ("overrides", index, "match"),
                )
        out.append(override)
    return tuple(out)


def _preview(values: list[ParamValue], limit: int = 8) -> str:
    shown = ", ".join(map(show, values[:limit]))
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _qa_rules(section: Mapping[str, Any]) -> QARules:
    return QARules(
        required_datasets=tuple(section.get("required_datasets", ())),
        min_rows=section.get("min_rows", 0),
        finite_datasets=tuple(section.get("finite_datasets", ())),
        required_attributes=tuple(section.get("required_attributes", ())),
    )
