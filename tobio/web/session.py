"""One open page: what the person does there (pick an agent, chat, stop, swipe, correct) and what the page
is told back, as JSON messages. Transport-free: `tobio.web.app`'s websocket feeds `handle()` and sends
what `send` is given.

The page talks as the person at the shell (`user`, in the private channel `dm.user.AGENT`) and opens on
their usual agent with the conversation so far (see `tobio.web.history`). Every command the sidebar runs
goes through `kernel.arun` as that person.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shlex
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from tobio.conversation import Conversation, Response
from tobio.errors import TobioError
from tobio.web.history import PAGE_USER, earlier_messages, opening_agent, talkers
from tobio.web.safe import render

if TYPE_CHECKING:
    from tobio.kernel import Kernel

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 300.0  # no news from the agent for this long: the page says so and stops its turn
MAX_SAID = 20_000  # characters the person may send in one line
MAX_FIELD = 400  # characters of an agent name or a key=value correction
MAX_PENDING = 16  # requests of one page at work at once; more are refused with a notice
Send = Callable[[dict[str, Any]], None]


def _quote(text: str) -> str:
    return shlex.quote(text[:200])


def _plain(rows: list[dict[str, Any]], fields: dict[str, Callable[[Any], Any]]) -> list[dict[str, Any]]:
    """Rows cut down to what the page shows, as JSON values."""
    return [{name: convert(row.get(name)) for name, convert in fields.items()} for row in rows]


def _text(limit: int) -> Callable[[Any], str]:
    return lambda value: str(value)[:limit]


class PageSession:
    """What one page shows and does; every method runs on the web server's loop."""

    def __init__(self, kernel: Kernel, send: Send, default_agent: str | None = None) -> None:
        self.kernel = kernel
        self.send = send
        self.default_agent = default_agent
        self.agent: str | None = None
        self.query = ""  # what the memories pane shows memories for: the person's last line
        self.memories: list[dict[str, Any]] = []  # as shown, so "forget" names a row by its place
        self.facts: list[dict[str, Any]] = []
        self.last_reply: str | None = None  # the id of the agent's reply at the bottom of the chat, if it is
        self.chosen = 0  # the alternative of the last reply shown
        self.turn: asyncio.Task[None] | None = None  # a reply streaming (prompt or retry)
        self._lines = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sidebar = asyncio.Lock()
        self._opening = asyncio.Lock()  # held while a conversation loads: what is said meanwhile comes after it
        self._ready = asyncio.Event()  # set once the page shows its first conversation; requests wait for it

    # -- the page's requests --------------------------------------------------------------------------
    def handle(self, request: dict[str, Any]) -> None:
        """One request from the page: {"op": ..., ...}. Unknown ops and malformed fields get a notice."""
        op = request.get("op")
        if op == "stop":
            self.stop()
            return
        if op in ("say", "retry"):
            if self.turn is not None and not self.turn.done():
                self.notice("the agent is still answering: wait for it, or Stop")
                return
            if op == "say":
                text = request.get("text")
                if not isinstance(text, str) or not text.strip():
                    return
                if len(text) > MAX_SAID:
                    self.notice(f"that is {len(text):,} characters; the page sends at most {MAX_SAID:,} at once")
                    return
                self.turn = self.spawn(self.say(text))
            else:
                self.turn = self.spawn(self.retry())
            return
        actions: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "open": lambda: self.open_agent(_field(request, "agent") or "?"),
            "swipe": lambda: self.swipe(1 if request.get("step") == 1 else -1),
            "forget": lambda: self.forget(_index(request)),
            "wrong": lambda: self.retract(_index(request)),
            "correct": lambda: self.correct(_field(request, "text")),
        }
        action = actions.get(op) if isinstance(op, str) else None
        if action is None:
            self.notice(f"unknown request {str(op)[:40]!r}")
            return
        if len(self._tasks) >= MAX_PENDING:
            self.notice("too many requests at once: wait for the page to catch up")
            return
        self.spawn(action())

    def spawn(self, work: Coroutine[Any, Any, None], *, after_start: bool = True) -> asyncio.Task[None]:
        """Run `work` for the page; `after_start`: once the page shows its first conversation (a line
        typed while it loads is said after it, to the agent it opened on)."""
        task = asyncio.ensure_future(self._guarded(work, after_start))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: work.close())  # cancelled before it began: no "never awaited"
        return task

    async def _guarded(self, work: Coroutine[Any, Any, None], after_start: bool) -> None:
        try:
            if after_start:
                await self._ready.wait()
            await work
        except TobioError as exc:
            self.notice(str(exc))
        except asyncio.CancelledError:
            raise
        except Exception:  # one request failing must not end the page
            log.exception("web: a page request failed")
            self.notice("that failed (see `log tail`)")

    def close(self) -> None:
        """The page went away: stop what it started (a reply streaming stops the agent's turn too)."""
        for task in list(self._tasks):
            task.cancel()

    def notice(self, text: str) -> None:
        self.send({"type": "notice", "text": text})

    # -- opening --------------------------------------------------------------------------------------
    async def start(self) -> None:
        first, note = opening_agent(self.kernel, self.default_agent)
        self.send({"type": "agents", "agents": sorted(talkers(self.kernel)), "agent": first})
        try:
            async with self._opening:
                await self._show_history(first, note)
        finally:
            self._ready.set()
        await self.refresh()
        await self.show_alternatives()

    async def open_agent(self, name: str, note: str = "") -> None:
        """The agent picker: stop the reply streaming, show the conversation so far with `name`, its sidebar."""
        if name not in talkers(self.kernel):
            self.notice(f"no agent {name[:80]!r} to talk to")
            return
        self.stop()
        async with self._opening:
            await self._show_history(name, note)
        await self.refresh()
        await self.show_alternatives()

    async def _show_history(self, name: str | None, note: str) -> None:
        self.agent = name
        shown = await earlier_messages(self.kernel, name) if name else []
        lines = []
        self.last_reply, self.query = None, ""
        for sender, text in shown:
            line = self._line_id()
            lines.append({"id": line, "who": "You" if sender == PAGE_USER else sender, "mine": sender == PAGE_USER,
                          "html": render(text)})
            self.last_reply = line if sender == name else None
            if sender == PAGE_USER:
                self.query = text
        if not name:
            note = "No agent to talk to (see `agent ls`)."
        self.send({"type": "history", "agent": name, "lines": lines, "note": note})

    def _line_id(self) -> str:
        self._lines += 1
        return f"m{self._lines}"

    def show_line(self, line: str, who: str, text: str, *, mine: bool = False, streaming: bool = False) -> None:
        self.send({"type": "line", "id": line, "who": who, "mine": mine, "html": render(text), "streaming": streaming})

    # -- chatting -------------------------------------------------------------------------------------
    async def say(self, text: str) -> None:
        """Say `text` and stream the reply; Stop (or the page closing) cancels this and stops the turn."""
        async with self._opening:
            name = self.agent
        self.show_line(self._line_id(), "You", text, mine=True)
        self.last_reply, self.query = None, text
        if not name:
            self.notice("No agent to talk to (see `agent ls`).")
            return
        talk = Conversation(self.kernel, name, user=PAGE_USER)
        await self._stream(talk, name, lambda: talk.prompt(text), self._line_id())
        await self.refresh()
        await self.show_alternatives()

    async def retry(self) -> None:
        """Another reply to the latest turn, streamed in place of the one shown (kept as an alternative)."""
        async with self._opening:
            name, line = self.agent, self.last_reply
        if name is None or line is None:
            return
        self.send({"type": "swipes", "chosen": self.chosen, "count": 0, "another": False, "busy": True})
        talk = Conversation(self.kernel, name, user=PAGE_USER)
        await self._stream(talk, name, talk.retry, line)
        await self.refresh()  # the memories pane drops the reply swiped away
        await self.show_alternatives()

    async def _stream(self, talk: Conversation, name: str, ask: Callable[[], Coroutine[Any, Any, Response]],
                      line: str) -> None:
        response: Response | None = None
        shown = ""
        self.send({"type": "busy", "busy": True})
        try:
            await talk.open()
            response = await ask()
            async for reply in response.updates(timeout=ANSWER_TIMEOUT_S):
                if reply.text:
                    shown = reply.text
                    self.show_line(line, name, shown, streaming=not reply.done)
                    self.last_reply = line
        except TobioError as exc:
            self.show_line(self._line_id(), name, f"({exc})")
        finally:
            if response is not None and not response.done:
                talk.stop()  # stopped, timed out or the page went away: the model stops too
            talk.close()
            if shown:
                self.show_line(line, name, shown)  # no longer streaming (also when stopped)
            self.send({"type": "busy", "busy": False})

    def stop(self) -> None:
        """The Stop button: cancel the reply streaming; its `finally` stops the agent's turn."""
        turn = self.turn
        if turn is not None and not turn.done():
            turn.cancel()

            async def after() -> None:
                await asyncio.wait([turn])
                await self.refresh()
                await self.show_alternatives()

            self.spawn(after())

    # -- alternatives (◀ n/m ▶, another reply) ----------------------------------------------------
    async def show_alternatives(self) -> None:
        name = self.agent
        try:
            alternatives = await Conversation(self.kernel, name, user=PAGE_USER).alternatives() if name else []
        except TobioError:
            alternatives = []
        self.chosen = next((a.number for a in alternatives if a.chosen), 0)
        # A turn still streaming (a line sent while the page opened, then the opening finished) keeps the
        # buttons off; the turn's own last call (from inside it) turns them on.
        turn = self.turn
        busy = turn is not None and not turn.done() and turn is not asyncio.current_task()
        self.send({"type": "swipes", "chosen": self.chosen, "count": len(alternatives),
                   "another": bool(alternatives) and self.last_reply is not None, "busy": busy})

    async def swipe(self, step: int) -> None:
        name = self.agent
        if name is None or (self.turn is not None and not self.turn.done()):
            return
        try:
            message = await Conversation(self.kernel, name, user=PAGE_USER).swipe(self.chosen + step)
        except TobioError as exc:
            self.notice(str(exc))
            return
        if self.last_reply is not None:
            self.show_line(self.last_reply, name, message.content)
        await self.refresh()
        await self.show_alternatives()

    # -- the sidebar ------------------------------------------------------------------------------------
    async def _records(self, command: str) -> dict[str, Any]:
        try:
            return {"rows": (await self.kernel.arun(command)).records()}
        except TobioError as exc:
            return {"error": str(exc)}

    async def refresh(self) -> None:
        """Mood, trace, memories for the person's last line, facts about the person, threads."""
        name = self.agent
        if not name:
            return
        async with self._sidebar:
            loaded = self.kernel.modules.loaded
            sidebar: dict[str, Any] = {"type": "sidebar", "agent": name}
            if "emotion" in loaded:
                shown = await self.kernel.arun(f"emotion show {_quote(name)}")
                rows = _plain(shown.records(), {"dimension": _text(40), "now": float})
                sidebar["mood"] = {"label": str((shown.data or {}).get("label", "")), "rows": rows}
                figure = await self.kernel.arun(f"emotion plot {_quote(name)} -n 60")
                picture = getattr(figure, "svg", "")  # shown as an <img>: an image runs no script
                sidebar["trace"] = {"svg": base64.b64encode(picture.encode("utf-8")).decode("ascii") if picture else "",
                                    "alt": figure.text or "mood"}
            else:
                sidebar["mood"] = {"error": "emotion module not loaded"}
            if "memory" in loaded and self.query:
                found = await self._records(f"memory search {_quote(name)} {_quote(self.query)} -k 3")
                self.memories = found.get("rows", [])
                sidebar["memories"] = {**found, "rows": _plain(self.memories, {
                    "content": _text(140), "sender": _text(80), "score": str, "kind": _text(20)})}
            if "people" in loaded:
                believed = await self._records(f"memory facts {_quote(name)} {PAGE_USER}")
                self.facts = believed.get("rows", [])
                sidebar["facts"] = {**believed, "rows": _plain(self.facts, {"key": _text(100), "value": _text(100)})}
            threads = await self._records(f"thread ls --agent {_quote(name)}")
            sidebar["threads"] = {**threads, "rows": _plain(threads.get("rows", []), {
                "thread": str, "channel": _text(120), "messages": str, "closed": bool})}
            self.send(sidebar)

    async def corrected(self, command: str) -> None:
        """Run a correction the person asked for, say what it did, and show the result."""
        try:
            result = await self.kernel.arun(command)
            self.send({"type": "fixed", "text": result.note or "done"})
        except TobioError as exc:
            self.send({"type": "fixed", "text": str(exc), "error": True})
        await self.refresh()

    async def forget(self, index: int) -> None:
        """Stop the agent retrieving this message (kept in the record; facts learnt from it retracted)."""
        row = self.memories[index] if 0 <= index < len(self.memories) else None
        if row is None or self.agent is None:
            return
        if row.get("kind") != "message":
            self.send({"type": "fixed", "text": f"only a message can be forgotten here, not a {row.get('kind')}",
                       "error": True})
            return
        await self.corrected(f"memory forget {_quote(self.agent)} {int(row['id'])} --reason 'forgotten on the web page'")

    async def retract(self, index: int) -> None:
        """The agent believes something about the person that was never true: retract it (kept, marked)."""
        row = self.facts[index] if 0 <= index < len(self.facts) else None
        if row is None or self.agent is None:
            return
        await self.corrected(f"people forget {_quote(self.agent)} {PAGE_USER} {_quote(str(row['key']))}")

    async def correct(self, text: str | None) -> None:
        """The agent got a fact wrong: believe the right value, the wrong one retracted."""
        text = (text or "").strip()
        if self.agent is None:
            return
        if "=" not in text:
            self.send({"type": "fixed", "text": "write the right value as key=value, e.g. dog=Rex", "error": True})
            return
        await self.corrected(f"memory correct {_quote(self.agent)} {PAGE_USER} {_quote(text)}")
        self.send({"type": "corrected"})


def _field(request: dict[str, Any], name: str) -> str | None:
    value = request.get(name)
    return value[:MAX_FIELD] if isinstance(value, str) else None


def _index(request: dict[str, Any]) -> int:
    value = request.get("index")
    return value if isinstance(value, int) and not isinstance(value, bool) else -1
