"""The prompt hook: World Info for one persona reply, placed where SillyTavern would, and recorded.

Books in play: those attached to the thread's channel, then the persona's own `character_book`, then
those attached to the agent (SillyTavern's chat lore first, then character lore). Entries that
always fire at a system-prompt position (`constant`, `@@activate`) go into the system prompt, which
stays the same turn to turn; keyword-triggered ones go next to the newest message (`@@depth`/at-depth
entries at their depth and role), so the stable prefix of the prompt is not disturbed.

What fired goes into `prompt.notes["lore"]`; for a real turn (an incoming message) it is recorded as a
`lore` step of the run that answered, once the reply is posted (the transport observer below), and
sticky/cooldown state is kept per thread in the agent's module state.

The engine and the book schema are imported when a prompt first has books to scan: a start registers
the hook without them.
"""

from __future__ import annotations

import copy
import logging
import random
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.migrations import utcnow
from tobio.db.tables import PushRow, StepRow
from tobio.messages import Message
from tobio.models.module import models_of
from tobio.models.runs import STEP_COLUMNS
from tobio.turn.agent import TurnAgent
from tobio.turn.placement import NEXT_TO_NEWEST, Injection

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.lore.engine import Activation, Engine
    from tobio.lore.module import LoreModule, LoreSettings
    from tobio.lore.schema import Book
    from tobio.memory.service import Memory
    from tobio.turn.prompt import Prompt

log = logging.getLogger(__name__)
STATE_KEY = "lore"


_CARD_BOOKS: dict[int, tuple[Any, Book | None]] = {}  # id(persona) -> (persona, its parsed book)


def card_book(agent: Any) -> Book | None:
    """The persona's own lorebook (`card.data.character_book`), if it has one with entries (parsed once
    per persona version: personas are immutable, a change is a new object)."""
    persona = getattr(agent, "persona", None)
    cached = _CARD_BOOKS.get(id(persona))
    if cached is not None and cached[0] is persona:
        return cached[1]
    book = _card_book(agent, persona)
    if len(_CARD_BOOKS) > 256:
        _CARD_BOOKS.clear()
    _CARD_BOOKS[id(persona)] = (persona, book)
    return book


def _card_book(agent: Any, persona: Any) -> Book | None:
    from tobio.lore.schema import parse_book

    data = persona.card.get("data") if persona is not None and isinstance(persona.card.get("data"), dict) else {}
    raw = data.get("character_book")
    if not isinstance(raw, dict) or not raw.get("entries"):
        return None
    try:
        return parse_book(f"card:{getattr(agent, 'persona_key', None) or persona.name}", raw)
    except Exception as exc:  # a malformed book must not stop the reply
        log.warning("agent %s: its card's lorebook is unusable: %s", agent.name, exc)
        return None


def names_of(agent: Any) -> set[str]:
    """What a character filter may call this agent: its name, its persona's name and key."""
    persona = getattr(agent, "persona", None)
    return {n for n in (agent.name, getattr(persona, "name", None), getattr(agent, "persona_key", None)) if n}


def scan_lines(history: list[Message]) -> list[str]:
    """The chat newest first, each message as `Name: text` (ST's `world_info_include_names`)."""
    return [f"{m.sender}: {m.content}" if m.sender else m.content for m in reversed(history)]


def place(prompt: Prompt, activation: Activation) -> None:
    """Put fired entries into the prompt at their positions."""
    from tobio.lore.schema import AFTER, AN_BOTTOM, AN_TOP, AT_DEPTH, BEFORE, EM_BOTTOM, EM_TOP, ROLES

    near: list[str] = []
    for fired in activation.fired:
        entry, text = fired.entry, fired.content.strip()
        if not text:
            continue
        always = entry.constant or entry.decorator("activate") is not None
        if entry.position == AT_DEPTH:
            prompt.injections.append(Injection(entry.depth, ROLES[entry.role], text))
        elif entry.position == EM_TOP:
            prompt.examples_before.append(text)
        elif entry.position == EM_BOTTOM:
            prompt.examples_after.append(text)
        elif always and entry.position == BEFORE:
            prompt.system_before.append(text)
        elif always and entry.position in (AFTER, AN_TOP, AN_BOTTOM):
            prompt.system_extra.append(text)
        else:
            near.append(text)
    if near:
        prompt.injections.append(Injection(NEXT_TO_NEWEST, "system", "\n".join(near)))


