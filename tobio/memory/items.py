"""What memory holds and returns, without numpy: modules that only pass these around load fast."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tobio.memory.text import spoken


@dataclass(frozen=True)
class Item:
    """A memory as the index holds it."""

    kind: str  # message | summary | reflection (people)
    source_id: int
    created_at: datetime
    importance: float
    sender: str | None
    content: str
    channel: str | None = None  # where a message was said; its neighbours there are its context

    @property
    def text(self) -> str:
        """What BM25 indexes and new embeddings are made from (rows embedded before sender names were added hold `content` alone)."""
        return spoken(self.sender, self.content) if self.kind == "message" else self.content


@dataclass(frozen=True)
class Hit:
    """A retrieved memory with the parts of its score."""

    item: Item
    score: float
    relevance: float
    recency: float
    importance: float
