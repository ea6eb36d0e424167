"""Reference documentation generated from the schema and the argument parser.

The Sphinx build (docs/conf.py) writes these texts into docs/generated/, so the
configuration reference can never drift from the validator and the CLI
reference never from the parser.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KeyDoc:
    """One configuration key as the reference shows it."""

    path: str  # e.g. "execution.batch_size", "job_types.<name>.nodes"
    type: str
    default: str
    allowed: str
    description: str


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = schema
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return merged


def _type_text(schema: Mapping[str, Any], node: Mapping[str, Any]) -> str:
    node = _resolve(schema, node)
    if "oneOf" in node:
        return " | ".join(dict.fromkeys(_type_text(schema, n) for n in node["oneOf"]))
    kind = node.get("type")
    if isinstance(kind, list):
        return " | ".join(kind)
    if kind == "array":
        items = node.get("items")
        return f"list of {_type_text(schema, items)}" if items else "list"
    if kind == "object":
        return "mapping"
    return str(kind or "any")


def walk(
    schema: Mapping[str, Any], node: Mapping[str, Any] | None = None, prefix: str = ""
) -> Iterator[KeyDoc]:
    """Every key the schema accepts, depth first, in the schema's order."""
    node = _resolve(schema, schema if node is None else node)
    for name, child in node.get("properties", {}).items():
        child = _resolve(schema, child)
        path = f"{prefix}.{name}" if prefix else name
        allowed = ", ".join(f"``{v}``" for v in child.get("enum", []))
        bounds = [
            f"{label} {child[key]}"
            for key, label in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="))
            if key in child
        ]
        yield KeyDoc(
            path,
            _type_text(schema, child),
            json.dumps(child["default"]) if "default" in child else "",
            allowed or ", ".join(bounds),
            child.get("description", ""),
        )
        yield from _children(schema, child, path)


def _children(schema: Mapping[str, Any], node: Mapping[str, Any], path: str) -> Iterator[KeyDoc]:
    if "properties" in node:
        yield from walk(schema, node, path)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _children(schema, _resolve(schema, extra), f"{path}.<name>")
    for option in node.get("oneOf", []):
        option = _resolve(schema, option)
        if "properties" in option:
            yield from walk(schema, option, path)
    items = node.get("items")
    if isinstance(items, dict) and "properties" in _resolve(schema, items):
        yield from walk(schema, _resolve(schema, items), f"{path}[]")


def _anchor(path: str) -> str:
    return path.replace(".", "-").replace("<", "").replace(">", "").replace("[]", "")


def config_reference_rst(schema: Mapping[str, Any]) -> str:
    """The configuration reference as reStructuredText."""
    lines = [
        "Configuration reference",
        "=======================",
        "",
        ".. This file is generated from config/schemas/campaign_schema.yaml at build time.",
        "",
        "Every key a campaign file (or a machine file) may hold, as the validator accepts "
        "it. ``<name>`` stands for a name you choose; ``[]`` for each entry of a list. "
        "Unknown keys are errors, except under ``science``.",
        "",
    ]
    section = None
    for key in walk(schema):
        top = key.path.split(".")[0].split("[")[0]
        if top != section:
            section = top
            lines += [f"``{top}``", "-" * (len(top) + 4), ""]
        facts = [f"*{key.type}*"]
        if key.default:
            facts.append(f"default ``{key.default}``")
        if key.allowed:
            facts.append(f"allowed: {key.allowed}")
        lines += [
            f".. _config-{_anchor(key.path)}:",
            "",
            f"``{key.path}``",
            f"   {'; '.join(facts)}",
            "",
            f"   {key.description or '(no description)'}",
            "",
        ]
    return "\n".join(lines) + "\n"


def cli_reference_rst(parser: argparse.ArgumentParser) -> str:
    """The CLI reference (every command's --help) as reStructuredText."""
    lines = [
        "Command-line reference",
        "======================",
        "",
        ".. This file is generated from campaigns.cli.build_parser() at build time.",
        "",
        "``run-campaign`` and ``python scripts/run_campaign.py`` are the same program.",
        "",
        ".. code-block:: text",
        "",
    ]
    lines += [f"   {line}" for line in parser.format_help().splitlines()]
    lines.append("")
    for name, sub in _commands(parser):
        title = f"``{name}``"
        lines += [
            title,
            "-" * len(title),
            "",
            sub.description or "",
            "",
            ".. code-block:: text",
            "",
        ]
        lines += [f"   {line}" for line in sub.format_help().splitlines()]
        lines.append("")
    return "\n".join(lines) + "\n" + OUTPUT_CONTRACT


