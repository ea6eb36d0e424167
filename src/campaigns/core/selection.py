"""Which jobs a command acts on: `--state`, `--class`, `--match NAME=SPEC`, `--limit`. Pure.

    --state failed,cancelled          jobs in these states
    --class timeout                   failed jobs of these failure classes
    --match realization=10..20        a parameter within an inclusive range (numbers)
    --match redshift=1.0,2.0          a parameter equal to one of these values
    --match sim=fiducial              ... or to one value

Several `--match` options must all hold. Values are read as YAML reads them (`2` is
an integer, `2.0` a float, `true` a boolean) and compared as the campaign compares
parameters (2 matches 2.0; true never matches 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from campaigns.core.checks import did_you_mean
from campaigns.core.spec import ParamValue
from campaigns.core.states import FailureClass, JobState
from campaigns.errors import InputError


@dataclass(frozen=True)
class Match:
    """One `--match NAME=SPEC`: a value list, or an inclusive numeric range."""

    name: str
    values: tuple[ParamValue, ...] = ()
    low: float | None = None
    high: float | None = None

    def admits(self, value: ParamValue) -> bool:
        """True when `value` is in the list or the range."""
        if self.low is not None or self.high is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            return (self.low is None or value >= self.low) and (
                self.high is None or value <= self.high
            )
        return any(
            value == v and isinstance(value, bool) == isinstance(v, bool) for v in self.values
        )


@dataclass(frozen=True)
class Selection:
    """A filter over the campaign's jobs; an empty selection takes every job."""

    states: frozenset[JobState] = frozenset()
    classes: frozenset[FailureClass] = frozenset()
    matches: tuple[Match, ...] = ()
    limit: int | None = None

    @property
    def empty(self) -> bool:
        """True when nothing narrows the jobs down."""
        return not (self.states or self.classes or self.matches)

    def admits(self, params: Mapping[str, ParamValue]) -> bool:
        """True when a job's parameters pass every `--match` (its state and failure class
        are for the store's query to filter)."""
        return all(m.name in params and m.admits(params[m.name]) for m in self.matches)

    def describe(self) -> str:
        """The selection as the user would write it, for messages."""
        parts = []
        if self.states:
            parts.append("--state " + ",".join(sorted(s.value for s in self.states)))
        if self.classes:
            parts.append("--class " + ",".join(sorted(c.value for c in self.classes)))
        parts += [f"--match {m.name}={_spec_text(m)}" for m in self.matches]
        return " ".join(parts) or "every job"


def select(
    *,
    states: Iterable[str] = (),
    classes: Iterable[str] = (),
    matches: Iterable[str] = (),
    parameters: Sequence[str],
    limit: int | None = None,
) -> Selection:
    """Parse the options (comma lists allowed); InputError naming the choices when wrong."""
    return Selection(
        frozenset(_enum(JobState, states, "--state")),
        frozenset(_enum(FailureClass, classes, "--class")),
        tuple(parse_match(text, parameters) for text in matches),
        limit,
    )


def parse_match(text: str, parameters: Sequence[str]) -> Match:
    """`NAME=A..B`, `NAME=V1,V2` or `NAME=V` for one of the campaign's `parameters`."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not name or not spec.strip():
        raise InputError(
            f"--match '{text}' is not NAME=VALUE: write e.g. --match realization=10..20, "
            "--match redshift=1.0,2.0 or --match sim=fiducial."
        )
    if name not in parameters:
        raise InputError(
            f"--match '{text}': the campaign has no parameter '{name}'"
            f"{did_you_mean(name, parameters)} Parameters: {', '.join(parameters)}."
        )
    spec = spec.strip()
    if ".." in spec:
        low_text, _, high_text = spec.partition("..")
        low, high = _number(low_text, text), _number(high_text, text)
        if low is not None and high is not None and low > high:
            raise InputError(f"--match '{text}': the range is empty ({low} > {high}).")
        return Match(name, low=low, high=high)
    return Match(name, values=tuple(_value(v.strip()) for v in spec.split(",")))


E = TypeVar("E", JobState, FailureClass)


def _enum(kind: type[E], given: Iterable[str], option: str) -> list[E]:
    """The members named in `given` (comma lists allowed)."""
    out = []
    choices = [m.value for m in kind]
    for text in given:
        for word in filter(None, (w.strip() for w in text.split(","))):
            if word not in choices:
                raise InputError(
                    f"{option} {word}: not one of {', '.join(choices)}{did_you_mean(word, choices)}"
                )
            out.append(kind(word))
    return out


def _number(text: str, whole: str) -> float | None:
    """A range bound: a number, or nothing (an open end)."""
    text = text.strip()
    if not text:
        return None
    value = _value(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"--match '{whole}': a range takes numbers, got '{text}'.")
    return float(value)


def _value(text: str) -> ParamValue:
    """A value as YAML would read it: int, float, bool, or text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _spec_text(match: Match) -> str:
    if match.values:
        return ",".join(str(v) for v in match.values)
    low = "" if match.low is None else f"{match.low:g}"
    high = "" if match.high is None else f"{match.high:g}"
    return f"{low}..{high}"
