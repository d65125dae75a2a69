"""The in-memory shapes of what the transport carries (plain dataclasses: the hot path avoids the ORM)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class Message:
    """A message as written once to the `messages` table (not frozen: frozen dataclasses cost 2.5x to
    create, and the transport makes one per post; treat it as read-only)."""

    id: int
    channel: str | None
    sender: str | None
    role: str
    content: str
    created_at: datetime
    sender_id: int | None = None
    thread_id: int | None = None
    metadata: dict[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat(sep=" ", timespec="milliseconds")
        return out


@dataclass(slots=True, frozen=True)
class Delta:
    """A piece of a message still being written (streamed tokens); not stored until the message is posted."""

    channel: str
    sender: str | None
    stream_id: str
    text: str
    done: bool = False


@dataclass(slots=True)
class Delivery:
    """One push: `message` arrived in the receiver's thread `thread_id` (one per receiver per post)."""

    message: Message
    thread_id: int
