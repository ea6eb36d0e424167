"""The campaigns one dashboard serves: each read once from its file, its store opened read-only."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence

from starlette.exceptions import HTTPException

from campaigns.errors import InputError
from campaigns.ops.context import Context
from campaigns.store.urls import secrets as url_secrets


class Served:
    """Campaign id (its directory's name) -> its read-only `Context`."""

    def __init__(self, contexts: Sequence[Context], poll_seconds: float = 5.0) -> None:
        self.poll_seconds = poll_seconds
        self._contexts: dict[str, Context] = {}
        self._lock = threading.Lock()
        for ctx in contexts:
            if not ctx.read_only:
                raise ValueError("the dashboard serves read-only contexts only")
            cid = ctx.layout.root.name
            if cid in self._contexts:
                if self._contexts[cid].layout.root == ctx.layout.root:
                    raise InputError(
                        f"{ctx.config_path} names the same campaign directory as "
                        f"{self._contexts[cid].config_path}: serve each campaign once"
                    )
                cid = f"{cid}-{len(self._contexts) + 1}"
            self._contexts[cid] = ctx

    @classmethod
    def from_files(
        cls,
        configs: Sequence[str | os.PathLike[str]],
        *,
        root: str | None = None,
        db_url: str | None = None,
        poll_seconds: float = 5.0,
    ) -> Served:
        """Read every campaign file (a bad one is an InputError, before anything is served)."""
        contexts = [Context(c, root=root, db_url=db_url, read_only=True) for c in configs]
        return cls(contexts, poll_seconds)

    def items(self) -> Iterator[tuple[str, Context]]:
        """(id, context) of every campaign, in the order given."""
        yield from self._contexts.items()

    def get(self, cid: str) -> Context:
        """The campaign `cid` (404 when it is not served)."""
        ctx = self._contexts.get(cid)
        if ctx is None:
            raise HTTPException(404, f"no campaign {cid!r} is served here")
        return ctx

    def ready(self, cid: str) -> Context:
        """The campaign `cid` with its store open (409 before `init`)."""
        ctx = self.get(cid)
        if not ctx.initialised():
            raise HTTPException(
                409, f"campaign not initialised yet: run `run-campaign init {ctx.config_path}`"
            )
        with self._lock:  # one store per campaign, whichever request opens it first
            ctx.store  # noqa: B018 -- opens it
        return ctx

    def secrets(self) -> list[str]:
        """Passwords in the campaigns' database URLs (in any form): never to be shown."""
        return [secret for ctx in self._contexts.values() for secret in url_secrets(ctx.db_url)]

    def close(self) -> None:
        """Release every store."""
        for ctx in self._contexts.values():
            ctx.close()
