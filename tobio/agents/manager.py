"""Spawning, restoring and controlling agents; persisting their state."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from tobio.agents.base import Agent, AgentConfig
from tobio.agents.handling import cursor_set, unhandled_deliveries
from tobio.config import load_data_yaml, load_yaml, validate
from tobio.config.schema import name_adapter
from tobio.config.yamlfile import SourceMap
from tobio.db.bulk import bulk_update
from tobio.db.literals import const
from tobio.db.migrations import utcnow
from tobio.db.tables import AgentRow, Row, ThreadRow
from tobio.db.writer import Set, Write
from tobio.errors import AgentError, ConfigError
from tobio.hooks import AGENT_TYPE
from tobio.messages import Delivery
from tobio.paths import data_dir, within
from tobio.principal import LOCAL_PERSON, RUN, Principal, is_person_name, name_key

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.tasks import TaskInfo

log = logging.getLogger(__name__)
STATE_COLUMNS = ("id", "agent_id", "state_dict", "created_at", "superseded_at")
CURRENT_STATE = ("state_dict", "updated_at")


class AgentManager:
    """The kernel's agents: live objects by name, their types, and their rows in the database."""

    def __init__(self, kernel: Kernel) -> None:
        from tobio.agents.user import UserAgent

        self.kernel = kernel
        kernel.hooks.add(AGENT_TYPE, UserAgent, key=UserAgent.type_name)
        self.live: dict[str, Agent] = {}
        self._saved: dict[int, tuple[str, Any]] = {}  # agent id -> (state json, since)

    # -- types -----------------------------------------------------------------------------------
    @property
    def types(self) -> dict[str, type[Agent]]:
        """Spawnable agent types by name (modules add them at the AGENT_TYPE hook point)."""
        return self.kernel.hooks.keyed(AGENT_TYPE)

    def type_for(self, type_name: str, where: str = "") -> type[Agent]:
        cls = self.types.get(type_name)
        if cls is None:
            known = ", ".join(sorted(self.types)) or "none: load a module that provides one"
            raise AgentError(f"{where}unknown agent type '{type_name}' (known: {known})")
        return cls

    # -- config ----------------------------------------------------------------------------------
    def load_config(self, path: str | Path, trusted: bool = True, by: Principal | None = None) -> AgentConfig:
        """Validate an agent file against its type's Config; errors name file, line and field.

        A file an agent named (`by` an agent, or `trusted=False`) is read as data (no ${VAR}, no
        `!include`), so an agent cannot write `${OPENAI_API_KEY}` into a file, spawn it, and read its
        own config back; and the files it names in turn (`persona:` …) must lie in the data directory."""
        if by is not None:
            trusted = by.privileged
        data, smap = load_yaml(path) if trusted else load_data_yaml(path)
        config = self.config_from_data(data, smap)
        if not trusted:
            confine_config_paths(config, smap)
        return config

    def load_configs(self, paths: list[Path], trusted: bool = True) -> list[tuple[AgentConfig, Path]]:
        """Validate several agent files; two files giving the same name are refused, naming both
        (otherwise one of them would silently never run)."""
        seen: dict[str, Path] = {}
        out = []
        for path in paths:
            config = self.load_config(path, trusted)
            if config.name in seen and seen[config.name].resolve() != Path(path).resolve():
                raise AgentError(f"two agent files are named '{config.name}': {seen[config.name]} and {path}; rename one")
            if config.name not in seen:
                seen[config.name] = Path(path)
                out.append((config, Path(path)))
        return out

    def config_from_data(self, data: Any, smap: SourceMap) -> AgentConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{smap.file}:1: an agent file is a mapping with at least name and type")
        if "type" not in data:
            raise ConfigError(f"{smap.where(())}: field 'type': field required (one of: {', '.join(sorted(self.types))})")
        cls = self.type_for(str(data["type"]), f"{smap.where(('type',))}: ")
        return validate(cls.Config, data, smap)

    # -- lookup ----------------------------------------------------------------------------------
    def get(self, name: str) -> Agent:
        agent = self.live.get(name)
        if agent is None:
            raise AgentError(f"no live agent named '{name}' (see `agent ls`)")
        return agent

    async def ensure_user(self, name: str = "user", channels: tuple[str, ...] = ()) -> Agent:
        """The live UserAgent called `name` (spawned on first use), subscribed to `channels`."""
        from tobio.agents.user import UserAgent, UserConfig

        agent = self.live.get(name)
        if agent is None:
            agent = await self.spawn(UserConfig(name=name, type="user"))
        if not isinstance(agent, UserAgent):
            raise AgentError(f"'{name}' is a {agent.type_name} agent, not a user")
        for channel in channels:
            await self.kernel.transport.subscribe(agent, channel)
        return agent

    async def open_dm(self, user: str, agent: str, channel: str | None = None, greet: bool = False) -> tuple[Agent, str]:
        """The private channel (`dm.USER.AGENT` unless given) where the person `user` talks with `agent`,
        both subscribed; returns (the user's agent, the channel). Every front end's chat starts here.
        `greet`: a conversation that is new starts with the agent's greeting (a card's first message)."""
        target = self.get(agent)
        if target.type_name == "user":
            raise AgentError(f"'{agent}' is a person at a front end, not an agent")
        channel = channel or f"dm.{user}.{agent}"
        person = await self.ensure_user(user, channels=(channel,))
        await self.kernel.transport.subscribe(target, channel)
        if greet:
            await target.greet(channel, user)
        return person, channel

    # -- spawn / restore ------------------------------------------------------------------------
    async def spawn(self, config: AgentConfig, config_file: str | None = None, by: Principal = LOCAL_PERSON) -> Agent:
        """Create an agent, subscribe it and start its task; `by` is who asked.

        A person may bring back an agent that was killed or stopped (same name: its id and state are
        kept). An agent may only create new agents: never a name any agent has had (killed ones
        included), never a person's name, never with more commands or channels than it has itself."""
        try:
            name_adapter().validate_python(config.name)  # a name set after validation (`--name`, model_copy) is checked here
        except ValidationError:
            raise AgentError(f"bad agent name {config.name!r}: letters, digits, '_', '.', '-' (not first), at most 64") from None
        if config.name in self.live:
            raise AgentError(f"agent '{config.name}' is already running")
        cls = self.type_for(config.type)
        if not by.privileged:
            self._check_child(config, by)
            await self._check_child_persona(config, by)
        cls.check_config(self.kernel, config)
        config_json = config.model_dump(mode="json")

        def read(conn: Connection) -> tuple[Row | None, list[str]]:
            # Valid names are ASCII (Name), where the look-alike key is the lower-cased name: one indexed
            # lookup, not a scan of every agent per spawn.
            # `const`: a first start spawns its agents, and on DuckDB a bound parameter imports pandas.
            alike = sa.select(AgentRow.c.name).where(sa.func.lower(AgentRow.c.name) == const(config.name.lower()))
            same = sa.select(AgentRow).where(AgentRow.c.name == const(config.name))
            return conn.execute(same).first(), list(conn.execute(alike).scalars())

        existing, names = await self.kernel.db.call(read)
        self._check_name(config, by, names + [n for n in self.live if n.lower() == config.name.lower()])
        agent = cls(self.kernel, config, existing.id if existing else self.kernel.db.next_ids("agents"))
        cluster = self.kernel.cluster
        if cluster is not None:  # several kernels: it runs here only with its lease (tobio/cluster)
            await cluster.claim_spawn(agent)
        if existing is not None and existing.state_dict:
            self.restore_state(agent, existing.state_dict)
        state = self.full_state(agent)
        now = utcnow()
        if existing is not None and existing.config != config_json:
            log.info("agent %s: config changed since it was last spawned; using the new one", config.name)

        def upsert(conn: Connection) -> None:
            # The writer's bulk paths: on DuckDB they write plain values and JSON as literals (no pandas).
            values = {"type": config.type, "config": config_json, "config_file": config_file, "status": "running",
                      "updated_at": now, "state_dict": state}
            if existing is None:
                row = {"id": agent.id, "name": config.name, "created_at": now, **values}
                self.kernel.db.bulk_insert(conn, "agents", tuple(row), [tuple(row.values())])
            else:
                bulk_update(self.kernel.db, conn, "agents", "id", tuple(values), {agent.id: tuple(values.values())})

        try:
            await self.kernel.db.call(upsert)
        except sa.exc.IntegrityError:
            if cluster is None:
                raise
            await cluster.give_up([agent.id])
            raise AgentError(f"agent '{config.name}' was just spawned by another kernel") from None
        self._saved[agent.id] = (json.dumps(state, sort_keys=True), now)
        open_threads = await self._open_threads(agent.id)
        self._attach(agent, open_threads)
        backlog = (await self._backlog(agent.id)).get(agent.id, []) if open_threads and cluster is None else []
        await self._start(agent, backlog)
        if cluster is not None:
            await cluster.started([agent])  # its backlog comes through the cluster's scan
        return agent

    @staticmethod
    def _check_name(config: AgentConfig, by: Principal, taken: list[str]) -> None:
        """Names of people and of agents never overlap, and look-alikes (`User`, `alice` vs `Alice`) count."""
        key = name_key(config.name)
        if is_person_name(config.name) and config.type != "user":
            raise AgentError(f"'{config.name}' is the name of the person at a front end; an agent cannot take it")
        for name in taken:
            if name_key(name) != key:
                continue
            if name != config.name:
                raise AgentError(f"'{config.name}' looks like the existing agent '{name}'; choose another name")
            if not by.privileged:
                raise AgentError(f"agent '{by.name}' may not spawn '{config.name}': that name is taken (a killed agent "
                                 "is brought back by a person only, with its state)")

    def _check_child(self, config: AgentConfig, by: Principal) -> None:
        """An agent spawns nothing mightier than itself: no person, no more commands, channels or rows."""
        if config.type == "user":
            raise AgentError(f"agent '{by.name}' may not spawn a person (type: user)")
        if config.sql_all_rows:
            raise AgentError(f"agent '{by.name}' may not spawn an agent with sql_all_rows")
        extra = [c for c in config.commands if not by.allowed(RUN, c)]
        if extra:
            raise AgentError(f"agent '{by.name}' may not give '{config.name}' commands it lacks itself: {_few(extra)}")
        parent = by.agent
        mine = {s.channel for s in self.kernel.transport.subscriptions_of(parent.id)} if parent is not None else set()
        foreign = [c for c in config.channels if c not in mine]
        if foreign:
            raise AgentError(f"agent '{by.name}' may not put '{config.name}' on channels it is not on: {_few(foreign)}")

    async def _check_child_persona(self, config: AgentConfig, by: Principal) -> None:
        """A persona is known by its file's stem: a child's `persona: tobio.yaml` would record a new version
        of the persona `tobio` that others think with. An agent names only a new persona or one it may change."""
        path = getattr(config, "persona", None)
        if not isinstance(path, Path):
            return
        from tobio.commands.context import Context
        from tobio.commands.view import can_reach
        from tobio.persona.registry import key_for

        key = key_for(path)
        registry = getattr(self.kernel.modules.loaded.get("persona"), "registry", None)
        if registry is not None and key in registry.current and not await can_reach(Context(self.kernel, by), "persona_write", key):
            raise AgentError(f"agent '{by.name}' may not spawn '{config.name}' with the persona '{key}' of other agents")

    def _attach(self, agent: Agent, open_threads: dict[str, int]) -> None:
        """Re-attach the agent's open threads, so pushes reach it from now on (before its backlog is read)."""
        for channel, thread_id in open_threads.items():
            self.kernel.transport.restore(agent, channel, thread_id)

    async def _backlog(self, agent_id: int | None = None) -> dict[int, list[Delivery]]:
        """Every agent's (or one agent's) unhandled pushes, once what is queued is durable (marks too)."""
        await self.kernel.writer.flush()
        return await self.kernel.db.call(unhandled_deliveries, agent_id)

    async def _start(self, agent: Agent, backlog: list[Delivery]) -> None:
        """Refill the inbox with the backlog, ahead of anything delivered meanwhile; subscribe; run."""
        if backlog:
            log.info("agent %s: %d unhandled message(s) from before the restart", agent.name, len(backlog))
            agent.inbox.put_front(backlog, key=lambda d: (d.thread_id, d.message.id))
        for channel in agent.config.channels:
            await self.kernel.transport.subscribe(agent, channel)
        self.live[agent.name] = agent
        self.kernel.tasks.spawn(agent.run(), name=f"agent:{agent.name}", kind="agent", owner=agent.name)

    async def _open_threads(self, agent_id: int) -> dict[str, int]:
        def read(conn: Connection) -> dict[str, int]:
            query = sa.select(ThreadRow.c.channel, ThreadRow.c.id).where(
                ThreadRow.c.agent_id == const(agent_id), ThreadRow.c.closed_at.is_(None), ThreadRow.c.channel.is_not(None)
            )
            return {channel: thread_id for channel, thread_id in conn.execute(query)}

        return await self.kernel.db.call(read)

    async def restore_all(self, only: Collection[int] | None = None) -> list[str]:
        """Bring back every agent that was running or paused when the kernel last stopped (or those of
        `only`, whose leases this kernel has just taken)."""

        def read(conn: Connection) -> tuple[list[Row], list[Row]]:
            agents = sa.select(AgentRow).where(AgentRow.c.status != const("killed")).order_by(AgentRow.c.id)
            threads = sa.select(ThreadRow).where(ThreadRow.c.closed_at.is_(None))
            if only is not None:  # adopting some agents: their rows only, not the whole cluster's
                agents = agents.where(AgentRow.c.id.in_(list(only)))
                threads = threads.where(ThreadRow.c.agent_id.in_(list(only)))
            return list(conn.execute(agents)), list(conn.execute(threads))

        rows, threads = await self.kernel.db.call(read)
        open_threads: dict[int, dict[str, int]] = {}  # agent id -> channel -> thread id (one pass, not one per agent)
        for thread in threads:
            if thread.channel:
                open_threads.setdefault(thread.agent_id, {})[thread.channel] = thread.id
        cluster = self.kernel.cluster
        if cluster is not None:  # several kernels: only the agents whose leases this one holds
            rows = await cluster.claim_rows(rows) if only is None else [r for r in rows if r.id in only and r.name not in self.live]
        agents: list[Agent] = []
        for row in rows:
            if is_person_name(row.name) and row.type != "user":
                log.error("not restoring agent %s: a %s agent under a person's name (rename or kill it with sql)",
                          row.name, row.type)
                continue
            try:
                cls = self.type_for(row.type)
                config = cls.Config.model_validate(row.config, context={"base_dir": Path.cwd()})
            except Exception as exc:  # one broken agent must not stop the others
                log.error("cannot restore agent %s: %s", row.name, exc)
                continue
            agent = cls(self.kernel, config, row.id)
            self.restore_state(agent, row.state_dict or {})
            self._saved[agent.id] = (json.dumps(row.state_dict or {}, sort_keys=True), row.updated_at)
            if row.status == "paused":
                agent.pause()
            # Every thread first, then the backlog, then the tasks: an agent that speaks as it starts
            # must reach the others' threads, and its words must not be read back as their backlog.
            self._attach(agent, open_threads.get(row.id, {}))
            agents.append(agent)
        backlog = await self._backlog() if agents and cluster is None else {}
        for agent in agents:
            await self._start(agent, backlog.get(agent.id, []))
        if cluster is not None:
            await cluster.started(agents)
        return [agent.name for agent in agents]

    async def start_stored(self, name: str) -> Agent:
        """Start an agent exactly as its row stands (a fork, made by tobio/branching): its state, its
        state's time (`updated_at`: when that state became current), its open threads."""

        def read(conn: Connection) -> Row | None:
            return conn.execute(sa.select(AgentRow).where(AgentRow.c.name == name)).first()

        row = await self.kernel.db.call(read)
        if row is None:
            raise AgentError(f"no agent named '{name}'")
        config = self.type_for(row.type).Config.model_validate(row.config, context={"base_dir": Path.cwd()})
        agent = self.type_for(row.type)(self.kernel, config, row.id)
        cluster = self.kernel.cluster
        if cluster is not None:  # several kernels: a fork runs where it was made, with its lease
            await cluster.claim_spawn(agent)
        self.restore_state(agent, row.state_dict or {})
        self._saved[agent.id] = (json.dumps(row.state_dict or {}, sort_keys=True), row.updated_at)
        open_threads = await self._open_threads(agent.id)
        self._attach(agent, open_threads)
        await self._start(agent, (await self._backlog(agent.id)).get(agent.id, []) if open_threads and cluster is None else [])
        if cluster is not None:
            await cluster.started([agent])  # its backlog comes through the cluster's scan
        return agent

    # -- control ---------------------------------------------------------------------------------
    async def _set_status(self, agent: Agent, status: str) -> None:
        # Through the writer, as replies and states are: with several kernels it is fenced, so a kernel that
        # lost the agent's lease (paused past it) cannot pause or kill the agent where it runs now.
        await self.kernel.writer.write(sets=[("agents", "id", ("status", "updated_at"), agent.id, (status, utcnow()))])

    def _task_of(self, agent: Agent) -> TaskInfo | None:
        return next((t for t in self.kernel.tasks.live.values() if t.kind == "agent" and t.owner == agent.name), None)

    async def pause(self, name: str) -> Agent:
        agent = self.get(name)
        agent.pause()
        if (task := self._task_of(agent)) is not None:
            task.paused = True
        await self._set_status(agent, "paused")
        return agent

    async def resume(self, name: str) -> Agent:
        agent = self.get(name)
        agent.resume()
        if (task := self._task_of(agent)) is not None:
            task.paused = False
        await self._set_status(agent, "running")
        return agent

    async def kill(self, name: str) -> Agent:
        """Stop the agent's task, close its threads and mark it killed (its history stays)."""
        agent = self.get(name)
        if (task := self._task_of(agent)) is not None:
            await self.kernel.tasks.cancel(task.id)
        for sub in self.kernel.transport.subscriptions_of(agent.id):
            await self.kernel.transport.unsubscribe(agent.id, sub.channel)
        await self.save_state(agent)
        agent.status = "killed"
        await self._set_status(agent, "killed")
        del self.live[name]
        if self.kernel.cluster is not None:  # several kernels: nobody runs it now
            await self.kernel.cluster.give_up([agent.id])
        return agent

    async def stop_all(self) -> None:
        """Kernel shutdown: stop tasks, save state, leave status as is so a restart restores them."""
        for agent in list(self.live.values()):
            if (task := self._task_of(agent)) is not None:
                await self.kernel.tasks.cancel(task.id)
            try:
                await self.save_state(agent)
            except Exception as exc:
                log.error("could not save state of %s at shutdown: %s", agent.name, exc)
        self.live.clear()

    # -- state -----------------------------------------------------------------------------------
    @staticmethod
    def full_state(agent: Agent) -> dict[str, Any]:
        """The agent's state_dict plus what modules keep for it (under "modules")."""
        state = agent.state_dict()
        if agent.module_state:
            state = {**state, "modules": copy.deepcopy(agent.module_state)}  # a snapshot, not the live dict
        return state

    @staticmethod
    def restore_state(agent: Agent, state: dict[str, Any]) -> None:
        state = dict(state)
        agent.module_state = dict(state.pop("modules", None) or {})
        agent.load_state_dict(state)

    def _state_record(self, agent: Agent) -> tuple[list[Write], list[Set]]:
        """What saving the agent's state writes now, if it changed: the superseded state into `state`,
        the current one into `agents` (nothing when unchanged)."""
        state = self.full_state(agent)
        encoded = json.dumps(state, sort_keys=True)
        previous, since = self._saved.get(agent.id, ("{}", utcnow()))
        if encoded == previous:
            return [], []
        now = utcnow()
        self._saved[agent.id] = (encoded, now)
        state_id = self.kernel.db.next_ids("state")
        old = json.loads(previous)
        return [("state", STATE_COLUMNS, [(state_id, agent.id, old, since, now)])], [("agents", "id", CURRENT_STATE, agent.id, (state, now))]

    def handling_record(self, agent: Agent, delivery: Delivery) -> tuple[list[Write], list[Set]]:
        """The rows that record `delivery` as handled: the thread's cursor, and the state if it changed.
        Each is returned once: a reply carries them, and the end of handling writes only what is left."""
        writes, sets = self._state_record(agent)
        thread_id, message_id = delivery.thread_id, delivery.message.id
        if agent.cursors.get(thread_id, 0) < message_id:
            agent.cursors[thread_id] = message_id
            sets.append(cursor_set(thread_id, message_id))
        return writes, sets

    async def save_state(self, agent: Agent) -> bool:
        """Persist state_dict if it changed: current in `agents`, the superseded one into `state`."""
        writes, sets = self._state_record(agent)
        if not writes:
            return False
        await self.kernel.writer.write(*writes, sets=sets)
        return True


def confine_config_paths(config: Any, smap: SourceMap) -> None:
    """Every file an agent-named config names (its Path fields, lists of them too) lies inside the data
    directory, symlinks followed, as an agent's own path arguments do (commands/tree.py)."""
    root = data_dir()
    for field in type(config).model_fields:
        value = getattr(config, field, None)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, Path) and within(item, root) is None:
                raise ConfigError(f"{smap.where((field,))}: field '{field}': a file an agent names must be inside "
                                  f"the data directory ({root})")


def _few(items: list[str], count: int = 3, width: int = 40) -> str:
    """A hostile file's list, shown in one short line."""
    shown = ", ".join(repr(i) if len(i) <= width else repr(i[:width - 3] + "...") for i in items[:count])
    return shown + (f" and {len(items) - count} more" if len(items) > count else "")
