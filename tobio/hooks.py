"""Every extension point of Tobio, in one file: what a module can add to the kernel, and its type.

A module adds to a point with `kernel.hooks.add(POINT, value)` in `module_init`, or declares a method
with `@implements(POINT)`. Either way the module manager records the module as the owner, so unloading
it, or a failed `module_init`, removes everything it added: hooks, commands, tasks, agent and provider
types. No core file lists modules; `mod info NAME` shows what one registered.

Points are typed: `hooks.add(PROMPT, fn)` is checked by mypy against `PromptStep`.
"""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tobio.errors import TobioError

if TYPE_CHECKING:
    from tobio.agents.base import Agent
    from tobio.agents.sandbox import Scope
    from tobio.db.history import ThreadContext
    from sqlalchemy.engine import Connection

    from tobio.kernel import Kernel
    from tobio.memory.items import Item
    from tobio.messages import Delivery, Message
    from tobio.modules import Module
    from tobio.persona.prompt import Prompt
    from tobio.providers.base import Provider
    from tobio.replay import Snapshot

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Point(Generic[T]):
    """One extension point. `keyed` points hold one value per key (a type name, a table, a source)."""

    name: str
    doc: str
    keyed: bool = False

    def __repr__(self) -> str:
        return f"<hook point {self.name}>"


# -- the points -------------------------------------------------------------------------------------
ShouldAnswer = Callable[["Agent", "Delivery"], Awaitable["bool | None"]]
PromptStep = Callable[["Prompt"], Awaitable[None]]
HistorySource = Callable[["Agent", int], Awaitable["ThreadContext"]]
MessageObserver = Callable[["Message"], None]
ReplayStep = Callable[["Snapshot"], Awaitable[None]]
CompletionSource = Callable[["Kernel"], list[tuple[str, str]]]
MemorySource = Callable[["Connection", int, str], list[tuple["Item", Any]]]

SHOULD_ANSWER: Point[ShouldAnswer] = Point(
    "should_answer", "May this agent answer this delivery? True/False decides (first opinion wins); None: no opinion.")
PROMPT: Point[PromptStep] = Point(
    "prompt", "Edit an LLM agent's Prompt in place before each reply; lower `order` runs first.")
HISTORY_SOURCE: Point[HistorySource] = Point(
    "history_source", "The summary and messages a prompt starts from, instead of the thread's newest N; the last added wins.")
ON_MESSAGE: Point[MessageObserver] = Point(
    "on_message", "Called on the kernel's loop for every durable message on any channel; queue work, do not await.")
REPLAY: Point[ReplayStep] = Point(
    "replay", "Add what a module knew at time T to an `agent replay` snapshot.")
COMPLETION_SOURCE: Point[CompletionSource] = Point(
    "completion_source", "Values (and a note each) for arguments declared with `complete=KEY`.", keyed=True)
SQL_SCOPE: Point[Scope] = Point(
    "sql_scope", "Which rows of table KEY an agent's `sql` may read; tables nobody scopes read as empty.", keyed=True)
MEMORY_SOURCE: Point[MemorySource] = Point(
    "memory_source", "Memory items of kind KEY (with vectors) an agent's recall loads back: (conn, agent_id, embed model).",
    keyed=True)
AGENT_TYPE: Point[type[Agent]] = Point(
    "agent_type", "A spawnable agent class, keyed by the `type:` agent files give.", keyed=True)
PROVIDER_TYPE: Point[type[Provider]] = Point(
    "provider_type", "A model back end class, keyed by the `type:` provider entries give.", keyed=True)

LAST = 1000
"""The `order` of a PROMPT step that must see what every other step added (memory fits it all to budget)."""

POINTS: tuple[Point[Any], ...] = (SHOULD_ANSWER, PROMPT, HISTORY_SOURCE, ON_MESSAGE, REPLAY, COMPLETION_SOURCE,
                                  SQL_SCOPE, MEMORY_SOURCE, AGENT_TYPE, PROVIDER_TYPE)
"""Commands are the tenth point: `kernel.commands.command(...)` / `.group(...)`, owned the same way."""


