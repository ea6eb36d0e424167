"""The one exception tree of campaigns.

    CampaignError                 base; carries the exit code the CLI returns
    ├── InputError (exit 2)       the user's input is wrong; nothing was changed
    │   ├── ConfigError           a campaign/machine file: names file, key path and line
    │   ├── ConfigChangedError    `init` on a campaign whose config changed since
    │   └── SchemaOutdatedError   the database's schema is older (or newer) than the code's
    ├── LockedError (exit 1)      another manager holds the campaign lock
    ├── IllegalTransitionError    a job state change the state machine forbids (a bug)
    └── OperationalError (exit 1) the world failed us after retries
        ├── SchedulerError        sbatch/sacct/scancel failed persistently
        │   ├── SubmissionUnknownError   sbatch's outcome unknown; the next run settles it
        │   ├── SiteLimitError    sbatch refused for a site limit: the jobs wait, a later
        │   │                     cycle tries again (submit holds it; it rarely escapes)
        │   └── SiteConfigError   sbatch refused the request itself: names the directive and fix
        ├── LeaseLostError        this manager's lease was taken or expired, or its heartbeat
        │                         failed: it stopped before writing anything more
        └── StoreError            the database could not be read or written
            └── FilesystemError   its filesystem refused a write: full, quota, read-only

Only ``campaigns.cli.main`` catches these; it prints ``error: <message>`` and
returns ``exit_code``. Library code raises, it never calls ``sys.exit``.
"""

from __future__ import annotations

from collections.abc import Sequence


class CampaignError(Exception):
    """Base of every error campaigns raises on purpose."""

    exit_code = 1


class InputError(CampaignError):
    """Bad input from the user (config, arguments): exit code 2."""

    exit_code = 2


def format_key_path(path: Sequence[str | int]) -> str:
    """Render a key path like ``execution.batch_size`` or ``overrides[1].match``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class ConfigError(InputError):
    """A configuration problem, located as precisely as we know."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key_path: Sequence[str | int] = (),
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.key_path = tuple(key_path)
        self.line = line
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        """One paragraph: where, what, and what to do."""
        where = self.file or "<config>"
        if self.line is not None:
            where += f", line {self.line}"
        if self.key_path:
            where += f", key '{format_key_path(self.key_path)}'"
        text = f"{where}: {self.message}"
        if self.hint:
            text += f" {self.hint}"
        return text


class ConfigChangedError(InputError):
    """`init` found a store created from a different configuration."""


class SchemaOutdatedError(InputError):
    """The database holds an older (or newer) schema: `db upgrade` first."""


class LockedError(CampaignError):
    """Another manager process holds the campaign lock."""


class IllegalTransitionError(CampaignError):
    """A change of a job's state that the state machine does not allow; nothing was written."""


class OperationalError(CampaignError):
    """An operation failed after retries: exit code 1."""


class SchedulerError(OperationalError):
    """The scheduler (sbatch, sacct, scancel, the local runner) failed."""


class SubmissionUnknownError(SchedulerError):
    """It is unknown whether a submission reached the scheduler; crash recovery settles it."""


class SiteLimitError(SchedulerError):
    """The scheduler refused a submission for a limit of the site (jobs queued per user, array
    size): nothing reached it; the same request may pass once the queue has room."""


class SiteConfigError(SchedulerError):
    """The scheduler refused the request itself (QOS, account, constraint, time, memory): no
    retry passes until the campaign or machine file changes."""


class LeaseLostError(OperationalError):
    """This manager no longer holds its campaign's lease (taken over, expired by the
    database's clock, or its heartbeat failed): the write was refused, nothing written."""


class StoreError(OperationalError):
    """The campaign database failed."""


class FilesystemError(StoreError):
    """The filesystem holding the database (or its lock) refused a write: no space left,
    quota used up, read-only, not allowed. Reading may still work."""
