"""This kernel as one of several on one PostgreSQL: its row, its leases, fencing, and delivery.

- **Leases.** An agent runs in the kernel that holds its lease. A heartbeat renews them; a kernel that
  stops renewing loses them after `lease_s`, and another adopts its agents, rebuilding their inboxes from
  what was pushed to them and not handled (the `handled` cursor makes handling exactly once, so adopting
  mid-reply is safe). A clean stop releases them at once and says so with NOTIFY.
- **Fencing.** Every batch the group-commit writer commits checks, in its own transaction, that this
  kernel still holds the lease (and epoch) of each agent it writes for: replies, handling cursors, states.
  If not, the whole batch is refused and rolled back, and those agents are dropped here.
- **Delivery.** A post takes its message id when it commits, under a lock per channel, so a channel's ids
  grow in commit order; its pushes go to every thread open on the channel, in whichever kernel. Then
  NOTIFY. Every kernel LISTENs and reads, for the threads of the agents it runs, the pushes after what it
  delivered last, in id order; a timer does the same, for notifications missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.cluster import sql
from tobio.cluster.config import ClusterConfig
from tobio.cluster.remote import CONTROL, Remote
from tobio.errors import AgentError, DatabaseError
from tobio.hooks import ON_MESSAGE
from tobio.messages import Delivery, Delta, Message
from tobio.tasks import within

if TYPE_CHECKING:
    from tobio.agents.base import Agent
    from tobio.db.tables import Row
    from tobio.kernel import Kernel

log = logging.getLogger(__name__)
T = TypeVar("T")
SCAN_LIMIT = 20_000  # pushes read per scan: bounded memory; a longer backlog takes several scans
REPLY_COLUMNS = ("id", "agent_id", "thread_id", "channel", "role", "created_at", "content", "metadata", "reply_to")


NOTIFY_BYTES = 7000  # of PostgreSQL's 8,000-byte NOTIFY payload, with room for the envelope


def delta_payloads(kernel_id: int, deltas: list[Delta]) -> list[str]:
    """Deltas as NOTIFY payloads under NOTIFY_BYTES each, in order; a longer piece is cut into several."""
    items: list[list[Any]] = []
    for d in deltas:
        text = d.text
        while len(text.encode()) > NOTIFY_BYTES // 2:
            cut = NOTIFY_BYTES // 8  # characters: at most 4 bytes each in UTF-8, 2x for JSON escapes
            items.append([d.channel, d.sender, d.stream_id, text[:cut], False])
            text = text[cut:]
        items.append([d.channel, d.sender, d.stream_id, text, d.done])
    payloads: list[str] = []
    current: list[list[Any]] = []
    size = 0
    for item in items:
        encoded = len(json.dumps(item, ensure_ascii=False).encode())
        if current and size + encoded > NOTIFY_BYTES:
            payloads.append(json.dumps({"k": kernel_id, "d": current}, ensure_ascii=False))
            current, size = [], 0
        current.append(item)
        size += encoded + 1
    if current:
        payloads.append(json.dumps({"k": kernel_id, "d": current}, ensure_ascii=False))
    return payloads


async def woken(event: asyncio.Event, timeout: float) -> None:
    """Wait until `event` is set or `timeout` passes (`within`, not `asyncio.wait_for`: a kernel's clean stop
    once waited for its heartbeat or scan task forever, as the scan is woken by every commit)."""
    try:
        await within(event.wait(), timeout)
    except TimeoutError:
        pass


class LeasedElsewhere(AgentError):
    """The agent runs in another kernel (its lease is held there)."""


class Fenced(DatabaseError):
    """A batch carried writes for agents whose lease this kernel lost; it was rolled back."""


class Cluster:
    """Created by the kernel when kernel.yaml has `cluster:` and the database is PostgreSQL."""

    def __init__(self, kernel: Kernel, config: ClusterConfig) -> None:
        self.kernel = kernel
        self.config = config
        self.id = 0
        self.epochs: dict[int, int] = {}  # agent id -> epoch of the lease held here
        self.marks: dict[int, int] = {}  # thread id of an agent run here -> last message id delivered to it
        self.threads: dict[int, int] = {}  # thread id -> its agent's id, for threads delivered to here
        self.owners: dict[int, int] = {}  # thread id -> its agent's id, for every thread ever run here (fencing)
        self.people: set[int] = set()  # ids of people's agents: they run in every kernel, without a lease
        self.channel_marks: dict[str, int] = {}  # channels front ends here watch -> last message id shown
        self.local: deque[int] = deque(maxlen=4096)  # ids of messages posted here (already shown here)
        self._local_set: set[int] = set()
        self._engine: sa.Engine | None = None
        self._conn: Connection | None = None
        self._conn_lock = threading.Lock()
        self._wake = asyncio.Event()
        self._lease_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._sender: threading.Thread | None = None
        self._outbox: queue.SimpleQueue[Delta | None] = queue.SimpleQueue()
        self._leaving = False
        self._adopting = False  # from `run` on: while the kernel boots, the heartbeat only renews
        self._expiry: asyncio.TimerHandle | None = None  # a look for orphans when a silent kernel's leases end
        self._orphaned: set[int] = set()  # agents nobody ran at the last heartbeat, left to the others then
        self.adopted = 0
        self.scans = 0
        self.remote = Remote(self)  # `agent pause|resume|kill` of agents run in other kernels

    # -- a connection of its own, off the DB thread (a long flush must not delay a heartbeat) --------
    def _control(self, fn: Callable[..., T], *args: Any) -> T:
        with self._conn_lock:
            if self._engine is None:
                self._engine = sa.create_engine(self.kernel.db.url, pool_size=1, max_overflow=0)
            if self._conn is None or self._conn.closed or self._conn.invalidated:
                self._conn = self._engine.connect()
            try:
                with self._conn.begin():
                    return fn(self._conn, *args)
            except sa.exc.DBAPIError:
                self._conn.close()
                self._conn = None
                raise

    async def control(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._control, fn, *args)

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Register this kernel (before agents are restored: restoring claims their leases)."""
        self.id = await self.control(sql.register, socket.gethostname(), os.getpid(), self.config.group)
        self.kernel.writer.cluster = self
        self.kernel.transport.cluster = self
        # Renewing from now on: restoring and spawning hundreds of agents may take longer than a lease, and
        # leases taken early in the boot must not run out meanwhile (the others would adopt those agents).
        self._tasks = [asyncio.get_running_loop().create_task(self._heartbeat_loop(), name="cluster:heartbeat")]
        log.info("kernel %d joined the cluster (lease %.1f s)", self.id, self.config.lease_s)

    def run(self) -> None:
        """Start adopting, the scan and the listener (once agents are restored)."""
        loop = asyncio.get_running_loop()
        self._adopting = True
        self._tasks.append(loop.create_task(self._scan_loop(), name="cluster:scan"))
        self._listener = threading.Thread(target=self._listen, args=(loop,), name="tobio-listen", daemon=True)
        self._listener.start()

    async def halt(self) -> None:
        """Stop adopting and delivering (the kernel is stopping; its agents stop next). Leases are still
        renewed until `leave`: stopping hundreds of agents may take longer than a lease."""
        self._stop.set()
        self._leaving = True
        if self._expiry is not None:
            self._expiry.cancel()
        if self._sender is not None:
            self._outbox.put(None)
        try:  # the others stop counting it when sharing out orphans, and `agent move` stops sending it agents
            if self.id:
                await self.control(lambda conn: conn.exec_driver_sql(
                    "UPDATE kernels SET stopping = true WHERE id = %(k)s", {"k": self.id}))
        except Exception as exc:  # the database away: it is only a hint
            log.warning("cluster: could not say this kernel is stopping: %s", str(exc).splitlines()[0] if str(exc) else exc)
        await self._cancel([t for t in self._tasks if t.get_name() != "cluster:heartbeat"])

    async def _cancel(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = [t for t in self._tasks if t not in tasks]

    async def leave(self) -> None:
        """After the last write: release every lease at once and remove this kernel's row."""
        def leave(conn: Connection) -> None:
            sql.release(conn, self.id)
            conn.exec_driver_sql("DELETE FROM kernels WHERE id = %(k)s", {"k": self.id})

        await self._cancel(list(self._tasks))
        try:
            if self.id:
                await self.control(leave)
        finally:
            with self._conn_lock:
                if self._conn is not None:
                    self._conn.close()
                if self._engine is not None:
                    self._engine.dispose()
            if self._listener is not None:
                self._listener.join(timeout=5)

    # -- leases ------------------------------------------------------------------------------------
    def group_of(self, name: str, config: Any) -> str | None:
        """The kernel group an agent runs in: its file's `kernel_group`, else kernel.yaml's `cluster.placement`."""
        named = config.get("kernel_group") if isinstance(config, dict) else getattr(config, "kernel_group", None)
        return named if isinstance(named, str) else self.config.placement.get(name)

    def _placed_here(self, name: str, config: Any) -> bool:
        group = self.group_of(name, config)
        return group is None or group == self.config.group

    async def claim_rows(self, rows: Sequence[Row], share: bool = False) -> list[Row]:
        """Of these agents' rows, those this kernel now holds (people's agents run in every kernel)."""
        people = [r for r in rows if r.type == "user"]
        self.people.update(r.id for r in people)
        wanted = [r for r in rows if r.type != "user" and self._placed_here(r.name, r.config)]
        if share and wanted:
            # Adopting: of what nobody runs, each live kernel that may run an agent takes its share (the agent's
            # id modulo their number picks one), in one statement; an agent left at the last look is taken
            # by whoever sees it next (its kernel did not take it: it is gone too, or may not run it).
            kernels = await self.control(sql.live_kernels, self.config.lease_s)
            again = [r for r in wanted if r.id in self._orphaned]
            mine: list[Row] = []
            left: set[int] = set()
            for row in (r for r in wanted if r.id not in self._orphaned):
                group = self.group_of(row.name, row.config)
                able = [k for k, g in kernels if group is None or g == group] or [self.id]
                if able[row.id % len(able)] == self.id:
                    mine.append(row)
                else:
                    left.add(row.id)
            self._orphaned = left
            wanted = again + mine
        got = await self.control(sql.claim, self.id, [r.id for r in wanted], self.config.lease_s)
        self.epochs.update(got)
        return people + [r for r in wanted if r.id in got]

    async def claim_spawn(self, agent: Agent) -> None:
        """Take the lease of an agent being spawned here, or say where it runs."""
        if agent.config.type == "user":
            self.people.add(agent.id)
            return
        if not self._placed_here(agent.name, agent.config):
            raise LeasedElsewhere(f"agent '{agent.name}' is placed in kernel group '{self.group_of(agent.name, agent.config)}'")
        got = await self.control(sql.claim, self.id, [agent.id], self.config.lease_s)
        if agent.id not in got:
            holder = await self.control(lambda c: c.exec_driver_sql(
                "SELECT kernel_id FROM leases WHERE agent_id = %(a)s", {"a": agent.id}).scalar())
            raise LeasedElsewhere(f"agent '{agent.name}' runs in kernel {holder}; `agent move {agent.name} --to {self.id}` brings it here")
        self.epochs.update(got)

    async def holders(self) -> dict[int, int | str]:
        """Agent id -> the kernel holding its lease ("all" for people's agents, which run in every kernel)."""
        leases = await self.control(lambda conn: dict(conn.exec_driver_sql(
            f"SELECT agent_id, kernel_id FROM leases WHERE expires_at > {sql.NOW}").all()))
        return {**{int(a): int(k) for a, k in leases.items()}, **{a: "all" for a in self.people}}

    async def give_up(self, agent_ids: Sequence[int]) -> None:
        """Drop leases taken for agents that were never written (another kernel spawned the name first)."""
        for agent_id in agent_ids:
            self.epochs.pop(agent_id, None)
        await self.control(lambda conn: conn.exec_driver_sql(
            "DELETE FROM leases WHERE kernel_id = %(k)s AND agent_id = ANY(%(a)s::bigint[])", {"k": self.id, "a": list(agent_ids)}))

    async def started(self, agents: Sequence[Agent]) -> None:
        """Agents now run here: deliver to their threads from their handled cursors on."""
        threads = {sub.thread_id: agent.id for agent in agents for sub in self.kernel.transport.subscriptions_of(agent.id)}
        if not threads:
            return
        cursors = await self.kernel.db.call(sql.cursors, list(threads))
        for thread_id, agent_id in threads.items():
            self.threads[thread_id] = self.owners[thread_id] = agent_id
            self.marks[thread_id] = max(self.marks.get(thread_id, 0), cursors.get(thread_id, 0))
        self.wake()

    def watch(self, thread_id: int, agent_id: int) -> None:
        """A thread opened here for an agent run here: nothing was pushed to it before it was opened."""
        self.threads[thread_id] = self.owners[thread_id] = agent_id
        self.marks.setdefault(thread_id, 0)

    def unwatch(self, thread_id: int) -> None:
        self.threads.pop(thread_id, None)
        self.marks.pop(thread_id, None)

    def drop(self, agent_ids: set[int]) -> None:
        """Stop running agents whose leases went elsewhere (on the loop, without awaiting: at once)."""
        manager = self.kernel.agents
        for agent in [a for a in manager.live.values() if a.id in agent_ids]:
            task = manager._task_of(agent)
            if task is not None:
                task.task.cancel()
            for thread_id in self.kernel.transport.forget(agent.id):
                self.unwatch(thread_id)
            manager.live.pop(agent.name, None)
            self.epochs.pop(agent.id, None)
            log.warning("agent %s: its lease went to another kernel; it stopped here", agent.name)

    async def heartbeat(self) -> None:
        """Renew; drop what was lost; start what was handed over; adopt what nobody runs."""
        before = dict(self.epochs)
        held = await self.control(sql.renew, self.id, self.config.lease_s)
        if self._leaving:
            return  # renewing only, until the last write is in
        live = {a.id: a for a in self.kernel.agents.live.values() if a.config.type != "user"}
        # Leases taken while the renewal was under way (a spawn) are not in `held` yet, and not lost.
        taken = {a: e for a, e in self.epochs.items() if before.get(a) != e}
        lost = {a for a in live if a in before and a not in taken and held.get(a) != before[a]}
        if lost:
            self.drop(lost)
        self.epochs = {**held, **taken}
        handed = [a for a in held if a not in live]
        if not self._adopting:
            return  # booting: restoring takes what it may
        renewed = min(1.5 * self.config.heartbeat, self.config.lease_s / 2)

        def look(conn: Connection) -> tuple[list[tuple[int, str]], float | None]:
            return sql.orphans(conn), sql.next_expiry(conn, self.id, self.config.lease_s, renewed)

        found, expiry = await self.control(look)
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if expiry is not None and expiry < self.config.heartbeat:  # a silent kernel: adopt as its leases end
            self._expiry = asyncio.get_running_loop().call_later(expiry + 0.02, self.wake_leases)
        orphans = [a for a, _name in found if a not in live]
        if handed or orphans:
            await self._adopt(handed, orphans)

    async def _adopt(self, handed: list[int], orphans: list[int]) -> None:
        manager = self.kernel.agents
        began = time.perf_counter()

        def read(conn: Connection) -> list[Row]:
            from tobio.db.tables import AgentRow

            ids = [*handed, *orphans]
            return list(conn.execute(sa.select(AgentRow).where(AgentRow.c.id.in_(ids)).order_by(AgentRow.c.id)))

        rows = await self.kernel.db.call(read)
        mine = [r for r in rows if r.id in handed and r.status != "killed"]
        claimed = await self.claim_rows([r for r in rows if r.id in orphans], share=True) if orphans else []
        if self._orphaned:  # left to the others: look again soon, not a whole heartbeat later
            asyncio.get_running_loop().call_later(min(0.25, self.config.heartbeat), self.wake_leases)
        ids = {r.id for r in [*mine, *claimed] if r.name not in manager.live}
        if not ids:
            return
        names = await manager.restore_all(only=ids)
        self.adopted += len(names)
        log.info("kernel %d adopted %d agent(s) in %.2f s: %s", self.id, len(names), time.perf_counter() - began,
                 ", ".join(names[:10]))

    async def _heartbeat_loop(self) -> None:
        while True:
            await woken(self._lease_wake, self.config.heartbeat)
            self._lease_wake.clear()
            try:
                await self.heartbeat()
            except Exception as exc:  # the database away for a moment: try again at the next beat
                log.warning("cluster heartbeat failed: %s", str(exc).splitlines()[0] if str(exc) else exc)

    # -- the writer's side (DB thread, inside the batch's transaction) -------------------------------
    def fence(self, conn: Connection, batch: Any) -> None:
        """Refuse the batch if it writes for an agent whose lease this kernel no longer holds: its replies,
        its handling cursors, its state (people's agents run everywhere and hold no lease)."""
        agent_ids = {m.sender_id for m, _ in batch.posts if m.sender_id is not None}
        for (table, _key, _columns), by_key in batch.sets.items():
            if table == "agents":
                agent_ids.update(by_key)
            elif table == "handled":
                agent_ids.update(self.owners[t] for t in by_key if t in self.owners)
        for (table, _columns), rows in batch.rows.items():
            if table == "state":
                agent_ids.update(row[1] for row in rows)
        agent_ids -= self.people
        if not agent_ids:
            return
        lost = sql.fenced(conn, self.id, {a: self.epochs.get(a, -1) for a in agent_ids})
        if lost:
            loop = self.kernel.loop
            if loop is not None:
                loop.call_soon_threadsafe(self.drop, lost)  # before the waiters hear of the refusal
            raise Fenced(f"kernel {self.id} no longer holds the lease of agent(s) {sorted(lost)}; their writes were refused")

    def commit_posts(self, conn: Connection, posts: list[tuple[Message, int | None]]) -> None:
        """Give this batch's messages their ids (under their channels' locks), write them and their pushes."""
        sql.lock_channels(conn, [m.channel or "" for m, _ in posts])
        ids = sql.message_ids(conn, len(posts))
        rows = []
        for (message, reply_to), message_id in zip(posts, ids):
            message.id = message_id
            rows.append((message_id, message.sender_id, message.thread_id, message.channel, message.role,
                         message.created_at, message.content, message.metadata, reply_to))
        self.kernel.db.bulk_insert(conn, "messages", REPLY_COLUMNS, rows)
        sql.push(conn, [m.channel or "" for m, _ in posts], ids)
        sql.notify_posts(conn, self.id)

    def committed(self, posts: list[tuple[Message, int | None]]) -> None:
        """On the loop, once a batch of posts is durable: remember them as shown here, look for pushes."""
        for message, _ in posts:
            if len(self.local) == self.local.maxlen:
                self._local_set.discard(self.local[0])
            self.local.append(message.id)
            self._local_set.add(message.id)
        self.wake()

    # -- delivery ----------------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def wake_leases(self) -> None:
        self._lease_wake.set()

    async def _scan_loop(self) -> None:
        while True:
            await woken(self._wake, self.config.scan_s)
            self._wake.clear()
            try:
                while await self.scan() >= SCAN_LIMIT:
                    pass
            except Exception as exc:
                log.warning("cluster scan failed: %s", str(exc).splitlines()[0] if str(exc) else exc)

    async def scan(self) -> int:
        """Deliver what was pushed to this kernel's agents since the last scan; returns rows read."""
        marks = dict(self.marks)
        listened = [c for c, callbacks in self.kernel.transport._listeners.items() if callbacks]
        fresh = [c for c in listened if c not in self.channel_marks]
        if fresh:
            self.channel_marks.update(await self.kernel.db.call(sql.channel_tops, fresh))
        channel_marks = {c: self.channel_marks[c] for c in listened}

        def read(conn: Connection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            return sql.new_pushes(conn, marks, SCAN_LIMIT), sql.new_messages(conn, channel_marks, SCAN_LIMIT)

        pushes, messages = await self.kernel.db.call(read)
        self.scans += 1
        by_agent: dict[int, list[Delivery]] = {}
        read_pushes = 0
        for thread_ids, *fields in pushes:
            read_pushes += len(thread_ids)
            message = Message(*fields)
            for thread_id in thread_ids:
                agent_id = self.threads.get(thread_id)
                if agent_id is None or self.marks.get(thread_id, -1) >= message.id:
                    continue  # no longer run here, or delivered meanwhile
                self.marks[thread_id] = message.id
                if message.sender_id != agent_id:  # an agent's own messages are in its thread, not in its inbox
                    by_agent.setdefault(agent_id, []).append(Delivery(message, thread_id))
        if by_agent:
            live = {a.id: a for a in self.kernel.agents.live.values()}
            for agent_id, deliveries in by_agent.items():
                agent = live.get(agent_id)
                if agent is not None:
                    agent.deliver_many(deliveries)
            # Posted in another kernel: this kernel's module observers (memory's indexing, emotion's appraisal,
            # lore) see it now, once, for the agents they serve here, as they see a post made here.
            remote = {d.message.id: d.message for ds in by_agent.values() for d in ds if d.message.id not in self._local_set}
            for message_id in sorted(remote):
                self.kernel.hooks.notify(ON_MESSAGE, remote[message_id])
        for row in messages:
            message = Message(*row)
            channel = message.channel or ""
            self.channel_marks[channel] = max(self.channel_marks.get(channel, 0), message.id)
            if message.id not in self._local_set:  # posted here: its listeners had it already
                self.kernel.transport.show(channel, message)
        return max(read_pushes, len(messages))

    # -- streamed pieces of messages (deltas), for front ends attached to other kernels --------------
    def publish(self, delta: Delta) -> None:
        """Send a streamed piece to the other kernels (NOTIFY, in order, batched by a thread of its own)."""
        if self._stop.is_set():
            return
        if self._sender is None:
            self._sender = threading.Thread(target=self._send, name="tobio-deltas", daemon=True)
            self._sender.start()
        self._outbox.put(delta)

    def _send(self) -> None:
        import psycopg

        conn: psycopg.Connection[Any] | None = None
        while True:
            first = self._outbox.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < 256:
                try:
                    item = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._outbox.put(None)
                    break
                batch.append(item)
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self._conninfo(), autocommit=True)
                for payload in delta_payloads(self.id, batch):
                    conn.execute("SELECT pg_notify(%s, %s)", (sql.DELTAS, payload))
            except Exception as exc:  # streamed pieces are not stored: losing some costs only the live view
                log.warning("cluster: could not send streamed pieces: %s", str(exc).splitlines()[0] if str(exc) else exc)
                conn = None
        if conn is not None:
            conn.close()

    def _receive(self, payload: str) -> None:
        """On the loop: pieces another kernel streamed, to this kernel's listeners."""
        try:
            data = json.loads(payload)
            if data["k"] == self.id:
                return
            deltas = [Delta(*item) for item in data["d"]]
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: a malformed streamed piece was ignored")
            return
        for delta in deltas:
            self.kernel.transport.stream_here(delta.channel, delta)

    def _conninfo(self) -> str:
        url = sa.engine.make_url(self.kernel.db.url)
        return url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """LISTEN on a connection of its own; each notification wakes the scan or the heartbeat."""
        import psycopg

        conninfo = self._conninfo()
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    for channel in (sql.POSTS, sql.LEASES, sql.DELTAS, CONTROL):
                        conn.execute(f"LISTEN {channel}")
                    loop.call_soon_threadsafe(self.wake)  # anything posted or released while not listening
                    loop.call_soon_threadsafe(self.wake_leases)
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            if note.channel == sql.DELTAS:
                                loop.call_soon_threadsafe(self._receive, note.payload)
                            elif note.channel == CONTROL:
                                loop.call_soon_threadsafe(self.remote.heard, note.payload)
                            else:
                                loop.call_soon_threadsafe(self.wake if note.channel == sql.POSTS else self.wake_leases)
            except Exception as exc:  # reconnect; the timed scan covers the gap
                if self._stop.is_set():
                    return
                log.warning("cluster listener: %s; reconnecting", str(exc).splitlines()[0] if str(exc) else exc)
                self._stop.wait(1.0)