# -- owners -----------------------------------------------------------------------------------------
_owner: contextvars.ContextVar[Module | None] = contextvars.ContextVar("tobio_hook_owner", default=None)


def current_owner() -> Module | None:
    """The module whose `module_init` is running (in this task or one it started), if any."""
    return _owner.get()


@contextmanager
def owned_by(module: Module | None) -> Iterator[None]:
    """Registrations in this block (and in tasks it starts) belong to `module` unless they name an owner."""
    token = _owner.set(module)
    try:
        yield
    finally:
        _owner.reset(token)


def implements(point: Point[Any], *, key: str | None = None, order: int = 0) -> Callable[[T], T]:
    """Mark a module method as an implementation of `point`; the manager adds it (bound) at load."""

    def mark(fn: T) -> T:
        marks: list[tuple[Point[Any], str | None, int]] = getattr(fn, "__tobio_hooks__", [])
        setattr(fn, "__tobio_hooks__", [*marks, (point, key, order)])
        return fn

    return mark


# -- the registry -----------------------------------------------------------------------------------
@dataclass(eq=False)
class Registration(Generic[T]):
    """One value added to one point: who added it, in which order it runs."""

    point: Point[T]
    value: T
    owner: Module | None
    key: str | None = None
    order: int = 0
    seq: int = 0

    def describe(self) -> str:
        value: Any = self.value
        name = (getattr(value, "__qualname__", None) or type(value).__name__).replace(".<locals>", "")
        return f"{self.point.name}[{self.key}]" if self.key is not None else f"{self.point.name}: {name}"


@dataclass
class Hooks:
    """The kernel's registry of extension points (see the module docstring)."""

    _entries: list[Registration[Any]] = field(default_factory=list)
    _cache: dict[Point[Any], tuple[Any, ...]] = field(default_factory=dict)
    _seq: Iterator[int] = field(default_factory=itertools.count)

    def add(self, point: Point[T], value: T, *, key: str | None = None, order: int = 0,
            owner: Module | None = None) -> Registration[T]:
        """Add `value` to `point`; the owner is the module being initialised unless given. An agent
        type's key defaults to its `type_name`."""
        if point.keyed and key is None:
            key = getattr(value, "type_name", None) or None
        if point.keyed and not key:
            raise TobioError(f"hook point {point.name} needs a key")
        holder = next((r for r in self._entries if r.point is point and r.key == key), None) if point.keyed else None
        if holder is not None:
            who = f"module '{holder.owner.name}'" if holder.owner is not None else "the kernel"
            raise TobioError(f"{point.name} '{key}' is already registered by {who}")
        entry = Registration(point, value, owner if owner is not None else current_owner(), key, order, next(self._seq))
        self._entries.append(entry)
        self._cache.pop(point, None)
        return entry

    def get(self, point: Point[T]) -> tuple[T, ...]:
        """The values of `point`, by `order`, then in the order they were added. Cached: this is a hot path."""
        found = self._cache.get(point)
        if found is None:
            entries = sorted((r for r in self._entries if r.point is point), key=lambda r: (r.order, r.seq))
            found = self._cache[point] = tuple(r.value for r in entries)
        return found

    def keyed(self, point: Point[T]) -> dict[str, T]:
        """A keyed point's values by key."""
        return {r.key: r.value for r in self._entries if r.point is point and r.key is not None}

    def lookup(self, point: Point[T], key: str) -> T | None:
        return next((r.value for r in self._entries if r.point is point and r.key == key), None)

    def remove(self, entry: Registration[Any]) -> None:
        if entry in self._entries:
            self._entries.remove(entry)
            self._cache.pop(entry.point, None)

    def of(self, owner: Module) -> list[Registration[Any]]:
        """Everything `owner` added, in the order it did."""
        return [r for r in self._entries if r.owner is owner]

    def forget(self, owner: Module) -> None:
        """Drop everything `owner` added (its module is being unloaded or failed to initialise)."""
        for entry in self.of(owner):
            self.remove(entry)
