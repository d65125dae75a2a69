"""An example module that uses every extension point: each agent keeps a diary of whom it talked with.

Copy this file to start a module. It shows, in order: settings, a table of its own (migrated, and
readable by agents through `sql`), a transport observer, a prompt step, a reply filter, an event
subscriber, a replay step (and what a fork must carry of it), a turn-taking opinion, a completion source, commands, a background task, an
agent type that is the turn with a different reply filter (tobio/turn/), and a provider type. Nothing here names an owner: the module manager records this module
as the owner of all of it, and `mod unload diary` removes all of it (see tests/test_example_module.py).

Use it from Python (a package would name `DiaryModule` in its `tobio.modules` entry points instead):

    kernel = Kernel("configs/kernel.yaml")
    kernel.modules.register(DiaryModule)
    kernel.start()
    kernel.run("mod load diary")
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from tobio.agents.base import Agent
from tobio.agents.sandbox import Scope
from tobio.commands import Arg, Context, Result, table
from tobio.db.migrations import create_tables, migrate, utcnow
from tobio.db.tables import metadata
from tobio.hooks import (
    AGENT_TYPE,
    COMPLETION_SOURCE,
    EVENT,
    FORK,
    FORKED,
    ON_MESSAGE,
    PROMPT,
    PROVIDER_TYPE,
    REPLAY,
    REPLY_FILTER,
    SHOULD_ANSWER,
    SQL_SCOPE,
    SWIPED,
    implements,
)
from tobio.messages import Delivery, Message
from tobio.modules import DatabaseModule, Module
from tobio.providers.base import ChatRequest, Chunk, Provider, ProviderConfig
from tobio.turn.agent import TurnAgent, TurnConfig
from tobio.turn.character import Sketch
from tobio.turn.events import Event, ReplyPosted
from tobio.turn.placement import NEXT_TO_NEWEST, Injection
from tobio.turn.prompt import Prompt
from tobio.turn.reply import Reply, cut_echoes, first_line

if TYPE_CHECKING:
    from tobio.branching.fork import Fork
    from tobio.kernel import Kernel
    from tobio.replay import Snapshot
    from tobio.swipes.service import Swiped

# -- its table: one line per message an agent heard from someone ------------------------------------
DiaryRow = sa.Table(
    "diary_entries", metadata,  # the kernel's MetaData: its group-commit writer looks tables up there
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("agent_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("partner", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
)
COLUMNS = ("id", "agent_id", "partner", "channel", "created_at")


def m001_diary(conn: Connection) -> None:
    """The diary table."""
    create_tables(conn, [DiaryRow])


class DiarySettings(BaseModel):
    """`settings: {diary: {keep_days: 30}}` in kernel.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    keep_days: int = Field(30, ge=1, description="entries older than this are deleted (hourly)")
    in_prompt: bool = Field(True, description="remind agents whom they have talked with")


