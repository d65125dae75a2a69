"""The kernel: one object that owns the loop, the database, the transport, modules, commands and agents.

It runs its own asyncio loop in a thread so that a prompt_toolkit shell, a Jupyter kernel (whose
loop is already running) and a Panel server can share it in one process. From sync code call
`kernel.run("agent ls")`; from async code `await kernel.arun("agent ls")`, on any loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tobio.agents.manager import AgentManager
from tobio.commands.context import Context
from tobio.commands.parse import aresolve
from tobio.commands.result import Result
from tobio.commands.tree import Command, Group
from tobio.config.schema import KernelConfig, load_kernel_config
from tobio.db.database import Database
from tobio.db.writer import GroupCommitWriter
from tobio.errors import AgentError, CommandError, ConfigError, TobioError
from tobio.hooks import Hooks
from tobio.messages import Message
from tobio.modules import ModuleManager
from tobio.paths import default_database_url, find_config
from tobio.principal import RUN, Principal, principal_of
from tobio.tasks import TaskManager
from tobio.transport import Transport

if TYPE_CHECKING:
    from tobio.cluster.node import Cluster
    from tobio.logs import DatabaseLogHandler

log = logging.getLogger(__name__)
T = TypeVar("T")
SWITCH_INTERVAL_S = 0.0005


class Kernel:
    """Create with a config (path, KernelConfig or None for defaults), then `start()` or use `with`."""

    def __init__(
        self,
        config: KernelConfig | str | Path | None = None,
        *,
        database: str | None = None,
        spawn_agents: bool = True,
    ) -> None:
        if not isinstance(config, KernelConfig):
            path = find_config(config)
            config = load_kernel_config(path)
            self.config_path = path
        else:
            self.config_path = None
        self.config = config
        self.database_url = database or config.database or default_database_url()
        self.spawn_agents = spawn_agents
        if database:  # a URL from a flag or a caller: checked here (kernel.yaml's is checked where it is read)
            from tobio.config.database_url import check_database_url

            check_database_url(database, "--database")
        self.db = Database(self.database_url)
        self.hooks = Hooks()  # every extension point (tobio/hooks.py)
        self.commands = Group(name="", help="")
        self.modules = ModuleManager(self)
        self.agents = AgentManager(self)
        self.tasks = TaskManager()
        self.writer = GroupCommitWriter(self.db, max_delay_s=config.group_commit_ms / 1000)
        self.transport = Transport(self.db, self.writer, self.hooks)
        self.cluster: Cluster | None = self._cluster(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._log_handler: DatabaseLogHandler | None = None
        self.is_running = False
        from tobio.commands.builtin import register_builtins

        register_builtins(self)

    def _cluster(self, config: KernelConfig) -> Cluster | None:
        """kernel.yaml's `cluster:`: this kernel shares its PostgreSQL with others (tobio/cluster)."""
        if config.cluster is None:
            return None
        from pydantic import ValidationError

        from tobio.cluster.config import ClusterConfig
        from tobio.cluster.node import Cluster

        if self.db.dialect != "postgresql":
            raise ConfigError(f"cluster: kernels share a PostgreSQL database, not {self.db.dialect} "
                              "(a DuckDB or SQLite file stays one kernel's)")
        try:
            settings = ClusterConfig.model_validate(config.cluster)
        except ValidationError as exc:
            problems = "; ".join(f"cluster.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
            raise ConfigError(f"bad cluster settings: {problems}") from None
        return Cluster(self, settings)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Kernel:
        """Start the loop thread, open the database, load modules, restore and spawn agents."""
        if self.is_running:
            return self
        ready = threading.Event()
        self._thread = threading.Thread(target=self._loop_main, args=(ready,), name="tobio-kernel", daemon=True)
        self._thread.start()
        ready.wait()
        collecting = gc.isenabled()
        gc.disable()  # what boot builds lives as long as the kernel: collecting meanwhile only re-scans it
        try:
            self.call(self._boot())
        except BaseException:
            self.call(self._teardown())
            self._stop_loop()
            raise
        finally:
            if collecting:
                gc.enable()
        if self.config.tune_gc:
            # Each post allocates a dozen short-lived tracked objects per receiver; full collections
            # over everything loaded at boot cost ~25% of transport throughput (bench/transport.py).
            gc.freeze()
            gen0, _, _ = gc.get_threshold()
            gc.set_threshold(max(gen0, 5000), 20, 20)
            # The DB thread needs the GIL back after every native call of a flush; with Python's 5 ms
            # switch interval it waits behind the busy loop thread for up to that long each time, and
            # the writer's pipeline stalls (measured: ~+40% posts/s at 10 subscribers with 0.5 ms).
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        return self

    def _loop_main(self, ready: threading.Event) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _boot(self) -> None:
        await asyncio.to_thread(self.db.open, boot=True)
        self.writer.start()
        if self.cluster is not None:
            await self.cluster.start()
        elif self.db.dialect == "postgresql":
            from tobio.cluster.sql import others_up

            if up := await self.db.call(others_up):
                raise ConfigError(f"{up} clustered kernel(s) share this database: a kernel without kernel.yaml's "
                                  "`cluster:` section would run their agents a second time (add `cluster: {}`)")
        self.is_running = True
        from tobio import logs

        self._log_handler = logs.install(self, self.config.log_level, hold=True)  # one commit for the boot's lines
        await self.transport.load()
        self.modules.check_settings_names()
        await self.modules.load("database", *self.config.modules)
        for channel in self.config.channels:
            await self.transport.create_channel(channel)
        await self.agents.restore_all()
        if self.spawn_agents:
            for config, path in self.agents.load_configs(self.config.agent_files()):
                if config.name not in self.agents.live:
                    try:
                        await self.agents.spawn(config, config_file=str(path))
                    except AgentError as exc:
                        if self.cluster is None:
                            raise
                        log.info("not spawning %s here: %s", config.name, exc)  # it runs in another kernel
        if self.cluster is not None:
            self.cluster.run()
        await self.db.booted()
        log.info("kernel started on %s", self.database_url)
        self._log_handler.flush_held()

    def close(self) -> None:
        """Stop agents and tasks, flush every write, exit modules, close the database."""
        if self.loop is None or self._thread is None:
            return
        if self.is_running:
            self.call(self._teardown())
        self._stop_loop()

    async def _teardown(self) -> None:
        try:
            if self._log_handler is not None:
                self._log_handler.flush_held()  # a boot that failed half-way still logs what it did
            if self.cluster is not None:
                await self.cluster.halt()
            await self.agents.stop_all()
            await self.tasks.shutdown()
            await self.modules.unload_all()
            await self.writer.close()
            if self.cluster is not None:
                await self.cluster.leave()  # after the last write: the next kernel reads all of it
        finally:
            self.is_running = False
            if self._log_handler is not None:
                from tobio import logs

                logs.uninstall(self._log_handler)
            await asyncio.to_thread(self.db.close)

    def _stop_loop(self) -> None:
        assert self.loop is not None and self._thread is not None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop = None
        self._thread = None

    def __enter__(self) -> Kernel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- crossing into the kernel's loop ---------------------------------------------------------
    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule `coro` on the kernel's loop from any thread."""
        if self.loop is None:
            coro.close()
            raise TobioError("kernel is not started")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the kernel's loop and wait for it (not from the loop itself)."""
        if self.in_kernel_thread():
            coro.close()
            raise TobioError("kernel.call() would deadlock on the kernel's own loop; await the coroutine instead")
        return self.submit(coro).result(timeout)

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the kernel's loop from any event loop."""
        if self.in_kernel_thread():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def in_kernel_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    # -- commands --------------------------------------------------------------------------------
    def run(self, line: str, *, caller: Principal | str | None = None, emit: Callable[[Any], None] | None = None) -> Result:
        """Run one command line and return its Result; raises TobioError with a clear message.

        `caller`: who typed it, handed over by the front end: a Principal, None for the local person,
        or an agent's name (always an agent: no name makes a caller privileged)."""
        return self.call(self.execute(line, caller=caller, emit=emit))

    async def arun(self, line: str, *, caller: Principal | str | None = None,
                   emit: Callable[[Any], None] | None = None) -> Result:
        """Async `run`, from any loop."""
        return await self.acall(self.execute(line, caller=caller, emit=emit))

    async def execute(self, line: str, *, caller: Principal | str | None = None,
                      emit: Callable[[Any], None] | None = None) -> Result:
        """Parse and run `line` on the kernel's loop, as `caller` (see `run`)."""
        principal = principal_of(self, caller)
        invocation = await aresolve(self.commands, line)  # a long line is parsed off the loop
        if invocation is None:
            return Result()
        node = invocation.node
        if invocation.help:
            return Result(text=node.help_text())
        if isinstance(node, Group):
            return Result(text=node.help_text(), enter=node)
        assert isinstance(node, Command)
        if not principal.allowed(RUN, node.path):
            allowed = getattr(principal, "whitelist", [])
            log.warning("agent %s was refused command %r (not in its whitelist)", principal.name, node.path)
            raise CommandError(f"agent '{principal.name}' may not run '{node.path}' (allowed: {', '.join(allowed) or 'nothing'})")
        ctx = Context(kernel=self, caller=principal, emit_fn=emit)
        try:
            out = await node.invoke(ctx, invocation.kwargs)
        except TobioError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("command %r failed", line)
            raise CommandError(f"{node.path}: {type(exc).__name__}: {exc}") from exc
        if out is None:
            return Result()
        if isinstance(out, Result):
            return out
        return Result(text=str(out))

    # -- messaging shortcuts ---------------------------------------------------------------------
    async def post(self, channel: str, content: str, **kwargs: Any) -> Message:
        """Post on the kernel's loop (see Transport.post)."""
        return await self.acall(self.transport.post(channel, content, **kwargs))

    def post_sync(self, channel: str, content: str, **kwargs: Any) -> Message:
        return self.call(self.transport.post(channel, content, **kwargs))

    async def flush(self) -> None:
        """Wait until every write so far is durable."""
        await self.acall(self.writer.flush())
