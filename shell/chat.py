"""`chat AGENT`: the person talks with one agent on a private channel, as their own UserAgent.

The talking itself is a `tobio.conversation.Conversation` opened on the shell's loop; this file only
decides how the shell shows it: replies still streaming are drawn under the prompt (`pending`), and each
one is printed above it once it is posted: the posted text, which can differ from the streamed draft
(a stale draft resampled, a copied instruction cut). Ctrl-C (`stop_streams`) stops the agent's turn:
its model run is cancelled and what was streamed so far is printed with "[stopped]".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tobio.conversation import Conversation, Reply

if TYPE_CHECKING:
    from tobio.kernel import Kernel

LineSink = Callable[[str, str], None]
STOPPED = "[stopped]"


class Chat:
    """The shell's view of one conversation: finished lines above the prompt, replies in progress under it."""

    def __init__(self, kernel: Kernel, agent: str, user: str = "user", channel: str | None = None) -> None:
        self.kernel = kernel
        self.agent = agent
        self.user = user
        self.conversation = Conversation(kernel, agent, user=user, channel=channel, on_reply=self._show)
        self.channel = self.conversation.channel
        self._on_line: LineSink = lambda sender, text: None
        self._on_change: Callable[[], None] = lambda: None

    async def open(self, on_line: LineSink, on_change: Callable[[], None]) -> None:
        """Join the channel with the agent; `on_line` gets finished lines, `on_change` streaming news."""
        self._on_line, self._on_change = on_line, on_change
        await self.conversation.open(greet=True)

    @property
    def paused(self) -> bool:
        agent = self.kernel.agents.live.get(self.agent)
        return agent is not None and agent.paused

    async def say(self, text: str) -> None:
        """Post what the person typed; returns once it is stored and delivered."""
        await self.conversation.say(text)

    async def retry(self) -> None:
        """/retry: the agent answers the last line again; its new reply is printed like any other."""
        await self.conversation.retry()

    async def swipe(self, number: int | None) -> str:
        """/swipe N: choose reply N of the last turn and print it; /swipe alone: what there is to choose.
        Returns the line that says which one is chosen now."""
        if number is not None:
            message = await self.conversation.swipe(number)
            self._on_line(message.sender or self.agent, message.content)
        alternatives = await self.conversation.alternatives()
        if number is not None:
            return f"reply {number} of {len(alternatives)} chosen; {self.agent} goes on from it"
        return "\n".join(f"{'*' if a.chosen else ' '} {a.number}. {a.message.content}" for a in alternatives) or "no replies yet"

    def _show(self, reply: Reply) -> None:
        if reply.state == "posted":
            self._on_line(reply.sender, reply.text)
        elif reply.state == "stopped":
            self._on_line(reply.sender, f"{reply.draft.strip()} {STOPPED}".lstrip())
        elif reply.state == "lost" and reply.draft.strip():
            self._on_line(reply.sender, reply.draft.strip())  # its turn ended without posting it: shown as it stood
        self._on_change()

    def pending(self) -> list[tuple[str, str]]:
        """Replies still streaming, or streamed and not yet posted: (sender, text so far)."""
        return [(r.sender, r.draft if r.state == "streaming" else r.draft.strip())
                for r in self.conversation.in_progress() if r.state == "streaming" or r.draft.strip()]

    def stop_streams(self) -> int:
        """Ctrl-C: stop the agent's turn (its model run is cancelled); returns how many replies were cut."""
        return len(self.conversation.stop())

    def close(self) -> None:
        """Stop listening (the threads stay open: the conversation is part of both histories)."""
        self.conversation.close()
