"""The cluster's statements (PostgreSQL only): leases, fencing, posts and the scan of new pushes.

Times are the database's clock (`clock_timestamp()` as naive UTC), never a kernel's: two machines'
clocks may disagree, the database's is the one every lease is read against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

NOW = "(clock_timestamp() AT TIME ZONE 'UTC')"
# Every statement that locks lease rows locks them in agent id order (claim, renew, release, the writer's fence):
# a kernel's heartbeat renewing its leases while its writer checks them FOR SHARE deadlocked otherwise.
POSTS = "tobio_posts"  # NOTIFY channel: messages were committed
LEASES = "tobio_leases"  # NOTIFY channel: leases were released or moved
DELTAS = "tobio_deltas"  # NOTIFY channel: pieces of messages being streamed, for front ends in other kernels


def register(conn: Connection, host: str, pid: int, group: str | None) -> int:
    kernel_id = int(conn.exec_driver_sql("SELECT nextval('tobio_ids_kernels')").scalar_one())
    conn.exec_driver_sql(
        f"INSERT INTO kernels (id, host, pid, grp, started_at, heartbeat_at, stopping) VALUES (%(k)s, %(h)s, %(p)s, %(g)s, {NOW}, {NOW}, false)",
        {"k": kernel_id, "h": host, "p": pid, "g": group},
    )
    return kernel_id


def claim(conn: Connection, kernel_id: int, agent_ids: Sequence[int], lease_s: float) -> dict[int, int]:
    """Take the leases of `agent_ids` that are free, expired, or already this kernel's; agent id -> epoch.

    A lease changing hands gets the next epoch, so whatever its last holder still writes is refused."""
    if not agent_ids:
        return {}
    rows = conn.exec_driver_sql(
        "INSERT INTO leases (agent_id, kernel_id, epoch, expires_at)"
        f" SELECT a, %(k)s, 1, {NOW} + make_interval(secs => %(s)s) FROM unnest(%(a)s::bigint[]) AS a ORDER BY a"
        " ON CONFLICT (agent_id) DO UPDATE SET kernel_id = EXCLUDED.kernel_id, expires_at = EXCLUDED.expires_at,"
        " epoch = CASE WHEN leases.kernel_id = EXCLUDED.kernel_id THEN leases.epoch ELSE leases.epoch + 1 END"
        f" WHERE leases.kernel_id = EXCLUDED.kernel_id OR leases.expires_at < {NOW}"
        " RETURNING agent_id, epoch",
        {"k": kernel_id, "a": sorted(agent_ids), "s": lease_s},
    )
    return {int(a): int(e) for a, e in rows}


_MINE = "SELECT agent_id FROM leases WHERE kernel_id = %(k)s{} ORDER BY agent_id FOR UPDATE"  # locked in order


def renew(conn: Connection, kernel_id: int, lease_s: float) -> dict[int, int]:
    """Extend every lease this kernel holds and say it is alive; agent id -> epoch of what it holds."""
    conn.exec_driver_sql(f"UPDATE kernels SET heartbeat_at = {NOW} WHERE id = %(k)s", {"k": kernel_id})
    # A kernel that died stays listed (`kernel ls`: silent) for a while, then goes.
    conn.exec_driver_sql(f"DELETE FROM kernels WHERE heartbeat_at < {NOW} - make_interval(secs => %(s)s)",
                         {"s": max(10 * lease_s, 300.0)})
    rows = conn.exec_driver_sql(
        f"UPDATE leases SET expires_at = {NOW} + make_interval(secs => %(s)s) FROM ({_MINE.format('')}) AS mine"
        " WHERE leases.agent_id = mine.agent_id RETURNING leases.agent_id, leases.epoch",
        {"k": kernel_id, "s": lease_s},
    )
    return {int(a): int(e) for a, e in rows}


def orphans(conn: Connection) -> list[tuple[int, str]]:
    """Agents that should run and whose lease is missing or expired: (id, name), oldest first."""
    rows = conn.exec_driver_sql(
        "SELECT a.id, a.name FROM agents a LEFT JOIN leases l ON l.agent_id = a.id"
        f" WHERE a.status <> 'killed' AND a.type <> 'user' AND (l.agent_id IS NULL OR l.expires_at < {NOW}) ORDER BY a.id"
    )
    return [(int(i), str(n)) for i, n in rows]


def next_expiry(conn: Connection, kernel_id: int, lease_s: float, renewed_within_s: float) -> float | None:
    """Seconds until the first lease of another kernel that was not renewed within `renewed_within_s`
    expires (its kernel may be gone): the moment to look for orphans again, instead of a heartbeat later."""
    left = conn.exec_driver_sql(
        f"SELECT extract(epoch FROM min(expires_at) - {NOW}) FROM leases WHERE kernel_id <> %(k)s"
        f" AND expires_at > {NOW} AND expires_at < {NOW} + make_interval(secs => %(s)s)",
        {"k": kernel_id, "s": lease_s - renewed_within_s}).scalar()
    return None if left is None else float(left)


def live_kernels(conn: Connection, lease_s: float) -> list[tuple[int, str | None]]:
    """Kernels up and not stopping: (id, group), by id."""
    rows = conn.exec_driver_sql(
        f"SELECT id, grp FROM kernels WHERE NOT stopping AND heartbeat_at > {NOW} - make_interval(secs => %(s)s) ORDER BY id",
        {"s": lease_s})
    return [(int(k), g) for k, g in rows]


def release(conn: Connection, kernel_id: int, agent_ids: Sequence[int] | None = None) -> None:
    """Give leases up at once (all of this kernel's, or some), so another kernel adopts them now."""
    some = " AND agent_id = ANY(%(a)s::bigint[])" if agent_ids is not None else ""
    conn.exec_driver_sql(
        f"UPDATE leases SET expires_at = {NOW} - interval '1 second' FROM ({_MINE.format(some)}) AS mine"
        " WHERE leases.agent_id = mine.agent_id", {"k": kernel_id, "a": list(agent_ids or ())})
    conn.exec_driver_sql(f"SELECT pg_notify('{LEASES}', %(k)s)", {"k": str(kernel_id)})


def move(conn: Connection, agent_id: int, to_kernel: int, lease_s: float) -> bool:
    """Hand an agent's lease to another kernel (next epoch): its old holder's writes are refused from now."""
    moved = conn.exec_driver_sql(
        f"UPDATE leases SET kernel_id = %(k)s, epoch = epoch + 1, expires_at = {NOW} + make_interval(secs => %(s)s)"
        " WHERE agent_id = %(a)s AND kernel_id <> %(k)s",
        {"k": to_kernel, "a": agent_id, "s": lease_s},
    ).rowcount
    conn.exec_driver_sql(f"SELECT pg_notify('{LEASES}', %(k)s)", {"k": str(to_kernel)})
    return bool(moved)


def fenced(conn: Connection, kernel_id: int, epochs: dict[int, int]) -> set[int]:
    """Of `epochs` (agent id -> the epoch this kernel holds), the agents whose lease it no longer holds.

    The rows it still holds are locked (FOR SHARE) until the transaction ends: a kernel taking one over
    waits for this commit, and then reads everything it wrote."""
    if not epochs:
        return set()
    held = conn.exec_driver_sql(
        "SELECT l.agent_id FROM leases l JOIN unnest(%(a)s::bigint[], %(e)s::bigint[]) AS w(agent_id, epoch)"
        " ON l.agent_id = w.agent_id AND l.epoch = w.epoch WHERE l.kernel_id = %(k)s ORDER BY l.agent_id FOR SHARE OF l",
        {"a": list(epochs), "e": list(epochs.values()), "k": kernel_id},
    ).scalars()
    return set(epochs) - {int(a) for a in held}


def lock_channels(conn: Connection, channels: Sequence[str]) -> None:
    """Posts to a channel commit one kernel at a time, so its message ids grow in commit order (a thread's
    handled cursor relies on that). Locks are taken in one order everywhere, and end with the transaction."""
    conn.exec_driver_sql(
        "SELECT count(pg_advisory_xact_lock(hashtext('tobio.channel'), hashtext(c)))"
        " FROM (SELECT c FROM unnest(%(c)s::text[]) AS c ORDER BY hashtext(c), c) AS ordered",
        {"c": sorted(set(channels))},
    )


def message_ids(conn: Connection, count: int) -> list[int]:
    """`count` fresh message ids, ascending, taken now (under the channels' locks)."""
    return sorted(int(i) for i in conn.exec_driver_sql(
        "SELECT nextval('tobio_ids_messages') FROM generate_series(1, %(n)s)", {"n": count}).scalars())


def push(conn: Connection, channels: Sequence[str], ids: Sequence[int]) -> None:
    """Push each message to every thread open on its channel now, in whichever kernel its agent runs."""
    conn.exec_driver_sql(
        "INSERT INTO pushes (thread_id, message_id) SELECT t.id, v.m FROM unnest(%(c)s::text[], %(m)s::bigint[]) AS v(c, m)"
        " JOIN threads t ON t.channel = v.c AND t.closed_at IS NULL",
        {"c": list(channels), "m": list(ids)},
    )


def notify_posts(conn: Connection, kernel_id: int) -> None:
    conn.exec_driver_sql(f"SELECT pg_notify('{POSTS}', %(k)s)", {"k": str(kernel_id)})


_MESSAGE = "m.id, m.channel, s.name, m.role, m.content, m.created_at, m.agent_id, m.thread_id, m.metadata"


def new_pushes(conn: Connection, marks: dict[int, int], limit: int) -> list[tuple[Any, ...]]:
    """Pushes to these threads after their marks, oldest first, at most `limit`, by message: (its threads here,
    *message). A message pushed to 20 threads here is read once, not 20 times."""
    if not marks:
        return []
    return [tuple(row) for row in conn.exec_driver_sql(
        "WITH p AS (SELECT p.thread_id, p.message_id FROM unnest(%(t)s::bigint[], %(k)s::bigint[]) AS w(tid, mark)"
        " JOIN pushes p ON p.thread_id = w.tid AND p.message_id > w.mark ORDER BY p.message_id, p.thread_id LIMIT %(n)s)"
        f" SELECT array_agg(p.thread_id ORDER BY p.thread_id), {_MESSAGE} FROM p JOIN messages m ON m.id = p.message_id"
        " LEFT JOIN agents s ON s.id = m.agent_id GROUP BY m.id, s.name ORDER BY m.id",
        {"t": list(marks), "k": list(marks.values()), "n": limit},
    )]


def new_messages(conn: Connection, marks: dict[str, int], limit: int) -> list[tuple[Any, ...]]:
    """Messages on these channels after their marks, oldest first (for front ends watching a channel)."""
    if not marks:
        return []
    return [tuple(row) for row in conn.exec_driver_sql(
        f"SELECT {_MESSAGE} FROM unnest(%(c)s::text[], %(k)s::bigint[]) AS w(ch, mark)"
        " JOIN messages m ON m.channel = w.ch AND m.id > w.mark LEFT JOIN agents s ON s.id = m.agent_id"
        " ORDER BY m.id LIMIT %(n)s",
        {"c": list(marks), "k": list(marks.values()), "n": limit},
    )]


def channel_tops(conn: Connection, channels: Sequence[str]) -> dict[str, int]:
    rows = conn.exec_driver_sql(
        "SELECT c, coalesce((SELECT max(id) FROM messages WHERE channel = c), 0) FROM unnest(%(c)s::text[]) AS c",
        {"c": list(channels)})
    return {str(c): int(top) for c, top in rows}


def cursors(conn: Connection, thread_ids: Sequence[int]) -> dict[int, int]:
    rows = conn.exec_driver_sql(
        "SELECT t, coalesce(h.message_id, 0) FROM unnest(%(t)s::bigint[]) AS t LEFT JOIN handled h ON h.thread_id = t",
        {"t": list(thread_ids)})
    return {int(t): int(m) for t, m in rows}


def others_up(conn: Connection, within_s: float = 60.0) -> int:
    """Clustered kernels that said they were alive lately (0 before the cluster's tables exist)."""
    return int(conn.exec_driver_sql(
        f"SELECT count(*) FROM kernels WHERE NOT stopping AND heartbeat_at > {NOW} - make_interval(secs => %(s)s)",
        {"s": within_s}).scalar_one())
