"""Every extension point of Tobio, in one file: what a module can add to the kernel, and its type.

A module adds to a point with `kernel.hooks.add(POINT, value)` in `module_init`, or declares a method
with `@implements(POINT)`. Either way the module manager records the module as the owner, so unloading
it, or a failed `module_init`, removes everything it added: hooks, commands, tasks, agent and provider
types. No core file lists modules; `mod info NAME` shows what one registered.

Points are typed: `hooks.add(PROMPT, fn)` is checked by mypy against `PromptStep`. Each point also says
how it is called (`Rule`) and what an implementation's exception does (`OnError`), and callers go through
`Hooks.first / last / each / notify / collect`, which apply both: no call site decides them.
"""

from __future__ import annotations

import contextvars
import enum
import inspect
import itertools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from tobio.errors import TobioError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from tobio.agents.base import Agent
    from tobio.agents.sandbox import Scope
    from tobio.branching.fork import Fork
    from tobio.db.history import ThreadContext
    from tobio.kernel import Kernel
    from tobio.memory.items import Item
    from tobio.messages import Delivery, Message
    from tobio.modules import Module
    from tobio.providers.base import Provider
    from tobio.replay import Snapshot
    from tobio.swipes.service import Swiped
    from tobio.turn.character import Character
    from tobio.turn.events import Event
    from tobio.turn.prompt import Prompt
    from tobio.turn.reply import Reply

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


class Rule(enum.Enum):
    """How a point's implementations are called: declared once, on the point (pluggy's `firstresult`)."""

    FIRST = "first answer"  # in order until one returns something other than None: that is the answer
    LAST = "last wins"  # only the implementation added last is called (it replaces the default)
    EACH = "all in order"  # every implementation, in `order`, each seeing what the earlier ones did
    COLLECT = "collect"  # every implementation; their results, in order
    LOOKUP = "by key"  # never called by the kernel: a value looked up by its key (types, scopes)


class OnError(enum.Enum):
    """What an implementation's exception does."""

    ISOLATE = "isolate"  # logged with the owning module's name; the others (and the turn) go on without it
    FAIL = "fail"  # raised to the caller: the turn fails


@dataclass(frozen=True, eq=False)
class Point(Generic[T]):
    """One extension point: its name, its help line, how it is called and what an error does.
    `keyed` points hold one value per key (a type name, a table, a source)."""

    name: str
    doc: str
    rule: Rule = Rule.EACH
    on_error: OnError = OnError.ISOLATE
    keyed: bool = False

    def __repr__(self) -> str:
        return f"<hook point {self.name}>"


# -- the points -------------------------------------------------------------------------------------
# In the order of a turn: should-answer, history source, prompt steps, (generate: the model's provider
# type), reply filters, (post), events. Then the kernel's own points.
ShouldAnswer = Callable[["Agent", "Delivery"], Awaitable["bool | None"]]
HistorySource = Callable[["Agent", int], Awaitable["ThreadContext"]]
PromptStep = Callable[["Prompt"], Awaitable[None]]
ReplyFilter = Callable[["Reply"], Awaitable[None]]
EventObserver = Callable[["Event"], Awaitable[None]]
MessageObserver = Callable[["Message"], None]
ReplayStep = Callable[["Snapshot"], Awaitable[None]]
ForkStep = Callable[["Connection", "Fork"], None]
ForkedObserver = Callable[["Fork"], Awaitable[None]]
CompletionSource = Callable[["Kernel"], list[tuple[str, str]]]
MemorySource = Callable[["Connection", int, str], list[tuple["Item", Any]]]
CharacterSource = Callable[[], list[tuple[str, "Character"]]]
EmbeddedObserver = Callable[[list["Message"], list[list[float]]], None]
SwipeObserver = Callable[["Swiped"], Awaitable[None]]
RecallBias = Callable[[int, Any], Any]  # (agent id, candidates' vectors (n, d)) -> a score to add to each (n,)

SHOULD_ANSWER: Point[ShouldAnswer] = Point(
    "should_answer", "May this agent answer this delivery? True/False decides; None: no opinion.", Rule.FIRST)
HISTORY_SOURCE: Point[HistorySource] = Point(
    "history_source", "The summary and messages a prompt starts from, instead of the thread's newest N.", Rule.LAST)
PROMPT: Point[PromptStep] = Point(
    "prompt", "Edit an LLM agent's Prompt in place before each reply; lower `order` runs first.", Rule.EACH)