class DiaryModule(Module):
    """Whom each agent has talked with, remembered, shown to it, and readable by it."""

    name = "diary"
    description = "Example module: a diary per agent of whom it talked with (every extension point, in one file)."
    dependencies = (DatabaseModule,)
    Settings = DiarySettings
    settings: DiarySettings

    def __init__(self) -> None:
        self.met: dict[int, Counter[str]] = {}  # agent id -> partner -> messages heard
        self.quiet: set[str] = set()  # agents that answer nobody for now
        self.replies: Counter[int] = Counter()  # agent id -> replies posted (told by ReplyPosted events)

    async def module_init(self, kernel: Kernel) -> None:
        self.kernel = kernel

        def setup(conn: Connection) -> None:
            migrate(conn, [m001_diary], prefix="diary.")
            kernel.db.track_ids(conn, "diary_entries")

        await kernel.db.call(setup)
        kernel.hooks.add(SQL_SCOPE, Scope("t.agent_id = {me}"), key="diary_entries")  # agents read their own
        kernel.hooks.add(COMPLETION_SOURCE, self.diarists, key="diarist")
        kernel.hooks.add(AGENT_TYPE, Diarist)
        kernel.hooks.add(PROVIDER_TYPE, EchoProvider, key="echo")
        kernel.tasks.spawn(self._tidy(), name="diary:tidy", kind="job")
        register_commands(kernel, self)

    # -- hooks declared on the class ----------------------------------------------------------------
    @implements(ON_MESSAGE)
    def observe(self, message: Message) -> None:
        """Note who spoke to whom (an observer must not await: the row joins the next group commit)."""
        if message.sender is None or message.channel is None:
            return
        hearers = [s.receiver for s in self.kernel.transport.channels.get(message.channel, {}).values()
                   if isinstance(s.receiver, Agent) and s.receiver.name != message.sender]
        rows = [(self.kernel.db.next_ids("diary_entries"), a.id, message.sender, message.channel, message.created_at)
                for a in hearers]
        for agent in hearers:
            self.met.setdefault(agent.id, Counter())[message.sender] += 1
        if rows:
            self.kernel.writer.queue(("diary_entries", COLUMNS, rows))

    @implements(PROMPT)
    async def remind(self, prompt: Prompt) -> None:
        """One line next to the newest message: whom the agent has talked with most."""
        met = self.met.get(prompt.agent.id)
        if self.settings.in_prompt and met:
            people = ", ".join(f"{who} ({n})" for who, n in met.most_common(3))
            prompt.injections.append(Injection(NEXT_TO_NEWEST, "system", f"(Your diary: you have talked with {people}.)"))
            prompt.notes["diary"] = dict(met)

    @implements(REPLY_FILTER)
    async def keep_it_private(self, reply: Reply) -> None:
        """A reply never reads the diary line out (small models copy what sits next to the newest message)."""
        reply.text = re.sub(r"\s*\(Your diary:.*?\.\)", "", reply.text).strip() or "…"

    @implements(EVENT)
    async def count_replies(self, event: Event) -> None:
        """Count replies as they are posted (an event subscriber ignores the kinds it does not know)."""
        if isinstance(event, ReplyPosted):
            self.replies[event.agent_id] += 1

    @implements(SWIPED)
    async def unsay(self, change: Swiped) -> None:
        """A swipe or an edit took messages out of the histories, or brought one back: the counts follow."""
        names = {a.id: a.name for a in self.kernel.agents.live.values()}
        for ids, step in ((change.withdrawn, -1), (change.restored, 1)):
            for sender in await self.kernel.db.call(_senders, list(ids)):
                for agent_id in change.agents:
                    met = self.met.get(agent_id)
                    if met is not None and names.get(agent_id) != sender:
                        met[sender] = max(0, met[sender] + step)

    @implements(REPLAY)
    async def replay(self, snapshot: Snapshot) -> None:
        """Whom the agent had talked with at the snapshot's time."""
        snapshot.extra["diary"] = await self.kernel.db.call(_partners_until, snapshot.agent_id, snapshot.at)

    @implements(FORK)
    def carry(self, conn: Connection, fork: Fork) -> None:
        """What REPLAY reads, a fork (`agent fork`) carries: the parent's entries up to the fork point, as the
        fork's, in the fork's one transaction (plain function, on the DB thread; an error undoes the fork)."""
        from tobio.branching.fork import carry_rows

        carry_rows(conn, fork, DiaryRow, sa.and_(DiaryRow.c.agent_id == fork.parent_id, DiaryRow.c.created_at <= fork.at),
                   agent_id=sa.literal(fork.agent_id, DiaryRow.c.agent_id.type))

    @implements(FORKED)
    async def forked(self, fork: Fork) -> None:
        """Once the fork is committed: what the module keeps in memory per agent, for the new one."""
        self.met[fork.agent_id] = Counter(await self.kernel.db.call(_partners_until, fork.agent_id, fork.at))

    @implements(SHOULD_ANSWER)
    async def do_not_disturb(self, agent: Agent, delivery: Delivery) -> bool | None:
        """A quiet agent answers nobody (False); otherwise no opinion (None), so floors and types decide."""
        return False if agent.name in self.quiet else None

    def diarists(self, kernel: Kernel) -> list[tuple[str, str]]:
        """Agents with a diary, for `complete="diarist"`."""
        return [(a.name, f"{sum(self.met.get(a.id, Counter()).values())} entries")
                for a in kernel.agents.live.values() if a.id in self.met]

    async def _tidy(self) -> None:
        """Hourly, forget entries older than `keep_days` (a task: cancelled when the module unloads)."""
        while True:
            cutoff = utcnow() - timedelta(days=self.settings.keep_days)
            await self.kernel.db.call(lambda conn: conn.execute(sa.delete(DiaryRow).where(DiaryRow.c.created_at < cutoff)))
            await asyncio.sleep(3600)