class LoreHook:
    """Bound to the loaded module: evaluates, places, remembers, records."""

    def __init__(self, kernel: Kernel, module: LoreModule) -> None:
        self.kernel = kernel
        self.module = module
        self.pending: dict[tuple[int, int], dict[str, Any]] = {}  # (agent id, thread id) -> notes to record
        self._tasks: set[Any] = set()

    @property
    def settings(self) -> LoreSettings:
        return self.module.settings_now()

    def books(self, agent: Any, channel: str | None) -> list[Book]:
        store = self.module.store
        assert store is not None, "lore module not initialised"
        by_channel, by_agent = store.books_for(agent.name, channel)
        own = card_book(agent)
        return [store.book(b) for b in by_channel] + ([own] if own else []) + [store.book(b) for b in by_agent]

    def engine(self, agent: Any, books: list[Book], prompt: Prompt | None, rng: random.Random | None = None) -> Engine:
        from tobio.lore.engine import Engine, Settings

        cfg = self.settings
        if prompt is None and isinstance(agent, TurnAgent):  # `lore test`: the agent as if it had no thread yet
            from tobio.turn.prompt import Prompt  # with the first prompt: a start builds none

            prompt = Prompt(agent, 0, None)
        settings = Settings(scan_depth=cfg.scan_depth, budget_tokens=self.budget(agent), recursive=cfg.recursive,
                            max_recursion_steps=cfg.max_recursion_steps, case_sensitive=cfg.case_sensitive,
                            whole_words=cfg.match_whole_words)
        model = self._tokenizer(agent)
        counter = self._counter(model) if model is not None else None
        return Engine(books, settings, rng=rng, macro=prompt.filler() if prompt is not None else (lambda s: s),
                      count_tokens=counter)

    def _memory(self) -> Memory | None:
        """Memory's service when its module is loaded (a soft dependency: lore works without it)."""
        from tobio.memory.module import MemoryModule

        module = self.kernel.modules.get(MemoryModule)
        return module.memory if module is not None else None

    def budget(self, agent: Any) -> int:
        """The lore budget: `budget_tokens`, or `budget_share` of memory's prompt budget when memory is loaded."""
        cfg = self.settings
        memory = self._memory()
        if memory is not None:
            return max(1, min(cfg.budget_tokens, int(cfg.budget_share * memory.config.budget_tokens)))
        return cfg.budget_tokens

    def _tokenizer(self, agent: Any) -> Any:
        memory = self._memory()
        if memory is not None:
            return memory.tokenizer_for(agent.id)
        try:
            return models_of(self.kernel).get(agent.config.model)
        except Exception:  # no model: count words instead
            return None

    def _counter(self, model: Any) -> Any:
        memory = self._memory()

        async def count(text: str) -> int:
            if memory is not None:
                return int(await memory.tokens.text(model, text))
            return int(await model.count_tokens(text))

        return count

    def channel_of(self, prompt: Prompt) -> str | None:
        if prompt.incoming is not None and prompt.incoming.channel:
            return prompt.incoming.channel
        for sub in self.kernel.transport.subscriptions_of(prompt.agent.id):
            if sub.thread_id == prompt.thread_id:
                return sub.channel
        return None

    async def __call__(self, prompt: Prompt) -> None:
        try:
            await self._lore(prompt)
        except Exception as exc:  # a broken lorebook must never cost the reply
            log.warning("lore for %s failed, answering without it: %s", prompt.agent.name, exc)
            prompt.notes["lore"] = {"error": str(exc)}

    async def _lore(self, prompt: Prompt) -> None:
        agent = prompt.agent
        books = self.books(agent, self.channel_of(prompt))
        if not books:
            return
        from tobio.lore.engine import TimedState

        real = prompt.incoming is not None  # `agent prompt` builds one with no incoming message: a dry run
        states = agent.module_state.setdefault(STATE_KEY, {}) if real else copy.deepcopy(agent.module_state.get(STATE_KEY, {}))
        state = TimedState.from_dict(states.get(str(prompt.thread_id)))
        timed = any(e.sticky or e.cooldown or e.delay for b in books for e in b.entries) or state.sticky or state.cooldown
        length = await self.kernel.db.call(_count, prompt.thread_id) if timed else len(prompt.history)
        turns = sum(1 for m in prompt.history if m.sender == agent.name)
        rng = random.Random(self.settings.seed) if self.settings.seed is not None else None
        activation = await self.engine(agent, books, prompt, rng).run(
            scan_lines(prompt.history), chat_length=length, assistant_turns=turns, state=state, character=names_of(agent))
        if real:
            states[str(prompt.thread_id)] = state.to_dict()
        place(prompt, activation)
        notes = {
            "books": [b.name for b in books], "budget": self.budget(agent), "tokens": activation.tokens,
            "passes": activation.passes, "overflowed": activation.overflowed,
            "fired": [{"entry": f.entry.key, "label": f.entry.label(), "reason": f.reason} for f in activation.fired],
        }
        prompt.notes["lore"] = notes
        if real:
            self.pending[(agent.id, prompt.thread_id)] = {**notes, "trigger": prompt.incoming.id if prompt.incoming else None}

    # -- recording -----------------------------------------------------------------------------------
    def observe(self, message: Message) -> None:
        """A persona's reply is durable: record the lore that went into it as a step of its run."""
        if message.sender_id is None or message.thread_id is None:
            return
        notes = self.pending.pop((message.sender_id, message.thread_id), None)
        if notes is None:
            return
        run_id = (message.metadata or {}).get("run_id")
        row = (self.kernel.db.next_ids("steps"), run_id, message.id, message.sender_id, "lore", "world_info",
               {"books": notes["books"], "trigger": notes["trigger"], "budget": notes["budget"]},
               {"fired": notes["fired"], "tokens": notes["tokens"], "passes": notes["passes"]}, utcnow())
        self.kernel.writer.queue(("steps", STEP_COLUMNS, [row]))


def _count(conn: Connection, thread_id: int) -> int:
    """Messages in the thread so far: the clock sticky, cooldown and delay count in."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(PushRow).where(PushRow.c.thread_id == thread_id)).scalar() or 0)


def lore_steps(conn: Connection, agent_id: int, at: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The newest `lore` steps of an agent up to `at`: which entries fired for which reply."""
    rows = conn.execute(sa.select(StepRow.c.message_id, StepRow.c.run_id, StepRow.c.result, StepRow.c.created_at)
                        .where(StepRow.c.agent_id == agent_id, StepRow.c.kind == "lore", StepRow.c.created_at <= at)
                        .order_by(StepRow.c.id.desc()).limit(limit))
    return [{"message": m, "run": r, "fired": [f.get("label") for f in (res or {}).get("fired", [])], "at": str(c)}
            for m, r, res, c in rows]
