"""The database schema: an agent's subjective experience, recorded append-only where it can be.

Ids are allocated by the kernel (one writer per database), not by the database: DuckDB has no
SERIAL, and client ids let the group-commit writer bulk-insert messages and their pushes together.
Timestamps are naive UTC.

Tables are SQLAlchemy Core, not ORM classes: `sqlalchemy.orm` alone costs ~65 ms of every start,
and Tobio reads rows, it never keeps objects in sync with them. Code writes `AgentRow.c.name` for a
column and `sa.select(AgentRow)` for the table; plain `sa.Table`s, so mypy sees every column.

No secondary indexes on DuckDB (`Index(...)`, `index=True` are created on PostgreSQL and SQLite
only). DuckDB 1.5.6 loses them across a crash: rows of a file killed with its WAL pending are replayed
into a secondary index lazily, and a process that opens and closes the file without touching that
index (a `tobio -c`, a test, the DuckDB CLI) checkpoints it without them. From then on a lookup through
it misses those rows (`WHERE channel = 'talk'` → 0 rows), a unique one accepts duplicates, and
deleting or updating them fails fatally ("Failed to delete all rows from index"); see duckdb/duckdb
#23788 and PR #23848. Primary keys and UNIQUE constraints are bound eagerly and are not affected
(`agents.name` stays UNIQUE), and a scan is fast at Tobio's sizes. tests/test_recovery_indexes.py
replays that sequence with kill -9.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, String, Text
from sqlalchemy.schema import SchemaItem

Id = BigInteger
Row = sa.Row[Any]  # what reading any of these tables gives
metadata = sa.MetaData()


def table(name: str, *items: SchemaItem) -> sa.Table:
    """A table in the kernel's metadata: `T.c.name` for a column, `T.alias("sender")` for a self-join.
    Its secondary indexes are created everywhere but on DuckDB (see the module docstring)."""
    created = sa.Table(name, metadata, *items)
    for index in created.indexes:
        index.ddl_if(callable_=_not_duckdb)
    return created


def _not_duckdb(ddl: Any, target: Any, bind: Any, tables: Any = None, state: Any = None, *, dialect: sa.Dialect,
                compiler: Any = None, checkfirst: bool = False) -> bool:
    return dialect.name != "duckdb"


def id_column() -> sa.Column[int]:
    return sa.Column("id", Id, primary_key=True, autoincrement=False)


def column(name: str, type_: Any, *, null: bool = False, **kw: Any) -> sa.Column[Any]:
    """NOT NULL unless `null=True` (the opposite of Core's default, as the mapped schema had it)."""
    return sa.Column(name, type_, nullable=null, **kw)


# One agent: its type, the config it was spawned with, its lifecycle status and current state.
AgentRow = table(
    "agents",
    id_column(),
    column("name", String(64), unique=True),
    column("type", String(64)),
    column("config", JSON),
    column("config_file", Text, null=True),
    column("status", String(16)),  # running | paused | killed
    column("state_dict", JSON),
    column("created_at", DateTime()),
    column("updated_at", DateTime()),
)

# A superseded state_dict: the history of an agent's inner life, one row per change.
StateRow = table(
    "state",
    id_column(),
    column("agent_id", Id, index=True),
    column("state_dict", JSON),
    column("created_at", DateTime()),  # when this state became current
    column("superseded_at", DateTime()),
)

# A named place where messages are posted.
ChannelRow = table(
    "channels",
    column("name", String(64), primary_key=True),
    column("topic", Text, default=""),
    column("created_at", DateTime()),
)

# One contiguous experience of one agent: usually one channel subscription.
ThreadRow = table(
    "threads",
    id_column(),
    column("agent_id", Id),
    column("channel", String(64), null=True),
    column("name", String(160)),
    column("opened_at", DateTime()),
    column("closed_at", DateTime(), null=True),
    column("checkpoint_message_id", Id, null=True),
    Index("ix_threads_agent", "agent_id", "id"),
    Index("ix_threads_channel", "channel"),
)

# A message, written once for its channel; who received it is in `pushes`.
MessageRow = table(
    "messages",
    id_column(),
    column("agent_id", Id, null=True),  # the sender; None for the kernel itself
    column("thread_id", Id, null=True),  # the sender's thread, if it had one
    column("channel", String(64), null=True),
    column("role", String(16)),
    column("created_at", DateTime()),
    column("content", Text),
    column("metadata", JSON, null=True),
    column("reply_to", Id, null=True),  # the message its sender was handling when it posted this (its answer)
    Index("ix_messages_channel", "channel"),
)

# Message → thread: what an agent actually received. Its subjective history is these rows.
# (thread_id, message_id) is unique by construction (a post pushes a fresh message id once to each
# distinct subscription). It is declared a key everywhere but on DuckDB, where the key's index was ~40%
# of the group-commit writer's time (a batch of 500 posts to 10 subscribers inserts 5,000 keys) and is
# never used to read: DuckDB scans `pushes` for a thread either way.
PushRow = table(
    "pushes",
    column("thread_id", Id),
    column("message_id", Id),
    sa.PrimaryKeyConstraint("thread_id", "message_id").ddl_if(callable_=_not_duckdb),
)

# Handling cursor, one per thread: its agent has handled (answered, or seen and chosen not to) every
# message pushed to the thread up to `message_id`; what was pushed after it is unhandled. It moves in
# the same transaction as the reply, so a crash can neither lose a reply nor repeat one. A table of
# its own, not a column of `threads`: it changes with every message, and an UPDATE of a wide row costs
# more than one of two ids.
HandledRow = table(
    "handled",
    column("thread_id", Id, primary_key=True, autoincrement=False),
    column("message_id", Id),
)

# One model call on a thread (the thread/run/step shape): what it cost and how it went.
RunRow = table(
    "runs",
    id_column(),
    column("thread_id", Id, null=True),
    column("agent_id", Id, null=True),
    column("model", String(64)),  # the bundle name
    column("provider", String(64)),
    column("provider_model", Text),
    column("purpose", String(16)),
    column("params", JSON, null=True),
    column("status", String(16)),  # queued|in_progress|completed|failed|cancelled|expired
    column("created_at", DateTime()),
    column("started_at", DateTime(), null=True),
    column("completed_at", DateTime(), null=True),
    column("ttft_ms", Float, null=True),
    column("latency_ms", Float, null=True),
    column("prompt_tokens", BigInteger, null=True),
    column("completion_tokens", BigInteger, null=True),
    column("error", Text, null=True),
    column("message_id", Id, null=True),  # the message it produced, once posted
    column("cached_tokens", BigInteger, null=True),  # of prompt_tokens, reused from a KV/prefix cache
    Index("ix_runs_agent", "agent_id"),
    # No index on `status` anywhere: the sweep that expires a dead process's runs updates it, and on
    # DuckDB a stale index made that sweep fail fatally (see the module docstring).
)

# An action taken while producing a message: a model call, a tool or command call.
StepRow = table(
    "steps",
    id_column(),
    column("run_id", Id, null=True, index=True),
    column("message_id", Id, null=True, index=True),
    column("agent_id", Id, null=True),
    column("kind", String(32)),
    column("name", String(128)),
    column("params", JSON, null=True),
    column("result", JSON, null=True),
    column("created_at", DateTime()),
)

# A summary of a thread up to and including its checkpoint message.
SummaryRow = table(
    "summaries",
    id_column(),
    column("thread_id", Id),
    column("checkpoint_message_id", Id),
    column("content", Text),
    column("created_at", DateTime()),
    Index("ix_summaries_thread", "thread_id", "checkpoint_message_id"),
)

# The kernel's log, queryable like everything else.
LogRow = table(
    "logs",
    id_column(),
    column("level", String(10)),
    column("logger", String(128)),
    column("created_at", DateTime()),
    column("content", Text),
)

# Which schema migrations have run, and when.
MigrationRow = table(
    "schema_migrations",
    column("name", String(128), primary_key=True),
    column("applied_at", DateTime()),
)


# A fork (`agent fork`, `channel branch`): the agent it branched from and the moment. Its past up to `fork_at`
# is its parent's, shared by reference (its threads' pushes name the same messages); after it, its own.
BranchRow = table(
    "branches",
    column("agent_id", Id, primary_key=True, autoincrement=False),
    column("parent_agent_id", Id, index=True),
    column("fork_at", DateTime()),  # the fork point: the parent's mind as of this moment
    column("message_id", Id, null=True),  # the message it was forked after (`--message`), if given
    column("channels", JSON),  # the parent's channel -> the fork's (a DM, a branched scene)
    column("created_at", DateTime()),  # when the fork was made
)

# Whose words count as the agent's own: its ancestors', up to each one's fork point (a fork of a fork
# has two rows). A fork reads its parent's lines up to `upto` under its own name, as its own.
LineageRow = table(
    "lineage",
    column("agent_id", Id),
    column("ancestor_id", Id),
    column("upto", DateTime()),  # the ancestor's words up to this moment are the agent's own
    sa.PrimaryKeyConstraint("agent_id", "ancestor_id"),
)


# Tables whose ids the kernel allocates, in the order the writer flushes them.
ID_TABLES = ("agents", "state", "threads", "messages", "steps", "summaries", "logs", "runs")


def versions_table(name: str, key: str) -> sa.Table:
    """Every version of every `key` (a persona, a lorebook): its whole content, and who changed it when."""
    return table(
        name,
        id_column(),
        column(key, String(64), index=True),
        column("version", BigInteger),
        column("data", JSON),
        column("changed_by", String(64)),
        column("change", Text),
        column("source", Text, null=True),
        column("created_at", DateTime()),
    )


# Kernels sharing one PostgreSQL (tobio/cluster): who is up, where, and when it last said so.
KernelRow = table(
    "kernels",
    column("id", Id, primary_key=True, autoincrement=False),
    column("host", String(255)),
    column("pid", BigInteger),
    column("grp", String(64), null=True),  # its group: agents placed in a group run only there
    column("started_at", DateTime()),
    column("heartbeat_at", DateTime()),
    column("stopping", sa.Boolean(), default=False),
)

# Which kernel runs an agent: a lease it renews. `epoch` grows each time the agent changes hands, and a
# kernel's writes for the agent commit only while the row still names that kernel and epoch (fencing).
LeaseRow = table(
    "leases",
    column("agent_id", Id, primary_key=True, autoincrement=False),
    column("kernel_id", Id),
    column("epoch", BigInteger),
    column("expires_at", DateTime()),
    Index("ix_leases_kernel", "kernel_id"),
)
