"""Memory's own tables, on the kernel's Base: embedded items, summary spans and forgotten messages.

Append-only: forgetting is a row, not a DELETE, so what an agent was made to forget stays auditable.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Float, Index, String, Text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column

from tobio.db.tables import Base, Id, id_column


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


class MemoryItemRow(Base):
    """One embedded memory: a message (`kind='message'`) or a summary (`kind='summary'`)."""

    __tablename__ = "memory_items"
    id: Mapped[int] = id_column()
    kind: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[int] = mapped_column(Id)  # messages.id or summaries.id
    created_at: Mapped[datetime]  # when the remembered thing happened
    importance: Mapped[float] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(64))  # the embed bundle
    vector: Mapped[list[float]] = mapped_column(Vector)

    __table_args__ = (Index("ix_memory_items_source", "kind", "source_id"),)


class SummarySpanRow(Base):
    """Which messages a summary folded in: (first, last] of the thread after the previous checkpoint."""

    __tablename__ = "memory_summary_spans"
    summary_id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    thread_id: Mapped[int] = mapped_column(Id, index=True)
    first_message_id: Mapped[int] = mapped_column(Id)
    last_message_id: Mapped[int] = mapped_column(Id)
    messages: Mapped[int]
    tokens: Mapped[int]


class ForgottenRow(Base):
    """A message an agent must no longer retrieve, with who asked and why."""

    __tablename__ = "memory_forgotten"
    id: Mapped[int] = id_column()
    agent_id: Mapped[int] = mapped_column(Id, index=True)
    message_id: Mapped[int] = mapped_column(Id)
    reason: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


TABLES = ("memory_items", "memory_summary_spans", "memory_forgotten")
