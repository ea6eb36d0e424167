"""Bulk writes through the driver's executemany: the paths that must stay fast at 100,000 jobs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain, islice
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

#: Longer IN lists are split (or filtered in Python) rather than bound as thousands of parameters.
MAX_IN = 500
#: Rows per driver executemany in `bulk_insert`.
INSERT_BATCH = 10_000


def bulk_insert(
    conn: Connection,
    table: sa.Table,
    rows: Iterable[Mapping[str, Any]],
    fixed: Mapping[str, Any] | None = None,
) -> int:
    """Insert many rows through one driver-level executemany; `fixed` values go into every row.

    The statement is compiled once for the connection's dialect (so the same code
    serves SQLite and PostgreSQL, where psycopg pipelines the executemany); rows go
    to the driver as plain tuples or dicts, skipping SQLAlchemy's per-row parameter
    processing, which dominated `init` at 40,000 jobs. Values must already be
    driver-ready (str, int, float, None).
    """
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return 0
    fixed = dict(fixed or {})
    defaults = {
        c.name: c.default.arg  # type: ignore[attr-defined]
        for c in table.columns
        if c.default is not None and c.default.is_scalar and c.name not in first
    }
    constants = {**defaults, **fixed}
    columns = [*(c for c in first if c not in fixed), *constants]
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=columns)
    order = compiled.positiontup
    statement = str(compiled)
    rows_in = chain((first,), iterator)
    if compiled.positional and order is not None:
        # Constants first (campaign_id leads every table), then the rows' own values.
        lead, rest = order[: len(constants)], order[len(constants) :]
        if set(lead) == set(constants) and len(rest) > 1:
            fixed_first = tuple(constants[c] for c in lead)
            getter = itemgetter(*rest)
            batches: Iterator[list[Any]] = (
                [fixed_first + getter(row) for row in batch]
                for batch in _batched(rows_in, INSERT_BATCH)
            )
        else:
            from_row = object()
            slots = [(c, constants.get(c, from_row)) for c in order]
            batches = (
                [tuple(row[c] if v is from_row else v for c, v in slots) for row in batch]
                for batch in _batched(rows_in, INSERT_BATCH)
            )
    else:
        batches = (
            [{**defaults, **row, **fixed} for row in batch]
            for batch in _batched(rows_in, INSERT_BATCH)
        )
    total = 0
    for params in batches:  # batches bound the memory a 100,000-row insert holds at once
        conn.exec_driver_sql(statement, params)
        total += len(params)
    return total


def _batched(rows: Iterator[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    """`rows` in lists of at most `size`."""
    while batch := list(islice(rows, size)):
        yield batch


def bulk_update(
    conn: Connection,
    table: sa.Table,
    keys: Sequence[str],
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    where: Any = None,
) -> int:
    """`UPDATE table SET columns WHERE keys [AND where]` for many rows in one driver executemany.

    Returns the number of rows changed (the driver sums executemany's counts).

    Compiled once for the dialect; each value goes through its column type's bind
    processor (so datetimes are stored exactly as SQLAlchemy stores them), but the
    per-row parameter machinery of `Connection.execute` is skipped.
    """
    if not rows:
        return 0
    condition = sa.and_(*[table.c[k] == sa.bindparam(f"k_{k}") for k in keys])
    if where is not None:  # constants, written into the statement (no per-row parameters)
        fixed = where.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        condition = sa.and_(condition, sa.text(str(fixed)))
    statement = table.update().where(condition).values({c: sa.bindparam(f"v_{c}") for c in columns})
    compiled = statement.compile(dialect=conn.dialect)
    names = compiled.positiontup if compiled.positional else list(compiled.binds)
    assert names is not None
    getters = []
    for name in names:
        column = table.c[name[2:]]
        processor = column.type._cached_bind_processor(conn.dialect)  # noqa: SLF001
        getters.append((name[2:], None if processor is None else _memoized(processor)))

    def convert(row: Mapping[str, Any]) -> list[Any]:
        return [p(row[c]) if p is not None and row[c] is not None else row[c] for c, p in getters]

    if compiled.positional:
        params: list[Any] = [tuple(convert(r)) for r in rows]
    else:
        params = [dict(zip(names, convert(r), strict=True)) for r in rows]
    result = conn.exec_driver_sql(str(compiled), params)
    return int(result.rowcount)


def _memoized(processor: Any) -> Any:
    """`processor` remembering its answers: a reconciliation binds the same few times
    (now, the manifests' start and end times) tens of thousands of times, and the
    datetime processors were a third of its cost."""
    memo: dict[Any, Any] = {}

    def process(value: Any) -> Any:
        try:
            return memo[value]
        except KeyError:
            memo[value] = done = processor(value)
            return done
        except TypeError:  # unhashable
            return processor(value)

    return process


def by_columns(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> dict[tuple[str, ...], list[Mapping[str, Any]]]:
    """Rows grouped by the columns they set (besides `keys`): one executemany per group."""
    out: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        columns = tuple(sorted(c for c in row if c not in keys))
        out.setdefault(columns, []).append(row)
    return out


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """`items` in slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