REPLY_FILTER: Point[ReplyFilter] = Point(
    "reply_filter", "Check or change a generated reply before it is posted (after the agent type's own filters).",
    Rule.EACH)
EVENT: Point[EventObserver] = Point(
    "event", "Told what happened (a reply posted, a summary written), after it is durable.", Rule.EACH)
ON_MESSAGE: Point[MessageObserver] = Point(
    "on_message", "Called on the kernel's loop for every durable message on any channel; queue work, do not await.",
    Rule.EACH)
REPLAY: Point[ReplayStep] = Point(
    "replay", "Add what a module knew at time T to an `agent replay` snapshot.", Rule.EACH)
FORK: Point[ForkStep] = Point(
    "fork", "Carry the rows a module's REPLAY reads, as they stood at the fork point, from an agent to its fork: "
    "(conn, fork) on the DB thread, inside the fork's one transaction; an error undoes the whole fork.",
    Rule.COLLECT, OnError.FAIL)
FORKED: Point[ForkedObserver] = Point(
    "forked", "Told a fork is committed (before the new agent starts): load what is cached per agent.", Rule.EACH)
MEMORY_SOURCE: Point[MemorySource] = Point(
    "memory_source", "Memory items of kind KEY (with vectors) an agent's recall loads back: (conn, agent_id, embed model).",
    Rule.COLLECT, keyed=True)
EMBEDDED: Point[EmbeddedObserver] = Point(
    "embedded", "Told each batch of live messages memory embedded, with their vectors (reuse them: no second "
    "embedding); on the kernel's loop, do not await.", Rule.EACH)
RECALL_BIAS: Point[RecallBias] = Point(
    "recall_bias", "A bounded score added to each memory candidate of an agent's recall, from its vector "
    "(emotion: mood-congruent recall); plain functions, summed.", Rule.COLLECT)
CHARACTERS: Point[CharacterSource] = Point(
    "characters", "The characters a module keeps by key (the persona registry's current personas), for commands "
    "that list what characters carry (their cards' lorebooks).", Rule.COLLECT)
COMPLETION_SOURCE: Point[CompletionSource] = Point(
    "completion_source", "Values (and a note each) for arguments declared with `complete=KEY`.", Rule.LOOKUP, keyed=True)
SQL_SCOPE: Point[Scope] = Point(
    "sql_scope", "Which rows of table KEY an agent's `sql` may read; tables nobody scopes read as empty.", Rule.LOOKUP,
    keyed=True)
AGENT_TYPE: Point[type[Agent]] = Point(
    "agent_type", "A spawnable agent class, keyed by the `type:` agent files give.", Rule.LOOKUP, keyed=True)
SWIPED: Point[SwipeObserver] = Point(
    "swiped", "Told that messages left or came back to agents' histories (a swipe, an edit): drop or reload what "
    "was cached from them; the agent's own state is already the chosen reply's.", Rule.EACH)
PROVIDER_TYPE: Point[type[Provider]] = Point(
    "provider_type", "A model back end class, keyed by the `type:` provider entries give.", Rule.LOOKUP, keyed=True)

LAST = 1000
"""The `order` of a PROMPT step that must see what every other step added (memory fits it all to budget)."""
FIRST = -10_000
"""The `order` of the turn-start snapshot a retry goes back to: before any step changes the state (lore's timers)."""

POINTS: tuple[Point[Any], ...] = (SHOULD_ANSWER, HISTORY_SOURCE, PROMPT, REPLY_FILTER, EVENT, ON_MESSAGE, REPLAY, FORK, FORKED,
                                  MEMORY_SOURCE, EMBEDDED, RECALL_BIAS, CHARACTERS, COMPLETION_SOURCE, SQL_SCOPE, AGENT_TYPE, PROVIDER_TYPE,
                                  SWIPED)
