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


class NotLiteral(Exception):
    """The value has no literal form here; bind the batch instead."""


def literal(value: Any) -> str:
    """`value` as a DuckDB literal of the type binding it would give; NotLiteral if it has none."""
    if value is None:
        return "NULL"
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            raise NotLiteral("NUL in a string")
        return "'" + value.replace("'", "''") + "'"
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


def const(value: str | int) -> sa.ColumnElement[Any]:
    """`value` written into a statement rather than bound, for the queries Tobio runs while starting.

    Strings and integers render the same on DuckDB, SQLite and PostgreSQL (standard strings), so
    this is portable. Not SQLAlchemy's `literal_execute`: its Postgres-flavoured rendering, which
    duckdb-engine inherits, doubles backslashes that DuckDB then keeps.
    """
    if type(value) not in (str, int):
        raise TypeError(f"const() takes str or int, not {type(value).__name__}")
    return sa.literal_column(literal(value), sa.String() if isinstance(value, str) else sa.BigInteger())
