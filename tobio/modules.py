"""Modules, modelled on Linux LKMs: a name, the module *types* they need, `module_init`, `module_exit`.

A dependency is a module class; any loaded (or loadable) subclass satisfies it, so `Memory` can say
it needs `DatabaseModule` without naming an implementation. Dependencies load first, otherwise the order
given holds (graphlib finds cycles); exit runs in reverse. A module is *in use* while live agents are of
an agent type it added, or another module holds something built from what it added (a model on its
provider type): unloading it is then refused with one line naming the users, as `rmmod` says "in use".
`optional_dependencies` are Linux's soft dependencies: loaded first when they are being loaded too,
never loaded for the module, and free to be unloaded under it (look them up with `get`, expect None).
What a module registers (tobio/hooks.py, commands, tasks) is owned by it and removed with it.
Third-party modules are found through the `tobio.modules` entry-point group; `TOBIO_LOAD_PLUGINS`
(comma-separated names, or empty for none) limits which entry points are read.
"""

from __future__ import annotations

import graphlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from tobio.errors import ModuleError
from tobio.hooks import AGENT_TYPE, Point, Registration, owned_by

if TYPE_CHECKING:
    from tobio.kernel import Kernel

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "tobio.modules"
M = TypeVar("M", bound="Module")
A = TypeVar("A")


class Module:
    """Base class. Subclasses set `name`, `dependencies` and override the two hooks."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    dependencies: ClassVar[tuple[type[Module], ...]] = ()
    optional_dependencies: ClassVar[tuple[type[Module], ...]] = ()  # ordered first if loaded; may be absent
    core: ClassVar[bool] = False  # core modules cannot be unloaded
    Settings: ClassVar[type[BaseModel] | None] = None  # its `settings:` section in kernel.yaml, if any
    settings: Any = None  # the validated Settings, set before module_init

    async def module_init(self, kernel: Kernel) -> None:
        """Register hooks and commands (owned by this module without saying so); acquire resources."""

    async def module_exit(self, kernel: Kernel) -> None:
        """Release what module_init acquired. Hooks, commands and tasks it registered are removed for it."""

    def holds(self, kernel: Kernel, added: list[Registration[Any]]) -> list[str]:
        """What this module holds that was built from `added` (another module's registrations, which is
        being unloaded), one phrase each, e.g. "model m (provider e, type echo)": any makes it in use."""
        return []

    async def release(self, kernel: Kernel, added: list[Registration[Any]]) -> None:
        """Let go of what `holds` names (`mod unload --force`), so that no call reaches the leaving module."""


def on_first_call(build: Callable[[], Callable[[A], Awaitable[None]]]) -> Callable[[A], Awaitable[None]]:
    """A hook that `build`s its implementation when first called, for a `build` that imports the implementation's
    file: a module registers its turn, replay, fork and swipe hooks at every start, and a start that fires
    none of them (`tobio-shell -c "agent ls"`) then imports none of their files. Named after `build`."""
    built: list[Callable[[A], Awaitable[None]]] = []

    async def call(arg: A) -> None:
        if not built:
            built.append(build())
        await built[0](arg)

    call.__qualname__ = call.__name__ = build.__name__
    return call


class DatabaseModule(Module):
    """The kernel's database, as a module type others can depend on (always loaded)."""

    name = "database"
    description = "SQL storage of every message, push, step, summary, log line and state."
    core = True


