"""Message transport: post to a channel, write once, push to each receiving thread, then deliver.

A subscription *is* a thread: subscribing opens one, unsubscribing closes it, and what an agent
experienced is exactly the pushes to its threads. A post is acknowledged only after the message and
its pushes are committed (group commit), then it is delivered to live inboxes: the writer hands the
transport each committed batch of posts, and every receiver gets its share of it in one call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.database import Database
from tobio.db.migrations import utcnow
from tobio.db.tables import ChannelRow, ThreadRow
from tobio.db.writer import GroupCommitWriter, Set, Write
from tobio.errors import AgentError
from tobio.hooks import ON_MESSAGE, Hooks
from tobio.messages import Delivery, Delta, Message

MESSAGE_COLUMNS = ("id", "agent_id", "thread_id", "channel", "role", "created_at", "content", "metadata")
REPLY_COLUMNS = (*MESSAGE_COLUMNS, "reply_to")  # only replies carry it, so plain posts write no extra column
THREAD_COLUMNS = ("id", "agent_id", "channel", "name", "opened_at", "closed_at", "checkpoint_message_id")
HANDLED_COLUMNS = ("thread_id", "message_id")  # a new thread's handling cursor: nothing handled yet
PUSH_COLUMNS = ("thread_id", "message_id")
CHANNEL_COLUMNS = ("name", "topic", "created_at")

# Compiled on first use (re's cache), as a plain command's start never uses it: ~1.3 M instructions a pattern.
CHANNEL_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"

log = logging.getLogger(__name__)


def check_channel_name(channel: str) -> None:
    """Channel names are identifiers (letters, digits, `_ . -`; `dm.ada.tobio`): they show up in
    tables, completion and file names of exports, so spaces, slashes and control characters stay out."""
    if not isinstance(channel, str) or not re.fullmatch(CHANNEL_NAME, channel):
        shown = repr(channel[:40] + ("..." if len(channel) > 40 else "")) if isinstance(channel, str) else repr(channel)
        raise AgentError(f"bad channel name {shown}: use letters, digits, '_', '.' and '-' (at most 128)")


class Receiver(Protocol):
    """What the transport needs of a subscriber (agents implement it)."""

    id: int
    name: str

    def deliver(self, delivery: Delivery) -> None: ...

    def deliver_many(self, deliveries: list[Delivery]) -> None: ...


Target = tuple[int, Callable[[list[Delivery]], None], int]  # receiver id, its deliver_many, its thread id
Fanout = tuple[list[Target], tuple[int, ...]]  # a channel's targets, and their thread ids


@dataclass(slots=True)
class Subscription:
    receiver: Receiver
    channel: str
    thread_id: int


class Transport:
    """Channels, subscriptions and posting. Lives on the kernel's loop."""

    def __init__(self, db: Database, writer: GroupCommitWriter, hooks: Hooks | None = None) -> None:
        self.db = db
        self.writer = writer
        self.hooks = hooks or Hooks()  # ON_MESSAGE observers: modules that index what was said
        self.channels: dict[str, dict[int, Subscription]] = {}
        self._known_channels: set[str] = set()
        # channel -> (receiver id, deliver_many, thread id) per subscriber, and the thread ids as one
        # tuple: built when subscriptions change, not on every post (the hot path reads it as is).
        self._fanout: dict[str, Fanout] = {}
        self._listeners: dict[str, set[Callable[[Message | Delta], None]]] = {}
        # Several kernels on one PostgreSQL (tobio/cluster/node.py): posts get their ids and pushes as they
        # commit, and reach inboxes through the cluster's scan, in whichever kernel their receivers run.
        self.cluster: Any = None

    # -- channels ------------------------------------------------------------------------------
    async def load(self) -> None:
        """Read the known channels at start-up."""
        names = await self.db.call(lambda c: list(c.execute(sa.select(ChannelRow.c.name)).scalars()))
        self._known_channels.update(names)
        for name in names:
            self.channels.setdefault(name, {})

    def _channel_rows(self, channel: str, created_at: datetime) -> list[tuple[Any, ...]]:
        """Rows to write when a channel is first used (batched with whatever uses it)."""
        if channel in self._known_channels:
            return []
        check_channel_name(channel)
        self._known_channels.add(channel)
        self.channels.setdefault(channel, {})
        return [(channel, "", created_at)]

    async def create_channel(self, channel: str, topic: str = "") -> bool:
        """Create a channel explicitly; False if it existed."""
        if channel in self._known_channels:
            return False
        rows = self._channel_rows(channel, utcnow())
        await self.writer.write(("channels", CHANNEL_COLUMNS, [(channel, topic, rows[0][2])]))
        return True

    def known_channels(self) -> list[str]:
        return sorted(self._known_channels)

    # -- subscriptions -------------------------------------------------------------------------
    def subscription(self, receiver_id: int, channel: str) -> Subscription | None:
        return self.channels.get(channel, {}).get(receiver_id)

    def subscriptions_of(self, receiver_id: int) -> list[Subscription]:
        return [subs[receiver_id] for subs in self.channels.values() if receiver_id in subs]

    async def subscribe(self, receiver: Receiver, channel: str) -> int:
        """Open a thread for `receiver` on `channel` (idempotent); returns the thread id."""
        existing = self.subscription(receiver.id, channel)
        if existing is not None:
            return existing.thread_id
        now = utcnow()
        thread_id = self.db.next_ids("threads")
        # Register before awaiting so a post racing with this subscribe already sees the thread.
        self.channels.setdefault(channel, {})[receiver.id] = Subscription(receiver, channel, thread_id)
        self._fanout.pop(channel, None)
        thread = (thread_id, receiver.id, channel, f"{receiver.name}@{channel}", now, None, None)
        try:
            await self.writer.write(
                ("channels", CHANNEL_COLUMNS, self._channel_rows(channel, now)), ("threads", THREAD_COLUMNS, [thread]),
                ("handled", HANDLED_COLUMNS, [(thread_id, 0)]),
            )
        except Exception:
            self.channels[channel].pop(receiver.id, None)
            self._fanout.pop(channel, None)
            raise
        if self.cluster is not None:
            self.cluster.watch(thread_id, receiver.id)
        return thread_id

    def restore(self, receiver: Receiver, channel: str, thread_id: int) -> None:
        """Re-attach an open thread after a restart (no write: the thread is already recorded)."""
        self._known_channels.add(channel)
        self.channels.setdefault(channel, {})[receiver.id] = Subscription(receiver, channel, thread_id)
        self._fanout.pop(channel, None)

    async def unsubscribe(self, receiver_id: int, channel: str) -> int | None:
        """Close the receiver's thread on `channel`; returns its id, or None if not subscribed."""
        sub = self.channels.get(channel, {}).pop(receiver_id, None)
        if sub is None:
            return None
        self._fanout.pop(channel, None)
        if self.cluster is not None:
            self.cluster.unwatch(sub.thread_id)
        await self.writer.flush()  # pushes already queued to this thread land before it closes

        def close(conn: Connection) -> None:
            conn.execute(sa.update(ThreadRow).where(ThreadRow.c.id == sub.thread_id).values(closed_at=utcnow()))

        await self.db.call(close)
        return sub.thread_id

    def forget(self, receiver_id: int) -> list[int]:
        """Detach a receiver that now runs in another kernel, leaving its threads open; returns their ids."""
        threads = []
        for channel, subs in self.channels.items():
            sub = subs.pop(receiver_id, None)
            if sub is not None:
                threads.append(sub.thread_id)
                self._fanout.pop(channel, None)
        return threads

    @staticmethod
    def _build_fanout(subs: dict[int, Subscription]) -> Fanout:
        targets: list[Target] = [(sub.receiver.id, sub.receiver.deliver_many, sub.thread_id) for sub in subs.values()]
        return targets, tuple(sub.thread_id for sub in subs.values())

    @staticmethod
    def _deliver(posts: list[tuple[Message, list[Target]]]) -> None:
        """Deliver a committed batch of posts, in order: each run of posts to the same subscribers goes
        to each receiver in one call (senders do not receive their own messages)."""
        start, end = 0, len(posts)
        while start < end:
            targets = posts[start][1]
            stop = start + 1
            while stop < end and posts[stop][1] is targets:
                stop += 1
            messages = [message for message, _ in posts[start:stop]]
            senders = {message.sender_id for message in messages}
            for receiver_id, deliver_many, thread_id in targets:
                mine = messages if receiver_id not in senders else [m for m in messages if m.sender_id != receiver_id]
                if mine:
                    deliver_many(list(map(Delivery, mine, repeat(thread_id))))
            start = stop

    # -- listeners (front ends watching a channel without being an agent) -----------------------
    def listen(self, channel: str, callback: Callable[[Message | Delta], None]) -> Callable[[], None]:
        """Call `callback` (on the kernel's loop) for each message and streamed delta on `channel`.

        Returns a function that stops listening.
        """
        self._listeners.setdefault(channel, set()).add(callback)
        return lambda: self._listeners.get(channel, set()).discard(callback)

    def show(self, channel: str, message: Message) -> None:
        """Hand a message posted in another kernel to this kernel's listeners on `channel`."""
        for callback in tuple(self._listeners.get(channel, ())):
            try:
                callback(message)
            except Exception:
                log.exception("a listener on %s failed on message %d", channel, message.id)

    def stream(self, channel: str, delta: Delta) -> None:
        """Publish a streamed piece of a message to the channel's listeners (not stored), in every kernel."""
        self.stream_here(channel, delta)
        if self.cluster is not None:
            self.cluster.publish(delta)

    def stream_here(self, channel: str, delta: Delta) -> None:
        """A streamed piece to this kernel's listeners on `channel`."""
        for callback in tuple(self._listeners.get(channel, ())):
            callback(delta)

    # -- posting -------------------------------------------------------------------------------
    async def post(
        self,
        channel: str,
        content: str,
        *,
        sender: Receiver | None = None,
        role: str = "assistant",
        metadata: dict[str, Any] | None = None,
        created_at: datetime | None = None,
        reply_to: int | None = None,
        writes: tuple[Write, ...] | list[Write] = (),
        sets: tuple[Set, ...] | list[Set] = (),
    ) -> Message:
        """Write the message and its pushes durably, then deliver it; returns the stored message.

        A reply names the message it answers (`reply_to`) and brings the sender's handling record
        (`writes`, `sets`: its cursor, its state), which commit in the same transaction as the reply.
        """
        created_at = created_at or utcnow()
        subs = self.channels.get(channel)
        if subs is None:
            subs = self.channels[channel] = {}
        fanout = self._fanout.get(channel)
        if fanout is None:
            fanout = self._fanout[channel] = self._build_fanout(subs)
        targets, thread_ids = fanout
        sender_id = sender.id if sender is not None else None
        sender_sub = subs.get(sender_id) if sender_id is not None else None
        clustered = self.cluster is not None
        message = Message(
            id=0 if clustered else self.db.next_ids("messages"),  # clustered: given as it commits
            channel=channel,
            sender=sender.name if sender is not None else None,
            role=role,
            content=content,
            created_at=created_at,
            sender_id=sender_id,
            thread_id=sender_sub.thread_id if sender_sub else None,
            metadata=metadata,
        )
        if clustered:
            channel_rows = ("channels", CHANNEL_COLUMNS, self._channel_rows(channel, created_at))
            await self.writer.write(channel_rows, *writes, sets=sets, post=(message, reply_to))
            self._observe(channel, message)
            return message
        mid = message.id
        if reply_to is None:
            row: tuple[Any, ...] = (mid, sender_id, message.thread_id, channel, role, created_at, content, metadata)
            inserts: list[Write] = [("messages", MESSAGE_COLUMNS, [row])]
        else:
            row = (mid, sender_id, message.thread_id, channel, role, created_at, content, metadata, reply_to)
            inserts = [("messages", REPLY_COLUMNS, [row])]
        if channel not in self._known_channels:
            inserts.append(("channels", CHANNEL_COLUMNS, self._channel_rows(channel, created_at)))
        if thread_ids:  # delivered by `_deliver` once durable, before this post's caller wakes up
            await self.writer.write(*inserts, *writes, sets=sets, fan=("pushes", PUSH_COLUMNS, thread_ids, mid),
                                    after=(self._deliver, (message, targets)))
        else:
            await self.writer.write(*inserts, *writes, sets=sets)
        self._observe(channel, message)
        return message

    def _observe(self, channel: str, message: Message) -> None:
        """The message is durable and delivered: a failing listener or module observer is logged, and
        neither fails the post nor keeps the others from seeing the message."""
        if self._listeners.get(channel):
            self.show(channel, message)
        self.hooks.notify(ON_MESSAGE, message)  # an observer's error is logged under its module's name


