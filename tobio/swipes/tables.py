"""The tables a swipe or an edit writes: pushes taken out of an agent's history, and the states to go back to.

Nothing is deleted. A withdrawn message keeps its row in `messages`; its pushes move to `withdrawn_pushes`,
so every read of a thread (bench/history.py's hot path, memory's recall, the unhandled scan) stays the
plain `pushes` it was, and leaves the withdrawn reply out by construction. Bringing it back inserts the
pushes again and stamps `restored_at`: the table is the audit of every withdrawal.
"""

from __future__ import annotations

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.engine import Connection

from tobio.db.migrations import create_tables
from tobio.db.tables import Id, column, id_column, table

# One push taken out of a thread's history (a rejected alternative, or what followed an edited message).
WithdrawnRow = table(
    "withdrawn_pushes",
    column("thread_id", Id),
    column("message_id", Id),
    column("reason", String(16)),  # swipe | edit
    column("branch", String(64), null=True),  # edit: the name of the branch it moved to
    column("withdrawn_at", DateTime()),
    column("restored_at", DateTime(), null=True),  # pushed again (the alternative chosen back)
)

WITHDRAWN_COLUMNS = ("thread_id", "message_id", "reason", "branch", "withdrawn_at", "restored_at")

# An agent's whole state (state_dict with modules) to go back to: `before` the turn that answered message
# `message_id`, or `after` alternative `message_id` (saved when another one was chosen instead).
SwipeStateRow = table(
    "swipe_states",
    id_column(),
    column("agent_id", Id),
    column("message_id", Id),
    column("kind", String(8)),  # before | after
    column("state_dict", JSON),
    column("created_at", DateTime()),
)


def m001_swipes(conn: Connection) -> None:
    create_tables(conn, [WithdrawnRow, SwipeStateRow])


MIGRATIONS = [m001_swipes]
TABLES = ("withdrawn_pushes", "swipe_states")


def setup(conn: Connection) -> None:
    """Create the tables once (on the DB thread); ids of `swipe_states` are the kernel's to allocate."""
    from tobio.db.migrations import migrate

    migrate(conn, MIGRATIONS, prefix="swipes.")


