"""`chat AGENT`: the person talks with one agent on a private channel, as their own UserAgent.

Everything the transport says on that channel (whole messages and streamed deltas) arrives on the
kernel's loop and is handed to the shell's loop with `call_soon_threadsafe`; the REPL draws the
replies still streaming under the prompt and prints each one above it once it is posted: the posted
text, which can differ from the streamed draft (a stale draft resampled, a copied instruction cut).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tobio.messages import Delta, Message

if TYPE_CHECKING:
    from tobio.kernel import Kernel

LineSink = Callable[[str, str], None]


class Chat:
    """One conversation: who talks, on which channel, and the replies streaming right now."""

    def __init__(self, kernel: Kernel, agent: str, user: str = "user", channel: str | None = None) -> None:
        self.kernel = kernel
        self.agent = agent
        self.user = user
        self.channel = channel or f"dm.{user}.{agent}"
        self.streams: dict[str, tuple[str, list[str]]] = {}  # stream id -> (sender, pieces so far)
        # Streamed to the end, the posted message not here yet: it is printed instead of the draft, which it
        # may differ from (a stale draft resampled, a copied instruction cut: tobio/persona/freshness.py).
        self._finishing: dict[str, tuple[str, str]] = {}  # stream id -> (sender, the whole draft)
        self._ended: set[str] = set()  # streams stopped or already printed: skip their final message
        self._person: Any = None
        self._stop_listening: Callable[[], None] | None = None
        self._on_line: LineSink = lambda sender, text: None
        self._on_change: Callable[[], None] = lambda: None

    async def open(self, on_line: LineSink, on_change: Callable[[], None]) -> None:
        """Join the channel with the agent; `on_line` gets finished messages, `on_change` streaming news."""
        self._on_line, self._on_change = on_line, on_change
        ui = asyncio.get_running_loop()

        def forward(item: Message | Delta) -> None:  # on the kernel's loop
            ui.call_soon_threadsafe(self._receive, item)

        self._person, self._stop_listening = await self.kernel.acall(self._join(forward))

    async def _join(self, forward: Callable[[Message | Delta], None]) -> tuple[Any, Callable[[], None]]:
        stop = self.kernel.transport.listen(self.channel, forward)  # first, so the greeting is shown
        person, _ = await self.kernel.agents.open_dm(self.user, self.agent, self.channel, greet=True)
        return person, stop

    @property
    def paused(self) -> bool:
        agent = self.kernel.agents.live.get(self.agent)
        return agent is not None and agent.paused

    async def say(self, text: str) -> None:
        """Post what the person typed; returns once it is stored and delivered."""
        # A draft whose message never came (its turn failed) is printed as it stood, before the next line.
        for stream_id, (sender, draft) in list(self._finishing.items()):
            del self._finishing[stream_id]
            self._ended.add(stream_id)
            self._on_line(sender, draft)
        await self.kernel.acall(self._person.say(self.channel, text, role="user"))

    def _receive(self, item: Message | Delta) -> None:
        if isinstance(item, Delta):
            if item.stream_id in self._ended:
                return
            sender, pieces = self.streams.setdefault(item.stream_id, (item.sender or "?", []))
            pieces.append(item.text)
            if item.done:
                del self.streams[item.stream_id]
                if "".join(pieces).strip():
                    self._finishing[item.stream_id] = (sender, "".join(pieces).strip())
            self._on_change()
            return
        stream_id = (item.metadata or {}).get("stream_id")
        if stream_id in self._ended:
            self._ended.discard(stream_id)
            return
        if isinstance(stream_id, str) and self._finishing.pop(stream_id, None) is not None:
            self._on_change()
        if item.sender != self.user:
            self._on_line(item.sender or "kernel", item.content)

    def pending(self) -> list[tuple[str, str]]:
        """Replies still streaming, or streamed and not yet posted: (sender, text so far)."""
        return [*((sender, "".join(pieces)) for sender, pieces in self.streams.values()), *self._finishing.values()]

    def stop_streams(self) -> int:
        """Ctrl-C: cancel the agent's model runs and stop showing the replies in progress."""
        loop = self.kernel.loop
        if loop is not None:
            loop.call_soon_threadsafe(self._cancel_runs)
        stopped = [*((i, sender, "".join(pieces)) for i, (sender, pieces) in self.streams.items()),
                   *((i, sender, draft) for i, (sender, draft) in self._finishing.items())]
        for stream_id, sender, text in stopped:
            self._ended.add(stream_id)
            self._on_line(sender, text.strip() + " [stopped]")
        self.streams.clear()
        self._finishing.clear()
        self._on_change()
        return len(stopped)

    def _cancel_runs(self) -> None:  # on the kernel's loop
        agent = self.kernel.agents.live.get(self.agent)
        runs = getattr(getattr(self.kernel, "runs", None), "live", {})
        for run in list(runs.values()):
            if agent is not None and getattr(run, "agent_id", None) == agent.id:
                run.cancel()

    def close(self) -> None:
        """Stop listening (the threads stay open: the conversation is part of both histories)."""
        stop, self._stop_listening = self._stop_listening, None
        loop = self.kernel.loop
        if stop is not None and loop is not None:
            loop.call_soon_threadsafe(stop)
