"""Ids from PostgreSQL sequences, reserved in blocks (hi/lo).

The group-commit writer needs an id the moment a row is queued, without a round trip per row. Each
kernel reserves a block of ids from the table's sequence and hands them out from memory; an exhausted
block is refilled with one short transaction. The sequence is moved under a transaction-scoped advisory
lock, so a request larger than a block (a bulk import) still gets one contiguous range while another
kernel reserves its own. Ids a kernel reserved and did not use are gaps, never reused.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

LATE = frozenset({"messages"})  # tables whose ids clustered kernels take at commit
BLOCK = 1000  # ids reserved per refill: a round trip per 1,000 rows
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('tobio.ids'), hashtext(%(t)s))"


def sequence_name(table: str) -> str:
    """The sequence that numbers `table`'s ids (not `<table>_id_seq`, which a SERIAL would take)."""
    return f"tobio_ids_{table}"


def ensure_sequence(conn: Connection, table: str) -> None:
    """Create `table`'s sequence unless it exists, and move it past the table's largest id.

    Taken under the same advisory lock as a refill, so two kernels starting at once neither create it twice
    nor reserve a block from it while it is being moved."""
    seq = sequence_name(table)
    conn.exec_driver_sql(_LOCK, {"t": table})
    conn.exec_driver_sql(f"CREATE SEQUENCE IF NOT EXISTS {seq} AS bigint MINVALUE 1")
    conn.exec_driver_sql(
        f"SELECT setval('{seq}', m) FROM (SELECT coalesce(max(id), 0) AS m FROM {table}) AS top, {seq} AS s"
        " WHERE m > 0 AND (m > s.last_value OR (m = s.last_value AND NOT s.is_called))"
    )


def reserve(conn: Connection, table: str, count: int) -> int:
    """Reserve `count` consecutive ids of `table` (in the caller's transaction); returns the first."""
    seq = sequence_name(table)
    conn.exec_driver_sql(_LOCK, {"t": table})
    if table in LATE:
        # Clustered kernels also take these one by one, without the lock, as they commit (tobio/cluster/sql.py):
        # a range is only ours if nobody's nextval fell inside it.
        while True:
            ids = conn.exec_driver_sql(f"SELECT nextval('{seq}') FROM generate_series(1, {int(count)})").scalars().all()
            if ids[-1] - ids[0] == count - 1:
                return int(ids[0])
    first = int(conn.exec_driver_sql(f"SELECT nextval('{seq}')").scalar_one())
    if count > 1:
        conn.exec_driver_sql(f"SELECT setval('{seq}', {first + count - 1})")
    return first


class SequenceIds:
    """Blocks of ids per table from their sequences, through a connection of its own.

    Its own connection because `next_ids` is called on the kernel's loop while the DB thread may be inside a
    long transaction; the lock because modules also call it from the DB thread."""

    def __init__(self, engine: Engine, block: int = BLOCK) -> None:
        self.engine = engine
        self.block = block
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self.refills = 0

    def take(self, table: str, count: int) -> tuple[int, int]:
        """A fresh range for `count` ids: (first, end) with at least `count` ids, one block at least."""
        size = max(count, self.block)
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.invalidated:
                self._conn = self.engine.connect()
            try:
                with self._conn.begin():
                    first = reserve(self._conn, table, size)
            except sa.exc.DBAPIError:
                self._conn.close()
                self._conn = None
                raise
            self.refills += 1
        return first, first + size

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
