"""The database schema: an agent's subjective experience, recorded append-only where it can be.

Ids are allocated by the kernel (one writer per database), not by the database: DuckDB has no
SERIAL, and client ids let the group-commit writer bulk-insert messages and their pushes together.
Timestamps are naive UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Id = BigInteger


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(), int: BigInteger, float: Float}


def id_column() -> Mapped[int]:
    return mapped_column(Id, primary_key=True, autoincrement=False)


class AgentRow(Base):
    """One agent: its type, the config it was spawned with, its lifecycle status and current state."""

    __tablename__ = "agents"
    id: Mapped[int] = id_column()
    name: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]]
    config_file: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # running | paused | killed
    state_dict: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class StateRow(Base):
    """A superseded state_dict: the history of an agent's inner life, one row per change."""

    __tablename__ = "state"
    id: Mapped[int] = id_column()
    agent_id: Mapped[int] = mapped_column(Id, index=True)
    state_dict: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]  # when this state became current
    superseded_at: Mapped[datetime]


class ChannelRow(Base):
    """A named place where messages are posted."""

    __tablename__ = "channels"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    topic: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class ThreadRow(Base):
    """One contiguous experience of one agent: usually one channel subscription."""

    __tablename__ = "threads"
    id: Mapped[int] = id_column()
    agent_id: Mapped[int] = mapped_column(Id)
    channel: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(160))
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    checkpoint_message_id: Mapped[int | None] = mapped_column(Id)

    __table_args__ = (Index("ix_threads_agent", "agent_id", "id"), Index("ix_threads_channel", "channel"))


class MessageRow(Base):
    """A message, written once for its channel; who received it is in `pushes`."""

    __tablename__ = "messages"
    id: Mapped[int] = id_column()
    agent_id: Mapped[int | None] = mapped_column(Id)  # the sender; None for the kernel itself
    thread_id: Mapped[int | None] = mapped_column(Id)  # the sender's thread, if it had one
    channel: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    content: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)

    __table_args__ = (Index("ix_messages_channel", "channel"),)


class PushRow(Base):
    """Message → thread: what an agent actually received. Its subjective history is these rows."""

    __tablename__ = "pushes"
    thread_id: Mapped[int] = mapped_column(Id, primary_key=True)
    message_id: Mapped[int] = mapped_column(Id, primary_key=True)


class RunRow(Base):
    """One model call on a thread (the thread/run/step shape): what it cost and how it went."""

    __tablename__ = "runs"
    id: Mapped[int] = id_column()
    thread_id: Mapped[int | None] = mapped_column(Id)
    agent_id: Mapped[int | None] = mapped_column(Id)
    model: Mapped[str] = mapped_column(String(64))  # the bundle name
    provider: Mapped[str] = mapped_column(String(64))
    provider_model: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # queued|in_progress|completed|failed|cancelled|expired
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    ttft_ms: Mapped[float | None]
    latency_ms: Mapped[float | None]
    prompt_tokens: Mapped[int | None] = mapped_column(BigInteger)
    completion_tokens: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[int | None] = mapped_column(Id)  # the message it produced, once posted

    __table_args__ = (Index("ix_runs_agent", "agent_id"), Index("ix_runs_status", "status"))


class StepRow(Base):
    """An action taken while producing a message: a model call, a tool or command call."""

    __tablename__ = "steps"
    id: Mapped[int] = id_column()
    run_id: Mapped[int | None] = mapped_column(Id, index=True)
    message_id: Mapped[int | None] = mapped_column(Id, index=True)
    agent_id: Mapped[int | None] = mapped_column(Id)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]


class SummaryRow(Base):
    """A summary of a thread up to and including its checkpoint message."""

    __tablename__ = "summaries"
    id: Mapped[int] = id_column()
    thread_id: Mapped[int] = mapped_column(Id)
    checkpoint_message_id: Mapped[int] = mapped_column(Id)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_summaries_thread", "thread_id", "checkpoint_message_id"),)


class LogRow(Base):
    """The kernel's log, queryable like everything else."""

    __tablename__ = "logs"
    id: Mapped[int] = id_column()
    level: Mapped[str] = mapped_column(String(10))
    logger: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    content: Mapped[str] = mapped_column(Text)


class MigrationRow(Base):
    """Which schema migrations have run, and when."""

    __tablename__ = "schema_migrations"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    applied_at: Mapped[datetime]


# Tables whose ids the kernel allocates, in the order the writer flushes them.
ID_TABLES = ("agents", "state", "threads", "messages", "steps", "summaries", "logs", "runs")