def _senders(conn: Connection, message_ids: list[int]) -> list[str]:
    from tobio.db.tables import AgentRow, MessageRow

    query = sa.select(AgentRow.c.name).join(MessageRow, MessageRow.c.agent_id == AgentRow.c.id).where(MessageRow.c.id.in_(message_ids))
    return list(conn.execute(query).scalars())


def _partners_until(conn: Connection, agent_id: int, at: datetime) -> dict[str, int]:
    query = (sa.select(DiaryRow.c.partner, sa.func.count()).where(DiaryRow.c.agent_id == agent_id, DiaryRow.c.created_at <= at)
             .group_by(DiaryRow.c.partner))
    return {partner: int(n) for partner, n in conn.execute(query)}


# -- commands: registered in module_init, owned by the module without saying so ----------------------
def register_commands(kernel: Kernel, diary: DiaryModule) -> None:
    group = kernel.commands.group("diary", "Whom each agent has talked with.")

    @group.command("show", Arg("agent", help="an agent", complete="diarist", reach="self"), agents="agents")
    async def show(ctx: Context, agent: str) -> Result:
        """Whom the agent has talked with, most first."""
        who = ctx.kernel.agents.get(agent).id
        shown = table(["partner", "messages"], diary.met.get(who, Counter()).most_common())
        shown.note = f"{diary.replies[who]} replies"
        return shown

    @group.command("quiet", Arg("agent", help="an agent", complete="agent"), Arg("state", choices=("on", "off")),
                   agents="agents")
    def quiet(ctx: Context, agent: str, state: str) -> Result:
        """Let an agent answer nobody (on) or go back to normal (off)."""
        (diary.quiet.add if state == "on" else diary.quiet.discard)(ctx.kernel.agents.get(agent).name)
        return Result(text=f"{agent}: do not disturb {state}")


# -- an agent type: the turn every LLM agent takes, with a different reply filter ---------------------
class DiaristConfig(TurnConfig):
    """`type: diarist`: who it is in `description` (no persona file), a model bundle; one line a reply."""

    type: Literal["diarist"] = "diarist"
    stream: bool = False  # its filter cuts the reply to one line: a streamed draft would show more
    params: dict[str, Any] = Field(default_factory=lambda: {"max_tokens": 48})


class Diarist(TurnAgent):
    """A persona agent's turn (memory, mood, lore and this diary reach its prompt through the PROMPT steps;
    floors and do-not-disturb through SHOULD_ANSWER), but its own filters keep one line, and never resample."""

    type_name = "diarist"
    Config = DiaristConfig
    config: DiaristConfig
    filters = (first_line, cut_echoes)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.persona = Sketch(self.name.capitalize(), self.config.description)


# -- a provider type: a stand-in model that echoes the last user message ----------------------------
class EchoConfig(ProviderConfig):
    """`providers: {echo: {type: echo, prefix: "You said: "}}`."""

    prefix: str = ""


class EchoProvider(Provider):
    """Streams the last user message back, word by word (a provider needs only `stream_chat`)."""

    Config = EchoConfig
    config: EchoConfig

    async def stream_chat(self, request: ChatRequest, cancel: asyncio.Event) -> AsyncIterator[Chunk]:
        last = next((str(m["content"]) for m in reversed(request.messages) if m.get("role") == "user"), "")
        words = re.findall(r"\S+\s*", self.config.prefix + last)
        for word in words:
            if cancel.is_set():
                return
            yield Chunk(text=word)
        yield Chunk(prompt_tokens=sum(len(str(m.get("content", "")).split()) for m in request.messages),
                    completion_tokens=len(words), finish_reason="stop")