"""Commands are one more: `kernel.commands.command(...)` / `.group(...)`, owned the same way."""


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
    """The kernel's registry of extension points (see the module docstring).

    Calls go through `first`, `last`, `each`, `notify` and `collect`, which apply the point's rule and
    its error policy, so no call site decides them: a PROMPT step that raises is logged with its module's
    name and the reply goes on without it."""

    _entries: list[Registration[Any]] = field(default_factory=list)
    _cache: dict[Point[Any], tuple[Registration[Any], ...]] = field(default_factory=dict)
    _seq: Iterator[int] = field(default_factory=itertools.count)
    failures: Counter[str] = field(default_factory=Counter)  # "point:module" -> isolated errors, for `mod info` and tests

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

    def _of_point(self, point: Point[Any]) -> tuple[Registration[Any], ...]:
        """Registrations of `point` by `order`, then as added. Cached: turns and posts read it."""
        found = self._cache.get(point)
        if found is None:
            found = self._cache[point] = tuple(sorted((r for r in self._entries if r.point is point),
                                                      key=lambda r: (r.order, r.seq)))
        return found

    def get(self, point: Point[T]) -> tuple[T, ...]:
        """The values of `point` in call order, to inspect (tests, `mod info`); to call them use the methods
        below, which apply the point's rule."""
        return tuple(r.value for r in self._of_point(point))

    def _failed(self, entry: Registration[Any]) -> None:
        """An implementation raised: re-raise for a FAIL point, else log it under its module's name."""
        point = entry.point
        who = f"module '{entry.owner.name}'" if entry.owner is not None else "the kernel"
        if point.on_error is OnError.FAIL:
            raise
        self.failures[f"{point.name}:{entry.owner.name if entry.owner is not None else '-'}"] += 1
        log.exception("%s hook %s of %s failed; going on without it", point.name, entry.describe(), who)

    @staticmethod
    def _expect(point: Point[Any], rule: Rule) -> None:
        if point.rule is not rule:
            raise TobioError(f"hook point {point.name} is called '{point.rule.value}', not '{rule.value}'")

    async def first(self, point: Point[Callable[P, Awaitable[R | None]]], *args: P.args, **kwargs: P.kwargs) -> R | None:
        """FIRST: the first answer other than None (None when nobody has an opinion)."""
        self._expect(point, Rule.FIRST)
        for entry in self._of_point(point):
            try:
                answer: R | None = await entry.value(*args, **kwargs)
            except Exception:
                self._failed(entry)
                continue
            if answer is not None:
                return answer
        return None

    async def last(self, point: Point[Callable[P, Awaitable[R]]], *args: P.args, **kwargs: P.kwargs) -> R | None:
        """LAST: what the implementation added last returns; None when there is none (or it failed and the
        point isolates errors): the caller's default applies."""
        self._expect(point, Rule.LAST)
        entries = self._of_point(point)
        if not entries:
            return None
        entry = entries[-1]
        try:
            result: R = await entry.value(*args, **kwargs)
        except Exception:
            self._failed(entry)
            return None
        return result

    def has(self, point: Point[Any]) -> bool:
        """Whether anything implements `point` (a LAST point's caller may skip building its default)."""
        return bool(self._of_point(point))

    async def each(self, point: Point[Callable[P, Awaitable[None]]], *args: P.args, **kwargs: P.kwargs) -> None:
        """EACH (async): every implementation in order."""
        self._expect(point, Rule.EACH)
        for entry in self._of_point(point):
            try:
                await entry.value(*args, **kwargs)
            except Exception:
                self._failed(entry)

    def notify(self, point: Point[Callable[P, None]], *args: P.args, **kwargs: P.kwargs) -> None:
        """EACH (plain functions, e.g. ON_MESSAGE observers, which must not await): every one in order."""
        self._expect(point, Rule.EACH)
        for entry in self._of_point(point):
            try:
                result = entry.value(*args, **kwargs)
                if inspect.isawaitable(result):  # an async observer by mistake: it would never run
                    if inspect.iscoroutine(result):
                        result.close()
                    raise TobioError(f"{entry.describe()} is async; {point.name} implementations are plain functions")
            except Exception:
                self._failed(entry)

    def collect(self, point: Point[Callable[P, R]], *args: P.args, **kwargs: P.kwargs) -> list[R]:
        """COLLECT (plain functions, callable from a database thread): every implementation's result, in order."""
        self._expect(point, Rule.COLLECT)
        out: list[R] = []
        for entry in self._of_point(point):
            try:
                out.append(entry.value(*args, **kwargs))
            except Exception:
                self._failed(entry)
        return out

    def keyed(self, point: Point[T]) -> dict[str, T]:
        """A keyed point's values by key."""
        return {r.key: r.value for r in self._entries if r.point is point and r.key is not None}

    def lookup(self, point: Point[T], key: str) -> T | None:
        """LOOKUP: the value registered under `key`, if any."""
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
