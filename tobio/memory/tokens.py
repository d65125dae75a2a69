"""Token counts with the model's own tokenizer, cached per message (messages never change)."""

from __future__ import annotations

from tobio.messages import Message
from tobio.models.bundle import Model


class TokenCounter:
    """Counts through `model.count_tokens`; remembers message counts by (model, message id)."""

    def __init__(self, limit: int = 200_000) -> None:
        self._messages: dict[tuple[str, int], int] = {}
        self._texts: dict[tuple[str, str], int] = {}
        self.limit = limit

    async def text(self, model: Model, text: str) -> int:
        key = (model.name, text)
        count = self._texts.get(key)
        if count is None:
            count = await model.count_tokens(text) if text else 0
            if len(self._texts) > 4096:
                self._texts.clear()
            self._texts[key] = count
        return count

    async def message(self, model: Model, message: Message) -> int:
        key = (model.name, message.id)
        count = self._messages.get(key)
        if count is None:
            count = await model.count_tokens(message.content) if message.content else 0
            if len(self._messages) > self.limit:
                self._messages.clear()
            self._messages[key] = count
        return count

    async def truncate(self, model: Model, text: str, limit: int) -> str:
        """The longest word-prefix of `text` within `limit` tokens (never more)."""
        if limit <= 0:
            return ""
        if await self.text(model, text) <= limit:  # the usual case (a summary already within budget): cached
            return text
        words = text.split()
        low, high = 0, len(words)
        while low < high:  # binary search on the number of words kept
            mid = (low + high + 1) // 2
            if await model.count_tokens(" ".join(words[:mid]) + " …") <= limit:
                low = mid
            else:
                high = mid - 1
        return " ".join(words[:low]) + " …" if low else ""
