"""DuckDB SQL literals for the small-batch insert path, so that writing does not need pandas.

DuckDB's Python client checks every bound parameter against `pandas.NaT`/`pandas.NA`, importing
pandas (~0.5 s, with numpy) the first time it binds anything. Tobio writes a few rows while it starts
(logs, states), which made every `tobio-shell -c …` pay for pandas. Plain values (None, bool, int,
float, str, date/time) are therefore written as literals; a batch holding anything else (bytes,
vectors, …) is bound as before. Rendering follows DuckDB's rules: strings in single quotes with `'`
doubled and no backslash escapes; floats through a string cast so they round-trip exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles


class NotLiteral(Exception):
    """The value has no literal form here; bind the batch instead."""


def literal(value: Any) -> str:
    """`value` as a DuckDB literal of the type binding it would give; NotLiteral if it has none."""
    if value is None:
        return "NULL"
    kind = type(value)
    if kind is str:
        text: str = value
        if "\x00" in text:
            raise NotLiteral("NUL in a string")
        return "'" + text.replace("'", "''") + "'"
    if kind is bool:
        return "TRUE" if value else "FALSE"
    if kind is int:
        return str(value)
    if kind is float:
        text = repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
        return f"CAST('{text}' AS DOUBLE)"
    if kind is datetime and value.tzinfo is None:  # Tobio stores naive UTC; aware ones are bound
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if kind is date:
        return f"DATE '{value.isoformat()}'"
    if kind is time and value.tzinfo is None:
        return f"TIME '{value.isoformat()}'"
    raise NotLiteral(kind.__name__)


def values_list(rows: Iterable[Iterable[Any]]) -> str:
    """`(…), (…)` for a VALUES clause; NotLiteral when any value must be bound."""
    return ", ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)


class Const(sa.ColumnElement[Any]):
    """A constant that DuckDB gets written into the statement and every other database gets bound."""

    inherit_cache = False  # the value is part of the SQL on DuckDB, so a cached statement would be wrong

    def __init__(self, value: str | int) -> None:
        self.value = value
        self.type = sa.String() if isinstance(value, str) else sa.BigInteger()


@compiles(Const)
def _bound(element: Const, compiler: Any, **kw: Any) -> str:
    return compiler.process(sa.bindparam(None, element.value, type_=element.type, unique=True), **kw)  # type: ignore[no-any-return]  # SQLAlchemy's compiler.process returns Any


@compiles(Const, "duckdb")
def _written(element: Const, compiler: Any, **kw: Any) -> str:
    return literal(element.value)


def const(value: str | int) -> Const:
    """`value` in a query Tobio runs while starting: written into the SQL on DuckDB (no pandas), bound elsewhere.

    Not SQLAlchemy's `literal_execute`: its Postgres-flavoured rendering, which duckdb-engine inherits,
    doubles backslashes that DuckDB then keeps.
    """
    if type(value) not in (str, int):
        raise TypeError(f"const() takes str or int, not {type(value).__name__}")
    return Const(value)
