"""Semantic checks of a schema-valid config: axes, placeholders, resources. Pure.

Each check takes a `locate` callable that turns a key path into a located
`ConfigError` (see `config._Locator.error`).
"""

from __future__ import annotations

import difflib
import math
import string
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from campaigns.core.directives import option_name, reserved
from campaigns.core.quoting import INERT, misquoted
from campaigns.core.spec import (
    COMMAND_FIELDS,
    OUTPUT_FIELDS,
    Axis,
    Override,
    ParamValue,
    canonical,
    is_safe,
)
from campaigns.core.yamlsource import KeyPath
from campaigns.errors import ConfigError

MAX_JOBS = 5_000_000


class Locate(Protocol):
    """Build a ConfigError located at a key path."""

    def error(self, message: str, key_path: KeyPath, hint: str | None = None) -> ConfigError: ...


def build_axes(parameters: Mapping[str, Any], locate: Locate) -> tuple[Axis, ...]:
    """Turn the `parameters` section into axes; every value checked."""
    axes: list[Axis] = []
    seen: dict[str, str] = {}
    for label, spec in parameters.items():
        where: KeyPath = ("parameters", label)
        if isinstance(spec, list):
            axes.append(Axis(label, (label,), tuple((v,) for v in _values(spec, where, locate))))
        elif "range" in spec:
            bounds = spec["range"]
            step = bounds[2] if len(bounds) == 3 else 1
            if step == 0:
                raise locate.error("range step must not be 0.", where + ("range",))
            values = range(bounds[0], bounds[1], step)
            if len(values) == 0:
                raise locate.error(
                    f"range {bounds} has no values (stop is excluded), so the "
                    "campaign would have zero jobs.",
                    where + ("range",),
                )
            if len(values) > MAX_JOBS:  # before building it: a typo like 10**12 must not eat memory
                raise locate.error(
                    f"range {bounds} has {len(values):,} values, more than the "
                    f"{MAX_JOBS:,} jobs one campaign can hold.",
                    where + ("range",),
                )
            axes.append(Axis(label, (label,), tuple((v,) for v in values)))
        else:
            columns = {
                name: _values(vals, where + ("zip", name), locate)
                for name, vals in spec["zip"].items()
            }
            lengths = {name: len(vals) for name, vals in columns.items()}
            if len(set(lengths.values())) > 1:
                detail = ", ".join(f"{n}: {k}" for n, k in lengths.items())
                raise locate.error(
                    f"zipped lists must have the same length ({detail}).", where + ("zip",)
                )
            axes.append(Axis(label, tuple(columns), tuple(zip(*columns.values(), strict=True))))
        zipped = isinstance(spec, dict) and "zip" in spec
        for name in axes[-1].names:
            place = where + ("zip", name) if zipped else where
            if name in seen:
                raise locate.error(
                    f"parameter '{name}' is defined twice (also in '{seen[name]}').", place
                )
            if name in COMMAND_FIELDS:
                raise locate.error(
                    f"'{name}' is a reserved placeholder name; rename the parameter.", place
                )
            if not isinstance(name, str) or not name.isidentifier():
                raise locate.error(
                    f"parameter name '{name}' must be a valid identifier "
                    "(letters, digits, underscores).",
                    place,
                )
            seen[name] = label
        _check_distinct(axes[-1], where, locate, zipped=zipped)
    total = math.prod(len(a.rows) for a in axes)
    if total > MAX_JOBS:
        raise locate.error(
            f"the parameters expand to {total:,} jobs, more than the "
            f"{MAX_JOBS:,} one campaign can hold; split the campaign.",
            ("parameters",),
        )
    return tuple(axes)


def _check_distinct(axis: Axis, where: KeyPath, locate: Locate, *, zipped: bool) -> None:
    """Two positions of one axis must not give the same job key (`1` and `'1'`, or a repeat)."""
    first: dict[tuple[str, ...], int] = {}
    for index, row in enumerate(axis.rows):
        text = tuple(canonical(v) for v in row)
        if text in first:
            other = axis.rows[first[text]]
            same = ", ".join(f"{n}={canonical(v)}" for n, v in zip(axis.names, row, strict=True))
            same_types = all(type(a) is type(b) for a, b in zip(other, row, strict=True))
            detail = (
                ""
                if other == row and same_types
                else " (values of different types that read the same)"
            )
            place = where + (("zip", axis.names[0], index) if zipped else (index,))
            raise locate.error(
                f"entries {first[text] + 1} and {index + 1} of '{axis.label}' both "
                f"give {same}{detail}; every job needs its own values.",
                place,
            )
        first[text] = index