def _commands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command's full name and parser, depth first (`db upgrade`, ...)."""
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                nested = any(
                    isinstance(a, argparse._SubParsersAction)  # noqa: SLF001
                    for a in sub._actions  # noqa: SLF001
                )
                if nested:
                    yield from _commands(sub, f"{prefix}{name} ")
                else:
                    yield f"{prefix}{name}", sub


#: What scripts may rely on: exit codes and the JSON of `status`/`monitor`.
OUTPUT_CONTRACT = """
Exit codes
----------

=======  ===============================================================================
code     meaning
=======  ===============================================================================
``0``    success; for ``status --check``, a blocking ``monitor``, ``monitor --submit`` and
         ``qa``: every job completed (and, for ``qa``, every output is valid)
``1``    an operational failure after retries: the scheduler or the database server could
         not be reached (or failed), another manager holds the campaign (lock or lease),
         the circuit breaker is open
``2``    bad input (the campaign or machine file, or the arguments): one paragraph naming
         the file, the key and the line where known; nothing was created or changed. A
         database URL that is malformed, names an unknown database or a driver that is not
         installed, wrong credentials or a database that does not exist, and a database
         whose schema is older than this version (run ``db upgrade``) are bad input too.
         URLs are always shown with their password masked (``***``)
``3``    the campaign ended incomplete: jobs failed for good or were cancelled, or ``qa``
         found invalid outputs
``4``    not finished: ``status --check``, a blocking ``monitor`` without ``--submit`` or
         ``qa`` returned while jobs may still change
``130``  interrupted (Ctrl-C)
=======  ===============================================================================

``monitor --once`` is a polling primitive: it returns 0 whenever the refresh itself
worked, whatever state the campaign is in; so does ``status`` without ``--check``.

A campaign file edited after ``init`` is no error for the commands that work on the
campaign: ``status``, ``monitor``, ``cancel``, ``qa``, ``estimate`` and ``autopilot`` run the
campaign recorded in ``metadata/campaign_config.yaml`` and warn on standard error. ``submit``
and ``retry`` exit 2 until ``init --force`` adopts the change (or the file is restored).

JSON output
-----------

``status --json`` prints one JSON object; ``monitor --once --json`` first reconciles
with the scheduler, then prints the same object; ``monitor --json`` prints one such
object per line, one per refresh. Times are ISO-8601 UTC (``2026-05-01T12:00:00Z``).

.. code-block:: text

   {
     "campaign": {"name": str, "version": str, "path": str},   # path: the campaign directory
     "total": int,                                             # jobs in the campaign
     "counts": {"pending": int, "queued": int, "running": int,
                "completed": int, "failed": int, "cancelled": int},
     "failures": {
       "by_class": {failure class: int},   # exit_code, timeout, out_of_memory, node_fail,
                                           # preempted, boot_fail, cancelled,
                                           # missing_output, lost, invalid_output
       "retry_due": int,                   # failed, backoff elapsed: `retry` resets them
       "retry_waiting": int,               # failed, backoff not elapsed yet
       "exhausted": int,                   # failed for good (no attempts left, or permanent)
       "next_retry_at": str | null         # the soonest retry of a waiting job
     },
     "logs": str,                          # the campaign's logs/ folder
     "backend": str | null,                # the backend it last submitted to
     "open_arrays": int,                   # submitted arrays not yet finished
     "finished": bool,                     # no job will change without user action
     "outcome": str,                       # complete | incomplete | unfinished (exit 0/3/4)
     "circuit_breaker": {"open": bool, "since": str | null, "reason": str | null},
     "database": str,                      # the runs database, password masked
     "reconciled_at": str,                 # monitor only: when the scheduler was asked
     "scheduler_error": str,               # only when the scheduler could not be asked
     "jobs_matched": int,                  # with --verbose/--jobs: how many the selection matched
     "jobs": [                             # with --verbose/--jobs only, in campaign order
       {"key": str, "params": {name: value},   # values keep their YAML types
        "state": str, "attempts": int, "next_retry_at": str | null,
        "scheduler_id": str | null,        # e.g. "1234_7" (array job id _ task index)
        "output": str,                     # relative to catalogs/
        "error": str | null, "failure_class": str | null, "exit_code": int | null,
        "log": str | null}
     ]
   }

The other commands' ``--json`` objects mirror what they print: ``validate`` (jobs,
groups, arrays, resources), ``submit`` (the arrays submitted and jobs left waiting),
``retry`` (reset, waiting and exhausted jobs, and the submission), ``cancel``,
``estimate`` (jobs, arrays, node/CPU/GPU-hours, expected wall time and its basis),
``qa`` (the content of ``qa/validation_reports/latest.json``) and ``autopilot`` (``active``,
``method``, ``how``, ``interval_seconds``, ``installed_at``, ``last_tick``, ``next_tick``,
``failed_ticks``, ``missed_ticks``, ``problems``: what keeps ticks from working, in words,
and ``log``).
"""
