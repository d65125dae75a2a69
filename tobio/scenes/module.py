"""The `scenes` module: turn-taking floors for channels, and scenes (configs/scenes/*.yaml) run with
`scene run FILE`, several at once in different channels."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ConfigDict, Field

from tobio.agents.base import Agent
from tobio.commands import Arg, Context, Result, table
from tobio.config import load_data_yaml, load_yaml, validate
from tobio.errors import CommandError
from tobio.hooks import SHOULD_ANSWER, implements
from tobio.messages import Delivery, Delta, Message
from tobio.modules import Module
from tobio.persona.module import PersonaModule
from tobio.scenes.floor import Floor, Policy
from tobio.tasks import within as before_timeout

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.scenes.schema import SceneConfig

log = logging.getLogger(__name__)


class FloorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    members: list[str] = Field(min_length=1)
    policy: Policy = "addressed"
    max_agent_turns: int = Field(4, ge=1)


class ScenesSettings(BaseModel):
    """`settings: {scenes: {floors: {lobby: {members: [a, b], policy: addressed}}}}`."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    floors: dict[str, FloorSettings] = Field(default_factory=dict)


class ScenesModule(Module):
    """Floors (who speaks next) and scenes."""

    name = "scenes"
    description = "Turn-taking among persona agents (round-robin, addressed, model) and scripted scenes."
    dependencies = (PersonaModule,)
    Settings = ScenesSettings
    settings: ScenesSettings

    def __init__(self) -> None:
        self.floors: dict[str, Floor] = {}  # channel -> who speaks next there

    async def module_init(self, kernel: Kernel) -> None:
        for channel, floor in self.settings.floors.items():
            self.floors[channel] = Floor(kernel, channel, floor.members, floor.policy, floor.max_agent_turns)
        register(kernel, self)

    @implements(SHOULD_ANSWER)
    async def take_turns(self, agent: Agent, delivery: Delivery) -> bool | None:
        """In a channel with a floor, a member answers only when the floor picks it; elsewhere no opinion."""
        floor = self.floors.get(delivery.message.channel or "")
        if floor is None or agent.name not in floor.members:
            return None
        return await floor.decide(delivery.message) == agent.name


def load_scene(path: str | Path, trusted: bool = True) -> SceneConfig:
    """A scene file; one an agent named (`trusted=False`) is read as data: no ${VAR}, no `!include`."""
    from tobio.scenes.schema import SceneConfig  # here: a start that plays no scene does not build its models

    data, smap = load_yaml(path) if trusted else load_data_yaml(path)
    return validate(SceneConfig, data, smap)


async def run_scene(kernel: Kernel, scene: SceneConfig, emit: Any = None, trusted: bool = True) -> list[Message]:
    """Spawn the cast, open the floor, post the opening line, and wait for `turns` agent replies.

    Everything that can be checked is checked before anyone is spawned: a scene that cannot run
    leaves no cast behind."""
    floors = kernel.modules.need(ScenesModule, "a scene").floors
    if not trusted:  # the cast's files of a scene an agent named lie where its own path arguments may
        from tobio.paths import data_dir, within

        outside = [str(p) for p in scene.agents if within(p, data_dir()) is None]
        if outside:
            raise CommandError(f"scene {scene.name}: agents may only name files inside the data directory ({outside[0]})")
    cast = kernel.agents.load_configs(list(scene.agents), trusted)
    names = [config.name for config, _ in cast]
    if scene.opening.speaker and scene.opening.speaker not in names:
        raise CommandError(f"scene {scene.name}: the opening speaker '{scene.opening.speaker}' is not in the cast ({', '.join(names)})")
    if scene.channel in floors:
        raise CommandError(f"channel '{scene.channel}' already has a floor (a scene running there?)")
    for config, _ in cast:
        kernel.agents.type_for(config.type).check_config(kernel, config)
    for config, path in cast:
        if config.name not in kernel.agents.live:
            await kernel.agents.spawn(config, config_file=str(path))
    for name in names:
        await kernel.transport.subscribe(kernel.agents.get(name), scene.channel)
    if scene.channel in floors:
        raise CommandError(f"channel '{scene.channel}' already has a floor (a scene running there?)")
    floor = Floor(kernel, scene.channel, names, scene.policy, max_agent_turns=scene.turns + 1)
    floors[scene.channel] = floor
    said: list[Message] = []
    done = asyncio.Event()
    replies = [-1 if scene.opening.speaker else 0]  # the opening line is not a turn

    def watch(item: Message | Delta) -> None:
        if isinstance(item, Message) and item.sender in names and not done.is_set():
            said.append(item)
            replies[0] += 1
            turn = replies[0]
            if turn > 0:
                if emit:
                    emit(f"[{scene.name}] turn {turn}/{scene.turns}: {item.sender}: {item.content}\n")
                if turn >= scene.turns:
                    floor.max_agent_turns = 0  # nobody takes another turn
                    done.set()

    stop = kernel.transport.listen(scene.channel, watch)
    try:
        speaker = kernel.agents.get(scene.opening.speaker) if scene.opening.speaker else None
        opening = await kernel.transport.post(scene.channel, scene.opening.text, sender=speaker, role="user" if speaker is None else "assistant")
        if speaker is None:
            said.insert(0, opening)
        try:
            await before_timeout(done.wait(), scene.timeout_s)
        except TimeoutError:
            raise CommandError(f"scene {scene.name} stalled after {len(said)} messages ({scene.timeout_s:g} s)") from None
        return said
    finally:
        stop()
        floors.pop(scene.channel, None)


