"""The one list of execution backends.

Everything that needs to know the backends asks here: the CLI's `--backend`
choices, the allowed values of `execution.backend` and `machine.backend`, and `auto`.
A backend is a module with a class that satisfies `base.Scheduler`, registered with
one line below (or by a plugin, through `register`). `auto` picks the backend whose
`affinity()` is highest here, as submitit's `AutoExecutor` does: Slurm where `sbatch`
is on PATH, else local.
"""

from __future__ import annotations

import importlib

from campaigns.core.spec import Machine
from campaigns.errors import InputError
from campaigns.scheduler.base import Scheduler

AUTO = "auto"

#: name -> "module:Class" (imported only when used) or the class itself.
_BACKENDS: dict[str, str | type[Scheduler]] = {
    "slurm": "campaigns.scheduler.slurm:SlurmScheduler",
    "local": "campaigns.scheduler.local:LocalScheduler",
}


def register(name: str, backend: str | type[Scheduler]) -> None:
    """Add (or replace) a backend: a `Scheduler` class or its "module:Class" path."""
    _BACKENDS[name] = backend


def unregister(name: str) -> None:
    """Remove a backend (tests that registered one clean up with this)."""
    _BACKENDS.pop(name, None)


def names() -> list[str]:
    """The registered backends, in registration order."""
    return list(_BACKENDS)


def choices() -> list[str]:
    """What `--backend` accepts: `auto` and every registered backend."""
    return [AUTO, *_BACKENDS]


def backend_class(name: str) -> type[Scheduler]:
    """The class registered as `name`; InputError naming the choices if there is none."""
    entry = _BACKENDS.get(name)
    if entry is None:
        raise InputError(f"unknown backend '{name}'; choose one of: {', '.join(choices())}.")
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        entry = getattr(importlib.import_module(module), attribute)
        _BACKENDS[name] = entry
    return entry


def resolve(name: str) -> str:
    """A backend name with `auto` replaced by the best one available here."""
    if name != AUTO:
        backend_class(name)  # unknown names fail here, with the choices
        return name
    ranked = sorted(_BACKENDS, key=lambda n: backend_class(n).affinity(), reverse=True)
    best = next((n for n in ranked if backend_class(n).affinity() > 0), None)
    if best is None:
        raise InputError("no backend can run here; choose one with --backend.")
    return best


def create(name: str, machine: Machine) -> Scheduler:
    """An instance of backend `name` (`auto` resolved) for `machine`."""
    return backend_class(resolve(name)).from_machine(machine)
