"""One chat between a person and an agent, as every front end holds it (after llm's Conversation → Response).

The shell's `chat`, the web page, the notebook's ChatView and `ask()` each hold a Conversation. It joins
the private channel (`dm.USER.AGENT`), posts what the person says, and turns what the transport carries
there (streamed deltas, posted messages) into `Reply`s: a draft that grows, then the message the agent
posted, which replaces the draft (it can differ from it: a stale draft resampled, a recited instruction
cut). `prompt()` returns a `Response`, the reply to one line, to iterate or await. `stop()` ends the
agent's turn: its model runs are cancelled and the replies in progress end as stopped. `close()` (or
leaving `with`/`async with`) stops listening.

A Conversation lives on the event loop that opened it: its `on_reply` callback and its Responses run
there, and its methods are called from there (the kernel's own loop is fine: `kernel.call(c.open())`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from tobio.errors import TobioError
from tobio.messages import Delta, Message
from tobio.models.cancel import cancel_reply_runs
from tobio.tasks import within

if TYPE_CHECKING:
    from tobio.agents.base import Agent
    from tobio.kernel import Kernel
    from tobio.swipes.service import Alternative

log = logging.getLogger(__name__)

ReplyState = Literal["streaming", "streamed", "posted", "stopped", "lost"]
ENDED_KEPT = 64  # stopped or lost replies whose late message is still expected (it is then not shown again)
STOP_POLL_S = 0.05  # while a stopped turn goes on, how often its new runs (a resample, a command round) are cancelled
STOP_WATCH_S = 120.0  # … and for how long at most


@dataclass(eq=False)
class Reply:
    """One thing said on the channel by someone other than the person: streamed (maybe), then posted.

    `state` goes streaming → streamed → posted; or ends `stopped` (the person stopped it) or `lost` (the
    draft was streamed but its turn ended without posting it, e.g. the turn failed)."""

    sender: str
    stream_id: str | None = None
    draft: str = ""
    message: Message | None = None
    state: ReplyState = "streaming"
    response: Response | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        """What to show: the posted message once it is there, else the draft as it stands."""
        return self.message.content if self.state == "posted" and self.message is not None else self.draft

    @property
    def done(self) -> bool:
        return self.state in ("posted", "stopped", "lost")


class Response:
    """The agent's reply to one prompt: iterate `updates()` for it as it changes, or `await wait()`."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.said: Message | None = None  # the person's message it answers, once stored
        self.reply: Reply | None = None  # bound when the agent starts its next reply
        self._changed = asyncio.Event()

    @property
    def done(self) -> bool:
        return self.reply is not None and self.reply.done

    def _update(self, reply: Reply) -> None:
        self.reply = reply
        self._changed.set()

    async def updates(self, timeout: float | None = None) -> AsyncIterator[Reply]:
        """The reply each time it changed (changes in between are folded), the last time when it is done.
        Raises TobioError when nothing changed for `timeout` seconds."""
        while True:
            try:
                await within(self._changed.wait(), timeout)
            except TimeoutError:
                agent = self.conversation.agent
                raise TobioError(f"{agent} did not answer within {timeout:g} s (see `log tail`)") from None
            self._changed.clear()
            assert self.reply is not None
            yield self.reply
            if self.reply.done:
                return

    def __aiter__(self) -> AsyncIterator[Reply]:
        return self.updates()

    async def wait(self, timeout: float | None = None) -> Reply:
        """The finished reply (posted, stopped or lost); TobioError if none within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.done:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                await within(self._changed.wait(), left)
            except TimeoutError:
                raise TobioError(f"{self.conversation.agent} did not answer within {timeout:g} s (see `log tail`)") from None
            self._changed.clear()
        assert self.reply is not None
        return self.reply

    def stop(self) -> list[Reply]:
        """Stop the agent's turn (see `Conversation.stop`)."""
        return self.conversation.stop()