def _values(values: list[Any], where: KeyPath, locate: Locate) -> list[ParamValue]:
    if not values:
        raise locate.error("this axis has no values, so the campaign would have zero jobs.", where)
    for index, value in enumerate(values):
        if isinstance(value, float) and not math.isfinite(value):
            raise locate.error(f"value {value!r} is not a finite number.", where + (index,))
        if isinstance(value, str) and "\x00" in value:
            raise locate.error(
                f"value {value!r} holds a NUL character, which no command line can carry.",
                where + (index,),
            )
    return values


def check_path_values(
    parameters: Mapping[str, Any], axes: tuple[Axis, ...], output: str, locate: Locate
) -> None:
    """Values of parameters named in the output template keep the safe-character rule: they
    become file and folder names. Values used only in the command may be any text (they
    are shell-quoted there)."""
    try:
        in_path = {name for name, _spec in template_fields(output)}
    except ValueError:
        return  # check_templates words a malformed template
    for axis in axes:
        zipped = isinstance(parameters.get(axis.label), Mapping)
        for column, name in enumerate(axis.names):
            if name not in in_path:
                continue
            for index, row in enumerate(axis.rows):
                if is_safe(row[column]):
                    continue
                where: KeyPath = ("parameters", axis.label)
                where += ("zip", name, index) if zipped else (index,)
                raise locate.error(
                    f"value {row[column]!r} is not allowed: '{name}' is part of the output "
                    "path (job.output), so its strings may only use letters, digits and "
                    "_ . + - = , : @ % (no spaces, slashes, quotes or shell metacharacters, "
                    "and not '..').",
                    where,
                    hint=f"Leave '{name}' out of job.output (use {{job_key}} or other "
                    "parameters there): values used only in job.command may be any text, "
                    "and are shell-quoted.",
                )


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`" (did you mean 'x'?)."` for the closest choice, else `"."`."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)." if close else "."


def template_fields(template: str) -> list[tuple[str, str]]:
    """(field name, format spec) of every placeholder; raises ValueError if malformed."""
    fields = []
    for _literal, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name or not name.isidentifier() or conversion:
            raise ValueError(
                f"placeholder '{{{name}{'!' + conversion if conversion else ''}}}' "
                "is not a plain name (write e.g. {realization} or {redshift:.3f})"
            )
        fields.append((name, spec or ""))
    return fields


def check_templates(command: str, output: str, axes: tuple[Axis, ...], locate: Locate) -> None:
    """Placeholders in `job.command` and `job.output` must name known values."""
    names = [n for axis in axes for n in axis.names]
    # Every distinct value (by type too): `{x:03d}` fits 1 but not 2.5 further down the list.
    samples: dict[str, list[Any]] = {}
    for axis in axes:
        for i, n in enumerate(axis.names):
            distinct = {(type(row[i]), row[i]): row[i] for row in axis.rows}
            samples[n] = list(distinct.values())
    samples.update({n: [v] for n, v in _FIELD_SAMPLES.items() if n not in samples})
    for key, template, extra in (
        ("command", command, COMMAND_FIELDS),
        ("output", output, OUTPUT_FIELDS),
    ):
        where: KeyPath = ("job", key)
        try:
            fields = template_fields(template)
        except ValueError as exc:
            problem = _FORMAT_PROBLEMS.get(str(exc), str(exc).rstrip("."))
            raise locate.error(
                f"bad placeholder in {key}: {problem}.",
                where,
                hint="Placeholders are {name} or {name:format}; write {{ or }} "
                "for a literal brace.",
            ) from None
        for name, spec in fields:
            if name in names or name in extra:
                for value in samples[name]:
                    try:
                        format(value, spec)
                    except (ValueError, TypeError):
                        raise locate.error(
                            f"format '{{{name}:{spec}}}' does not fit the value {value!r} of "
                            f"'{name}'.",
                            where,
                        ) from None
            else:
                known = names + list(extra)
                raise locate.error(
                    f"unknown placeholder '{{{name}}}' in {key}"
                    f"{did_you_mean(name, known)} Known: {', '.join(known)}.",
                    where,
                )
    check_quoting(command, locate, samples)