def _entry_point_modules() -> dict[str, type[Module]]:
    from tobio.plugins import plugin_entry_points

    found: dict[str, type[Module]] = {}
    for ep in plugin_entry_points(ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not stop the kernel
            log.error("module entry point %s (%s) failed to import: %s", ep.name, ep.value, exc)
            continue
        if isinstance(cls, type) and issubclass(cls, Module):
            found[cls.name or ep.name] = cls
        else:
            log.error("entry point %s does not name a Module subclass", ep.name)
    return found


class ModuleManager:
    """Knows the available modules, loads them in dependency order and refuses unsafe unloads."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.available: dict[str, type[Module]] = {"database": DatabaseModule}
        self.loaded: dict[str, Module] = {}
        self._discovered = False

    def discover(self) -> None:
        """Read the entry-point group once."""
        if not self._discovered:
            for name, cls in _entry_point_modules().items():
                self.available.setdefault(name, cls)
            self._discovered = True

    def register(self, cls: type[Module]) -> None:
        """Make a module class loadable by name (for code that defines modules in-process)."""
        if not cls.name:
            raise ModuleError(f"{cls.__qualname__} has no name")
        self.available[cls.name] = cls

    # -- resolution ----------------------------------------------------------------------------
    def provider_of(self, dep: type[Module], wanted_by: str) -> str:
        """The module name that satisfies dependency type `dep`: a loaded one first, else the only candidate."""
        for name, module in self.loaded.items():
            if isinstance(module, dep):
                return name
        candidates = [n for n, cls in self.available.items() if issubclass(cls, dep)]
        exact = [n for n in candidates if self.available[n] is dep]
        if len(candidates) == 1 or exact:
            return (exact or candidates)[0]
        if not candidates:
            raise ModuleError(
                f"module '{wanted_by}' needs a module of type {dep.__name__}, and none is available "
                f"(available: {', '.join(sorted(self.available))})"
            )
        raise ModuleError(
            f"module '{wanted_by}' needs a {dep.__name__}; several provide one ({', '.join(sorted(candidates))}): "
            f"load the one you want first"
        )

    def dependency_names(self, name: str) -> list[str]:
        cls = self.available[name]
        return [self.provider_of(dep, name) for dep in cls.dependencies]

    def optional_names(self, name: str, among: Iterable[str]) -> list[str]:
        """The soft dependencies of `name` that are loaded or in `among` (being loaded with it)."""
        present = set(self.loaded) | set(among)
        return [n for dep in self.available[name].optional_dependencies for n in sorted(present)
                if n in self.available and issubclass(self.available[n], dep) and n != name]

    def get(self, cls: type[M]) -> M | None:
        """The loaded module of type `cls` (a subclass counts), or None: typed, unlike a name lookup."""
        return next((m for m in self.loaded.values() if isinstance(m, cls)), None)

    def need(self, cls: type[M], wanted_by: str = "this") -> M:
        """Like `get`, but a missing module is a clear error naming what to load."""
        module = self.get(cls)
        if module is None:
            raise ModuleError(f"{wanted_by} needs the {cls.name or cls.__name__} module: `mod load {cls.name}`")
        return module

    def load_order(self, names: Iterable[str]) -> list[str]:
        """All modules needed for `names`, dependencies first, otherwise in the order given. Raises on
        unknown names and cycles."""
        self.discover()
        names = list(names)
        graph: dict[str, list[str]] = {}
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in graph:
                continue
            if name not in self.available:
                raise ModuleError(f"no module named '{name}' (available: {', '.join(sorted(self.available))})")
            graph[name] = self.dependency_names(name)
            todo.extend(graph[name])
        for name in graph:  # soft dependencies order, never add
            graph[name] = graph[name] + [n for n in self.optional_names(name, graph) if n in graph]
        try:
            graphlib.TopologicalSorter(graph).prepare()
        except graphlib.CycleError as exc:
            cycle = exc.args[1]
            raise ModuleError(f"dependency cycle: {' -> '.join(reversed(cycle))}") from None
        order: list[str] = []  # depth-first from the names in the order given: kernel.yaml's order holds

        def visit(name: str) -> None:
            if name not in order:
                for dep in graph[name]:
                    visit(dep)
                order.append(name)

        for name in names:
            visit(name)
        return order

    def dependants(self, name: str) -> list[str]:
        """Loaded modules that need `name`, directly or not, in the order they must be unloaded."""
        needed_by: dict[str, set[str]] = {n: set() for n in self.loaded}
        for other in self.loaded:
            for dep in self.dependency_names(other):
                needed_by.setdefault(dep, set()).add(other)
        found: list[str] = []
        todo = [name]
        while todo:
            for user in sorted(needed_by.get(todo.pop(), ())):
                if user not in found:
                    found.append(user)
                    todo.append(user)
        order = list(graphlib.TopologicalSorter({n: self.dependency_names(n) for n in found}).static_order())
        return [n for n in reversed(order) if n in found]

    # -- load / unload -------------------------------------------------------------------------
    async def load(self, *names: str) -> list[str]:
        """Load `names` and whatever they need; returns the modules newly loaded."""
        done = []
        for name in self.load_order(names):
            if name in self.loaded:
                continue
            module = self.available[name]()
            module.settings = self._settings(name, module)
            try:
                with owned_by(module):
                    self._add_declared_hooks(module)
                    await module.module_init(self.kernel)
            except Exception as exc:
                await self.forget(module)
                raise ModuleError(f"module '{name}' failed to initialise: {exc}") from exc
            self.loaded[name] = module
            done.append(name)
            log.info("loaded module %s", name)
        return done

    def _add_declared_hooks(self, module: Module) -> None:
        """Methods marked `@implements(POINT)` on the module's class, added bound to it."""
        for attr in dir(type(module)):
            marks: list[tuple[Point[Any], str | None, int]] = getattr(getattr(type(module), attr, None), "__tobio_hooks__", [])
            for point, key, order in marks:
                self.kernel.hooks.add(point, getattr(module, attr), key=key, order=order, owner=module)

    async def forget(self, module: Module) -> None:
        """Remove everything `module` registered: hooks, commands, and its tasks (cancelled)."""
        kernel = self.kernel
        kernel.hooks.forget(module)
        kernel.commands.remove_owned_by(module)
        await kernel.tasks.cancel_owned(module)

    def registered_by(self, module: Module) -> list[tuple[str, str]]:
        """(kind, what) for everything `module` registered, for `mod info`."""
        kernel = self.kernel
        rows = [("hook", r.describe()) for r in kernel.hooks.of(module)]
        rows += [("command", n.path) for n in kernel.commands.walk() if n.owner is module]
        rows += [("task", f"{t.id} {t.name}") for t in kernel.tasks.list() if kernel.tasks.owned(t, module)]
        return rows

    def check_settings_names(self) -> None:
        """A `settings:` section must name a module this kernel knows: a typo would otherwise be ignored."""
        self.discover()
        for name in self.kernel.config.settings:
            if name not in self.available:
                import difflib  # only to name the likely module: not at every start

                close = difflib.get_close_matches(name, list(self.available), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"modules: {', '.join(sorted(self.available))}"
                raise ModuleError(f"kernel.yaml settings.{name}: no module named '{name}' ({hint})")

    def _settings(self, name: str, module: Module) -> Any:
        raw = self.kernel.config.settings.get(name, {})
        if module.Settings is None:
            if raw:
                raise ModuleError(f"module '{name}' takes no settings, but kernel.yaml has settings.{name}")
            return None
        try:
            return module.Settings.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"settings.{name}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
            raise ModuleError(f"bad settings for module '{name}': {problems}") from None

    # -- use ---------------------------------------------------------------------------------------
    def agents_using(self, name: str) -> dict[str, list[str]]:
        """Agent type -> the live agents of that type, for the agent types module `name` added."""
        module = self.loaded[name]
        types = {r.key: r.value for r in self.kernel.hooks.of(module) if r.point is AGENT_TYPE and r.key is not None}
        found: dict[str, list[str]] = {}
        for agent in self.kernel.agents.live.values():
            for key, cls in types.items():
                if type(agent) is cls:  # spawned from exactly this registration (a subclass is another type)
                    found.setdefault(key, []).append(agent.name)
                    break
        return found

    def in_use(self, name: str) -> list[str]:
        """What uses module `name` through what it added (not through dependencies): live agents of its agent
        types, and what other loaded modules built from its registrations. Empty when it may go."""
        uses = [f"{'agents' if len(agents) > 1 else 'agent'} {', '.join(agents)} (type {kind})"
                for kind, agents in self.agents_using(name).items()]
        added = self.kernel.hooks.of(self.loaded[name])
        for other, module in self.loaded.items():
            if other != name:
                uses += module.holds(self.kernel, added)
        return uses

    async def _stop_users(self, name: str) -> None:
        """`--force`: kill the agents of its types and have the other modules release what they hold."""
        for agents in self.agents_using(name).values():
            for agent in agents:
                await self.kernel.agents.kill(agent)
                log.warning("killed agent %s: module %s is being unloaded (--force)", agent, name)
        added = self.kernel.hooks.of(self.loaded[name])
        for other, module in list(self.loaded.items()):
            if other != name:
                await module.release(self.kernel, added)

    # -- unload ------------------------------------------------------------------------------------
    async def unload(self, name: str, force: bool = False) -> list[str]:
        """Unload `name`. Refused while modules need it or something uses it; with force, its dependants go
        first (reverse order) and its users are stopped. Returns what was unloaded."""
        if name not in self.loaded:
            raise ModuleError(f"module '{name}' is not loaded")
        if self.loaded[name].core:
            raise ModuleError(f"module '{name}' is part of the kernel and cannot be unloaded")
        users = self.dependants(name)
        if users and not force:
            raise ModuleError(
                f"module '{name}' is used by {', '.join(users)}; unload those first or use --force"
            )
        order = users + [name]
        if not force:
            uses = self.in_use(name)
            if uses:
                raise ModuleError(f"mod unload {name}: in use by {'; '.join(uses)} (--force stops them)")
        for victim in order:
            if force:
                await self._stop_users(victim)
            await self._exit(victim)
            log.info("unloaded module %s", victim)
        return order

    async def unload_all(self) -> None:
        """Exit every module in reverse load order (kernel shutdown)."""
        for name in reversed(list(self.loaded)):
            try:
                await self._exit(name)
            except Exception as exc:  # keep shutting the rest down
                log.error("module %s failed to exit: %s", name, exc)

    async def _exit(self, name: str) -> None:
        """Unhook `name`, run its module_exit, and remove what it registered even if that fails."""
        module = self.loaded[name]
        self.kernel.hooks.forget(module)  # no new calls into a module while it exits
        try:
            await module.module_exit(self.kernel)
        finally:
            await self.forget(module)
            del self.loaded[name]