def register(kernel: Kernel, scenes: ScenesModule) -> None:
    floors = scenes.floors
    scene = kernel.commands.group("scene", "Scenes: several persona agents in a channel, from a file.")
    floor = kernel.commands.group("floor", "Turn-taking in channels with several persona agents.")

    # People only: a scene spawns and subscribes other agents and speaks in their channel.
    @scene.command("run", Arg("file", help="scene YAML", complete="file"), Arg("--turns", type=int, help="override the number of turns"),
                   agents="people")
    async def run(ctx: Context, file: str, turns: int | None) -> Result:
        """Run a scene to its last turn, showing each turn as it happens."""
        trusted = ctx.caller.privileged  # an agent's file is data
        config = load_scene(file, trusted)
        if turns:
            config = config.model_copy(update={"turns": turns})
        said = await run_scene(ctx.kernel, config, emit=ctx.emit, trusted=trusted)
        rows = [(m.id, m.sender or "(narrator)", m.content) for m in said]
        return table(["msg", "speaker", "content"], rows, title=f"scene {config.name} in #{config.channel}")

    @floor.command("ls", agents="people")
    def ls(ctx: Context) -> Result:
        """List channels with a floor: members, policy, cap, and agent turns so far."""
        rows = [(f.channel, ", ".join(f.members), f.policy, f.max_agent_turns, f.streak, f.spoken) for f in floors.values()]
        return table(["channel", "members", "policy", "max agent turns", "streak", "agent turns"], rows)

    @floor.command(
        "set", Arg("channel", complete="channel", help="channel"), Arg("--members", help="comma-separated agent names"),
        Arg("--policy", default="addressed", choices=("round_robin", "addressed", "model"), help="who speaks next"),
        Arg("--max-agent-turns", type=int, default=4, help="agent messages in a row before waiting for a person"),
        agents="people",
    )
    def set_(ctx: Context, channel: str, members: str | None, policy: str, max_agent_turns: int) -> Result:
        """Give a channel a floor: one member answers each message, by policy."""
        names = [n.strip() for n in (members or "").split(",") if n.strip()]
        if not names:
            names = [s.receiver.name for s in ctx.kernel.transport.channels.get(channel, {}).values()
                     if getattr(s.receiver, "type_name", "") == "persona"]
        if len(names) < 1:
            raise CommandError(f"no persona agents in '{channel}'; give --members")
        floors[channel] = Floor(ctx.kernel, channel, names, cast(Policy, policy), max_agent_turns)  # choices= checked it
        return Result(text=f"{channel}: {policy} among {', '.join(names)}, at most {max_agent_turns} agent turns in a row")

    @floor.command("clear", Arg("channel", complete="channel", help="channel"), agents="people")
    def clear(ctx: Context, channel: str) -> Result:
        """Remove a channel's floor (persona agents then answer people only)."""
        if floors.pop(channel, None) is None:
            raise CommandError(f"'{channel}' has no floor")
        return Result(text=f"{channel}: floor removed")