def _inert(command: str, samples: Mapping[str, list[Any]]) -> set[str]:
    """Placeholders of `command` whose every value (as formatted there) is INERT text.
    `output`, `job_key` and `campaign_dir` depend on where and how the campaign runs."""
    specs: dict[str, list[str]] = {}
    for name, spec in template_fields(command):
        specs.setdefault(name, []).append(spec)
    return {
        name
        for name, used in specs.items()
        if name not in ("output", "job_key", "campaign_dir")
        and all(INERT.match(format(v, spec)) for spec in used for v in samples[name])
    }


def check_quoting(command: str, locate: Locate, samples: Mapping[str, list[Any]]) -> None:
    """Every placeholder of `job.command` stands where the shell reads the quotes `render`
    puts around its value (not inside quotes, after a `$`, ...), or takes only INERT
    values (`samples`: every value of each placeholder): see `core.quoting`."""
    found = misquoted(command)
    if found is not None and found.literal:  # values are read only when it may matter
        found = misquoted(command, _inert(command, samples))
    if found is not None:
        raise locate.error(
            found.describe() + ".",
            ("job", "command"),
            hint=f"Fix: {found.fix}. Every value is already quoted as one word of data."
            + (
                " (Quotes around a placeholder are allowed only when every value of it is "
                "plain: letters, digits and _ . + - /, as integers always are.)"
                if found.literal
                else ""
            ),
        )


#: Python's words for broken format strings, in the user's terms.
_FORMAT_PROBLEMS = {
    "Single '}' encountered in format string": "a '}' that closes no '{'",
    "Single '{' encountered in format string": "a '{' that is never closed",
    "expected '}' before end of string": "a '{' that is never closed",
    "unexpected '{' in field name": "a '{' that is not closed before the next '{'",
}

#: Values like those the extra placeholders take, to test their format specs.
_FIELD_SAMPLES: dict[str, Any] = {
    "output": "r0/out.h5",
    "job_key": "a=1",
    "attempt": 1,
    "campaign_dir": "/c/v1_x",
    "compression": "gzip",
}


def check_resources(
    merged: Mapping[str, Any], overrides: tuple[Override, ...], locate: Locate
) -> None:
    """Every job type and memory level named anywhere must be defined, and no extra sbatch
    option may set a directive campaigns writes itself."""
    job_types = merged.get("job_types", {})
    levels = merged.get("memory_levels", {})
    places: list[tuple[KeyPath, Mapping[str, Any]]] = [
        (("resources",), merged.get("resources", {}))
    ]
    places += [(("overrides", i, "resources"), o.resources) for i, o in enumerate(overrides)]
    for where, section in places:
        for key, known, what in (
            ("job_type", job_types, "job type"),
            ("memory_requirement", levels, "memory level"),
        ):
            name = section.get(key)
            if name is not None and name not in known:
                raise locate.error(
                    f"unknown {what} '{name}'{did_you_mean(name, known)} Known {what}s here: "
                    f"{', '.join(sorted(known)) or 'none'}.",
                    where + (key,),
                    hint=f"Define it under "
                    f"`{'job_types' if key == 'job_type' else 'memory_levels'}` "
                    "in the machine file or the campaign file.",
                )
    places += [(("job_types", name), spec) for name, spec in job_types.items()]
    for where, section in places:
        check_sbatch_options(section.get("sbatch_options") or {}, where, locate)


def check_sbatch_options(options: Mapping[str, Any], where: KeyPath, locate: Locate) -> None:
    """No extra sbatch option may set a directive campaigns depends on (core.directives)."""
    for key in options:
        found = reserved(key)
        if found is None:
            continue
        option, why = found
        named = f"--{option}" + ("" if option_name(key) == option else f" (written '{key}')")
        raise locate.error(
            f"sbatch option {named} is campaigns' own: {why}.",
            where + ("sbatch_options", key),
            hint="Remove it from sbatch_options (a second #SBATCH line would override the "
            "one campaigns writes).",
        )