class Conversation:
    """The person `user` talking with `agent` on a private channel; `on_reply` hears every change of a reply."""

    def __init__(self, kernel: Kernel, agent: str, *, user: str = "user", channel: str | None = None,
                 on_reply: Callable[[Reply], None] | None = None) -> None:
        self.kernel = kernel
        self.agent = agent
        self.user = user
        self.channel = channel or f"dm.{user}.{agent}"
        self.on_reply = on_reply
        self._open: dict[str, Reply] = {}  # stream id -> reply not done yet
        self._ended: OrderedDict[str, Reply] = OrderedDict()  # stream id -> stopped or lost reply
        self._waiting: deque[Response] = deque()  # prompts whose reply has not begun, oldest first
        self._person: Agent | None = None
        self._unlisten: Callable[[], None] | None = None
        self._closed = False  # items still on their way to the home loop are dropped

    # -- lifecycle ---------------------------------------------------------------------------------
    async def open(self, *, greet: bool = False) -> Conversation:
        """Join the channel with the agent and start listening; `greet`: a new conversation starts with the
        agent's greeting. Raises TobioError (no such agent, …) with nothing left listening."""
        if self._unlisten is not None:
            return self
        self._closed = False
        home = asyncio.get_running_loop()
        direct = self.kernel.in_kernel_thread()

        def forward(item: Message | Delta) -> None:  # on the kernel's loop
            if direct:
                self._receive(item)
            else:
                home.call_soon_threadsafe(self._receive, item)

        async def join() -> tuple[Agent, Callable[[], None]]:
            unlisten = self.kernel.transport.listen(self.channel, forward)  # first, so the greeting is heard
            try:
                person, _ = await self.kernel.agents.open_dm(self.user, self.agent, self.channel, greet=greet)
            except BaseException:
                unlisten()
                raise
            return person, unlisten

        self._person, self._unlisten = await self.kernel.acall(join())
        return self

    @property
    def is_open(self) -> bool:
        return self._unlisten is not None

    def close(self) -> None:
        """Stop listening, from any thread (the threads stay open: the conversation is part of both
        histories). Off the kernel's loop the listener is removed soon after; `aclose` waits for it."""
        unlisten, self._unlisten = self._unlisten, None
        self._closed = True
        if unlisten is None:
            return
        loop = self.kernel.loop
        if self.kernel.in_kernel_thread() or loop is None:
            unlisten()  # (no loop: the kernel is closed, its transport with it)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(unlisten)

    async def aclose(self) -> None:
        """Stop listening, and return once the listener is gone."""
        unlisten, self._unlisten = self._unlisten, None
        self._closed = True
        if unlisten is not None:
            await self.kernel.acall(_call(unlisten))

    async def __aenter__(self) -> Conversation:
        return await self.open()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def __enter__(self) -> Conversation:
        """For a conversation already opened (e.g. `kernel.call(c.open())`): `with` closes it."""
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- talking -----------------------------------------------------------------------------------
    async def say(self, text: str) -> Message:
        """Post what the person says; returns the message once it is stored and delivered."""
        person = self._person
        if person is None or self._unlisten is None:
            raise TobioError(f"the conversation with {self.agent} is not open")

        async def post() -> tuple[Message, bool]:
            agent = self.kernel.agents.live.get(self.agent)
            idle = agent is None or agent.current is None  # read before the agent can take up this line
            return await person.say(self.channel, text, role="user"), idle

        message, idle = await self.kernel.acall(post())
        if idle:  # the agent's turn is over: a draft still waiting for its message will not get one
            for reply in [r for r in self._open.values() if r.sender == self.agent and r.state == "streamed"]:
                self._end(reply, "lost")
        return message

    async def prompt(self, text: str) -> Response:
        """Say `text` and return the Response that the agent's next reply fills."""
        response = Response(self)
        self._waiting.append(response)  # before posting: the reply may begin before `say` returns here
        try:
            response.said = await self.say(text)
        except BaseException:
            if response in self._waiting:
                self._waiting.remove(response)
            raise
        return response

    # -- alternatives (swipes.py) -------------------------------------------------------------------
    async def retry(self) -> Response:
        """Ask the agent for another reply to the latest turn; the one shown now is kept as an
        alternative. Returns the Response the new reply fills."""
        from tobio.swipes.service import Swipes

        if self._unlisten is None:
            raise TobioError(f"the conversation with {self.agent} is not open")
        response = Response(self)
        self._waiting.append(response)
        try:
            await self.kernel.acall(Swipes.of(self.kernel).retry(self.channel, self.agent, timeout=0))
        except BaseException:
            if response in self._waiting:
                self._waiting.remove(response)
            raise
        return response

    async def swipe(self, number: int) -> Message:
        """Choose alternative `number` (1 = the first said) of the latest reply; returns its message, for the
        front end to show in place of the one it showed."""
        from tobio.swipes.service import Swipes

        alternatives = await self.kernel.acall(Swipes.of(self.kernel).choose(self.channel, number, self.agent))
        return alternatives[number - 1].message

    async def alternatives(self) -> list[Alternative]:
        """The latest reply's alternatives, the chosen one marked."""
        from tobio.swipes.service import Swipes

        return await self.kernel.acall(Swipes.of(self.kernel).alternatives(self.channel, self.agent))

    def in_progress(self) -> list[Reply]:
        """Replies begun and not done: streaming, or streamed and waiting for their posted message."""
        return list(self._open.values())

    def stop(self) -> list[Reply]:
        """Stop the agent's turn: cancel its model runs on this channel (and any it starts until the turn
        ends: a resample, a command round), and end the replies in progress as stopped; returns those.
        Their messages, if the agent still posts them, are not reported again."""
        stopped = list(self._open.values())
        for reply in stopped:
            self._end(reply, "stopped")
        if self.kernel.loop is not None:
            with contextlib.suppress(TobioError, RuntimeError):  # the kernel stopped meanwhile: no runs left
                self.kernel.submit(self._stop_turn())
        return stopped

    async def _stop_turn(self) -> None:
        """On the kernel's loop: cancel the agent's reply runs now; while the turn they belong to goes on,
        a kernel task cancels the runs it starts after them."""
        agent = self.kernel.agents.live.get(self.agent)
        if agent is None:
            return
        subscription = self.kernel.transport.subscription(agent.id, self.channel)
        thread_id = subscription.thread_id if subscription is not None else None
        cancelled = cancel_reply_runs(self.kernel, agent.id, thread_id)
        if cancelled:
            log.info("%s stopped %s's runs %s", self.user, agent.name, cancelled)
        turn = agent.current
        if turn is None:
            return

        async def watch() -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + STOP_WATCH_S
            while agent.current is turn and loop.time() < deadline:
                await asyncio.sleep(STOP_POLL_S)
                cancel_reply_runs(self.kernel, agent.id, thread_id)

        self.kernel.tasks.spawn(watch(), name=f"stop {agent.name}'s turn", owner=self.user)

    # -- what the transport carries (on the home loop) ---------------------------------------------
    def _receive(self, item: Message | Delta) -> None:
        if self._closed:
            return
        if isinstance(item, Delta):
            self._on_delta(item)
        else:
            self._on_message(item)

    def _on_delta(self, delta: Delta) -> None:
        if delta.stream_id in self._ended:
            return
        reply = self._open.get(delta.stream_id)
        if reply is None:
            if delta.done:
                return  # the end of a stream begun before we listened
            reply = self._begin(Reply(delta.sender or "?", delta.stream_id))
            self._open[delta.stream_id] = reply
        reply.draft += delta.text
        if delta.done:
            reply.state = "streamed"
        self._notify(reply)

    def _on_message(self, message: Message) -> None:
        if message.sender == self.user:
            return  # the person's own line: the front end that said it shows it
        stream_id = (message.metadata or {}).get("stream_id")
        stream_id = stream_id if isinstance(stream_id, str) else None
        reply = None
        if stream_id is not None:
            ended = self._ended.pop(stream_id, None)
            if ended is not None:
                ended.message = message  # kept for whoever holds it; not shown again
                return
            reply = self._open.pop(stream_id, None)
        if reply is None:
            reply = self._begin(Reply(message.sender or "kernel", stream_id))
        reply.message, reply.state = message, "posted"
        self._notify(reply)

    def _begin(self, reply: Reply) -> Reply:
        """A new reply: the oldest prompt still waiting takes it if the agent said it. An agent answers one
        message at a time, so a draft of its own still waiting for its message now never gets one."""
        for earlier in [r for r in self._open.values() if r.sender == reply.sender and r.state == "streamed"]:
            self._end(earlier, "lost")
        if reply.sender == self.agent and self._waiting:
            reply.response = self._waiting.popleft()
        return reply

    def _end(self, reply: Reply, state: ReplyState) -> None:
        reply.state = state
        if reply.stream_id is not None:
            self._open.pop(reply.stream_id, None)
            self._ended[reply.stream_id] = reply
            while len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)
        self._notify(reply)

    def _notify(self, reply: Reply) -> None:
        if reply.response is not None:
            reply.response._update(reply)
        if self.on_reply is not None:
            try:
                self.on_reply(reply)
            except Exception:  # a front end's drawing bug must not break the agent's stream
                log.exception("a front end failed to show a reply from %s", reply.sender)


async def _call(function: Callable[[], None]) -> None:
    function()
