"""Memory's own tables, in the kernel's metadata: embedded items, summary spans and forgotten messages.

Append-only: forgetting is a row, not a DELETE, so what an agent was made to forget stays auditable.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy import BigInteger, DateTime, Float, Index, String, Text
from sqlalchemy.ext.compiler import compiles

from tobio.db.tables import Id, column, id_column, table


class Vector(sa.types.TypeDecorator[list[float]]):
    """A float vector: DuckDB's FLOAT[] (so `list_cosine_similarity` works in `sql`), JSON elsewhere."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None or dialect.name == "duckdb":
            return value
        return json.dumps([float(v) for v in value])

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        return json.loads(value) if isinstance(value, str) else value


@compiles(Vector, "duckdb")
def _vector_duckdb(type_: Vector, compiler: Any, **kw: Any) -> str:
    return "FLOAT[]"


# One embedded memory: a message (`kind='message'`) or a summary (`kind='summary'`).
MemoryItemRow = table(
    "memory_items",
    id_column(),
    column("kind", String(16)),
    column("source_id", Id),  # messages.id or summaries.id
    column("created_at", DateTime()),  # when the remembered thing happened
    column("importance", Float),
    column("model", String(64)),  # the embed bundle
    column("vector", Vector),
    Index("ix_memory_items_source", "kind", "source_id"),
)

# Which messages a summary folded in: (first, last] of the thread after the previous checkpoint.
SummarySpanRow = table(
    "memory_summary_spans",
    column("summary_id", Id, primary_key=True, autoincrement=False),
    column("thread_id", Id, index=True),
    column("first_message_id", Id),
    column("last_message_id", Id),
    column("messages", BigInteger),
    column("tokens", BigInteger),
)

# A message an agent must no longer retrieve, with who asked and why.
ForgottenRow = table(
    "memory_forgotten",
    id_column(),
    column("agent_id", Id, index=True),
    column("message_id", Id),
    column("reason", Text, default=""),
    column("requested_by", String(64)),
    column("created_at", DateTime()),
)


TABLES = ("memory_items", "memory_summary_spans", "memory_forgotten")
