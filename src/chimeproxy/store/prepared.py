"""Prepared statements for the hottest reads: a SQLAlchemy Core statement compiled once per
dialect, then run straight on a pooled DB-API connection.

SQLAlchemy Core spent about 0.6 ms of a Get building, cache-keying and executing its two
statements and their transaction on the benchmark machine, for 24 µs of SQLite work; this
path takes 15 µs (docs/performance.md). The statement is still written in Core against the
schema, so the SQL stays the one SQLAlchemy would send; only the per-call machinery is
skipped. A single statement in the driver's autocommit mode reads one consistent snapshot, as
the transaction it replaces did. Any database error answers None, so that callers fall back on
their ordinary path, which reports the error exactly as it always has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.exc import DBAPIError

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None  # bind names in order, for positional paramstyles
    defaults: dict[str, Any]  # every bind's value as compiled (constants such as 'Closed')
    columns: tuple[str, ...]
    processors: tuple[Processor, ...]  # result conversions SQLAlchemy would apply (booleans)


class PreparedQuery:
    """One SELECT, compiled lazily for each dialect it meets; `first` answers a dict row."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def _compile(self, engine: Engine) -> _Compiled:
        dialect = engine.dialect
        key = (dialect.name, dialect.paramstyle)
        compiled = self._compiled.get(key)
        if compiled is None:
            result = self.statement.compile(dialect=dialect)
            columns = tuple(column.key for column in self.statement.selected_columns)
            processors = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in self.statement.selected_columns
            )
            positions = tuple(result.positiontup) if result.positional else None  # type: ignore[arg-type]
            compiled = _Compiled(str(result), positions, dict(result.params), columns, processors)
            self._compiled[key] = compiled
        return compiled

    def first(self, engine: Engine, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as a dict, or None when there is none or the driver fails."""
        compiled = self._compile(engine)
        values = compiled.defaults | dict(params)
        arguments: Any = (
            values if compiled.positions is None else [values[n] for n in compiled.positions]
        )
        # The driver's own errors, and those the pool wraps (a failed connect, say).
        errors = (engine.dialect.loaded_dbapi.Error, DBAPIError)
        try:
            connection = engine.raw_connection()
            try:
                cursor = connection.cursor()
                try:
                    cursor.execute(compiled.sql, arguments)
                    row = cursor.fetchone()
                finally:
                    cursor.close()
            finally:
                connection.close()
        except errors:
            return None
        if row is None:
            return None
        return {
            name: value if process is None or value is None else process(value)
            for name, value, process in zip(compiled.columns, row, compiled.processors, strict=True)
        }
