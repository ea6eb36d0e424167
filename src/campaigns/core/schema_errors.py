"""jsonschema's findings in the user's words: which key, what was expected, what to write.

`explain(error, locate)` turns one `jsonschema.ValidationError` into a located
`ConfigError` (file, line, key path) with a "did you mean" where it helps. It reads
the error's structured fields (validator, schema, instance), never its message text.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from campaigns.core.checks import did_you_mean
from campaigns.core.yamlsource import KeyPath, Locator
from campaigns.errors import ConfigError, format_key_path

if TYPE_CHECKING:
    import jsonschema


_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "text",
    "object": "a mapping",
    "array": "a list",
    "boolean": "a boolean (true/false)",
    "null": "nothing",
}


def explain(
    error: jsonschema.ValidationError, locate: Locator, description: str | None = None
) -> ConfigError:
    import jsonschema

    path: KeyPath = tuple(error.absolute_path)
    kind = error.validator
    own = error.schema.get("description") if isinstance(error.schema, dict) else None
    description = own or description
    # A section's description says what it is for, not what to write: no help as a hint.
    section = isinstance(error.schema, dict) and error.schema.get("type") == "object"
    hint = f"Expected: {description}" if description and not section else None
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        key = unknown[0] if unknown else ""
        where = f" in '{format_key_path(path)}'" if path else " at the top level"
        allowed_text = f" Allowed keys here: {', '.join(allowed)}." if allowed else ""
        return locate.error(
            f"unknown key '{key}'{where}{did_you_mean(str(key), allowed)}{allowed_text}",
            path + (key,),
        )
    if kind == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        name = missing[0] if missing else "?"
        strays = [str(k) for k in error.instance if k not in (error.schema.get("properties") or {})]
        close = difflib.get_close_matches(name, strays, n=1, cutoff=0.6)
        typo = f" Is '{close[0]}' a misspelling of it?" if close else ""
        what = "section" if not path else "key"
        about = ((error.schema.get("properties") or {}).get(name) or {}).get("description")
        return locate.error(
            f"missing required {what} '{name}'.{typo}",
            path + (name,),
            hint=f"`{name}`: {about}" if about else None,
        )
    if kind == "type":
        wanted = error.validator_value
        words = [
            str(_TYPE_WORDS.get(w, w)) for w in (wanted if isinstance(wanted, list) else [wanted])
        ]
        wanted_text = ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]
        empty = "an empty entry" if path and isinstance(path[-1], int) else "the key has no value"
        got = (
            f"nothing ({empty})"
            if error.instance is None
            else f"{_type_name(error.instance)}{_shown_scalar(error.instance)}"
        )
        if error.instance is None and wanted == "object":
            hint = "Give the section its keys, or delete the empty section."
        extra = ""
        if path == ("machine",) and isinstance(error.instance, str):
            extra = (
                f" To choose a machine, write `machine: {error.instance}` inside the "
                "`campaign` section; a top-level `machine` section holds machine facts."
            )
        return locate.error(f"expected {wanted_text}, got {got}.{extra}", path, hint=hint)
    if kind == "enum":
        choices = ", ".join(map(show, error.validator_value))
        return locate.error(
            f"{show(error.instance)} is not allowed; choose one of: {choices}"
            f"{did_you_mean(str(error.instance), map(str, error.validator_value))}",
            path,
            hint=hint,
        )
    if kind == "oneOf":
        branch = _fitting_branch(error)
        axis = len(path) == 2 and path[0] == "parameters"
        if branch is not None:
            best = jsonschema.exceptions.best_match(branch)
            if best is not None and not (axis and best.validator == "required"):
                return explain(best, locate, description)
        if axis:
            return locate.error(
                f"parameter axis '{path[1]}' must be a list of values, {{range: [start, stop]}}, "
                f"{{range: [start, stop, step]}} (integers, stop excluded) or "
                f"{{zip: {{name: [values], ...}}}}{_axis_hint(error.instance)}",
                path,
            )
        if error.context:
            best = jsonschema.exceptions.best_match(error.context)
            if best is not None:
                return explain(best, locate, description)
    limits = {
        "minimum": "at least",
        "exclusiveMinimum": "greater than",
        "maximum": "at most",
        "exclusiveMaximum": "less than",
    }
    if kind in limits:
        return locate.error(
            f"must be {limits[kind]} {show(error.validator_value)}, got {show(error.instance)}.",
            path,
            hint=hint,
        )
    if kind in ("minLength", "minProperties", "minItems") and not error.instance:
        return locate.error("must not be empty.", path, hint=hint)
    if kind in ("minItems", "maxItems"):
        bound = "at least" if kind == "minItems" else "at most"
        return locate.error(
            f"needs {bound} {error.validator_value} items, got {len(error.instance)}.",
            path,
            hint=hint,
        )
    if kind == "pattern":
        return locate.error(f"{show(error.instance)} is not in the expected form.", path, hint=hint)
    return locate.error(f"{error.message}.", path, hint=hint)


def _fitting_branch(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError] | None:
    """The errors of the one `oneOf` branch the value was evidently meant for, if there is one."""
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    # A branch whose type (or required key) the value does not even have was not meant.
    fitting = [
        errs
        for errs in branches.values()
        if not any(e.validator == "type" and not e.relative_path for e in errs)
    ]
    if len(fitting) > 1:
        fitting = [
            errs
            for errs in fitting
            if not any(e.validator == "required" and not e.relative_path for e in errs)
        ]
    return fitting[0] if len(fitting) == 1 else None


def show(value: Any) -> str:
    """A value as a user would write it in YAML (no Python reprs)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return repr(value)
    text = json.dumps(text_keys(value), default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _shown_scalar(value: Any) -> str:
    return "" if isinstance(value, (dict, list)) else f" {show(value)}"


def _axis_hint(instance: Any) -> str:
    if isinstance(instance, dict):
        keys = [str(k) for k in instance if k not in ("range", "zip")]
        if keys:
            return f"; unknown key '{keys[0]}'{did_you_mean(keys[0], ['range', 'zip'])}"
        if "range" in instance:
            return f"; got range {show(instance['range'])}."
    return "."


def _type_name(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "the text",
        bool: "the boolean",
        int: "the integer",
        float: "the number",
        type(None): "nothing (null)",
    }.get(type(value), type(value).__name__)


def text_keys(value: Any) -> Any:
    """`value` with every mapping key as text (JSON-safe, sortable)."""
    # Free-form sections may use numbers as keys; sorting mixed key types would fail.
    if isinstance(value, Mapping):
        return {str(k): text_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [text_keys(v) for v in value]
    return value
