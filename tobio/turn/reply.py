"""A generated reply on its way to the channel, and the plain reply filters.

Filters run after generation and before posting: the agent type's own (its `filters`), then the
REPLY_FILTER hooks. Each may change `text` or replace `run` (a resample, freshness.py). The posted
message is what the filters leave, linked to `run`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tobio.turn.echo import strip_echoes

if TYPE_CHECKING:
    from tobio.models.runs import Run
    from tobio.turn.prompt import Prompt

_SENTENCE_END = re.compile(r"[.!?…](?=\s|$)")


@dataclass
class Reply:
    """One reply between generation and posting."""

    prompt: Prompt
    messages: list[dict[str, Any]]  # what the model was given (a resample is given the same)
    run: Run
    text: str
    notes: dict[str, Any] = field(default_factory=dict)  # what filters did
    _instructions: list[str] | None = field(default=None, repr=False)

    def instructions(self) -> list[str]:
        """The prompt's instructions (Prompt.instructions), worked out once for all the filters."""
        if self._instructions is None:
            self._instructions = self.prompt.instructions()
        return self._instructions


def tidy(text: str) -> str:
    """Trim a reply cut off by the token limit back to its last whole sentence."""
    text = text.strip()
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] < len(text) and ends[-1] > len(text) // 3:
        return text[: ends[-1]]
    return text


async def trim_cut_off(reply: Reply) -> None:
    """Reply filter: end on a whole sentence (see `tidy`)."""
    reply.text = tidy(reply.text)


async def cut_echoes(reply: Reply) -> None:
    """Reply filter: drop sentences copied from the prompt's instructions (echo.py); a reply that was
    nothing else is left whole, for freshness to resample."""
    reply.text = strip_echoes(reply.text, reply.instructions()) or reply.text


async def first_line(reply: Reply) -> None:
    """Reply filter: keep the first line only ('…' when it is empty)."""
    reply.text = reply.text.strip().split("\n")[0].strip() or "…"
