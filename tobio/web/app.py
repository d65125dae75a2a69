"""The Panel chat app: pick an agent, chat with streaming, see its mood, recent memories and threads, and
correct what it remembers (forget a memory; retract or correct a fact it believes about you).

`create_app(kernel)` builds one page per browser session; `tobio web`, `web serve` (shell) and
`panel serve tobio/web/app.py` all serve it. The page talks as the person at the shell (`user`, in the
private channel `dm.user.AGENT`) and opens on their usual agent with the conversation so far
(see `tobio.web.history`).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

import panel as pn

from tobio.conversation import Conversation, Response
from tobio.errors import TobioError
from tobio.web.history import PAGE_USER, earlier_messages, opening_agent, talkers
from tobio.web.safe import render

if TYPE_CHECKING:
    from tobio.kernel import Kernel

ANSWER_TIMEOUT_S = 300.0  # no news from the agent for this long: the page says so and stops its turn


async def _records(kernel: Kernel, command: str) -> list[dict[str, Any]] | str:
    try:
        return (await kernel.arun(command)).records()
    except TobioError as exc:
        return f"<i>{html.escape(str(exc))}</i>"


def _mood_html(rows: list[dict[str, Any]] | str, label: str) -> str:
    if isinstance(rows, str):
        return rows
    bars = "".join(
        f"<div style='display:flex;gap:6px;align-items:center'><span style='width:72px'>{r['dimension']}</span>"
        f"<span style='flex:1;background:#eee;height:8px;position:relative'><span style='position:absolute;left:50%;"
        f"width:{abs(r['now']) * 50:.0f}%;{'' if r['now'] >= 0 else 'transform:translateX(-100%);'}height:8px;"
        f"background:{'#4caf50' if r['now'] >= 0 else '#e57373'}'></span></span><span style='width:44px;text-align:right'>"
        f"{r['now']:+.2f}</span></div>" for r in rows)
    return f"<div><b>{html.escape(label)}</b></div>{bars}"


def _memory_html(row: dict[str, Any]) -> str:
    return (f"{html.escape(str(row['content'])[:140])} <small style='color:#888'>({html.escape(str(row['sender']))}, "
            f"score {row['score']})</small>")


def _fact_html(row: dict[str, Any]) -> str:
    return f"<b>{html.escape(str(row['key']))}</b>: {html.escape(str(row['value'])[:100])}"


def _run_on_click(fix: Callable[[], Coroutine[Any, Any, None]], _event: Any) -> None:
    pn.state.execute(fix)


def _fixes(rows: list[dict[str, Any]] | str, show: Callable[[dict[str, Any]], str], label: str,
           act: Callable[[dict[str, Any]], Coroutine[Any, Any, None]], empty: str) -> list[Any]:
    """One line per row, each with a button that corrects it (an error line stands alone)."""
    if isinstance(rows, str):
        return [pn.pane.HTML(rows)]
    if not rows:
        return [pn.pane.HTML(f"<i>{empty}</i>")]
    lines = []
    for row in rows:
        button = pn.widgets.Button(name=label, width=64, height=28, button_type="light")
        button.on_click(partial(_run_on_click, partial(act, row)))
        lines.append(pn.Row(pn.pane.HTML(show(row), sizing_mode="stretch_width"), button, sizing_mode="stretch_width"))
    return lines


def _threads_html(rows: list[dict[str, Any]] | str) -> str:
    if isinstance(rows, str):
        return rows
    lines = "".join(f"<tr><td>{r['thread']}</td><td>{html.escape(str(r['channel']))}</td><td>{r['messages']}</td>"
                    f"<td>{'closed' if r['closed'] else 'open'}</td></tr>" for r in rows)
    return f"<table><tr><th>thread</th><th>channel</th><th>msgs</th><th></th></tr>{lines}</table>"


def create_app(kernel: Kernel, default_agent: str | None = None) -> pn.viewable.Viewable:
    """One page: a sidebar (agent, mood, memories, threads) and the chat, open on `default_agent`
    (else the web module's `default_agent` setting, else the first persona)."""
    pn.extension()
    first, note = opening_agent(kernel, default_agent)
    agent = pn.widgets.Select(name="Agent", options=sorted(talkers(kernel)), value=first)
    mood = pn.pane.HTML("", sizing_mode="stretch_width")
    trace = pn.pane.HTML("", sizing_mode="stretch_width")  # the mood's recent course (emotion plot)
    memories = pn.Column(sizing_mode="stretch_width")
    knows = pn.Column(sizing_mode="stretch_width")  # the facts the agent believes about the page's person
    correction = pn.widgets.TextInput(placeholder="key=value, e.g. dog=Rex", width=220)
    correct = pn.widgets.Button(name="correct", width=80, button_type="primary")
    fixed = pn.pane.HTML("", sizing_mode="stretch_width")  # what the last correction did, or why it failed
    threads = pn.pane.HTML("", sizing_mode="stretch_width")
    searched = {"query": ""}  # what the memories pane shows memories for

    async def refresh(last: str = "") -> None:
        name = agent.value
        if not name:
            return
        loaded = kernel.modules.loaded
        if "emotion" in loaded:
            shown = await kernel.arun(f"emotion show {name}")
            mood.object = _mood_html(shown.records(), (shown.data or {}).get("label", ""))
            trace.object = (await kernel.arun(f"emotion plot {name} -n 60"))._repr_html_()
        else:
            mood.object = "<i>emotion module not loaded</i>"
        searched["query"] = last or searched["query"]
        if "memory" in loaded and searched["query"]:
            found = await _records(kernel, f"memory search {_quote(name)} {_quote(searched['query'])} -k 3")
            memories.objects = _fixes(found, _memory_html, "forget", forget_memory, "nothing yet")
        if "people" in loaded:
            believed = await _records(kernel, f"memory facts {_quote(name)} {PAGE_USER}")
            knows.objects = _fixes(believed, _fact_html, "wrong", retract_fact, "nothing yet")
        threads.object = _threads_html(await _records(kernel, f"thread ls --agent {_quote(name)}"))

    async def corrected(command: str) -> None:
        """Run a correction the person asked for on the page, say what it did, and show the result."""
        try:
            result = await kernel.arun(command)
            fixed.object = html.escape(result.note or "done")
        except TobioError as exc:
            fixed.object = f"<i>{html.escape(str(exc))}</i>"
        await refresh()

    async def forget_memory(row: dict[str, Any]) -> None:
        """Stop the agent retrieving this message (kept in the record; facts learnt from it retracted)."""
        if row.get("kind") == "message":
            await corrected(f"memory forget {_quote(agent.value)} {int(row['id'])} --reason 'forgotten on the web page'")
        else:
            fixed.object = f"<i>only a message can be forgotten here, not a {html.escape(str(row.get('kind')))}</i>"

    async def retract_fact(row: dict[str, Any]) -> None:
        """The agent believes something about the person that was never true: retract it (kept, marked)."""
        await corrected(f"people forget {_quote(agent.value)} {PAGE_USER} {_quote(str(row['key']))}")

    async def correct_fact() -> None:
        """The agent got a fact wrong: believe the right value, the wrong one retracted."""
        text = (correction.value or "").strip()
        if "=" not in text:
            fixed.object = "<i>write the right value as key=value, e.g. dog=Rex</i>"
            return
        await corrected(f"memory correct {_quote(agent.value)} {PAGE_USER} {_quote(text)}")
        correction.value = ""

    correct.on_click(lambda _event: pn.state.execute(correct_fact))

    async def respond(contents: str, user: str, instance: pn.chat.ChatInterface) -> Any:
        """Say `contents` and stream the reply; the stop button (Panel cancels this generator) stops the turn."""
        name = agent.value
        if not name:
            yield {"user": "Tobio", "object": "No agent to talk to (see `agent ls`)."}
            return
        talk = Conversation(kernel, name, user=PAGE_USER)
        response: Response | None = None
        try:
            await talk.open()
            response = await talk.prompt(contents)
            async for reply in response.updates(timeout=ANSWER_TIMEOUT_S):
                if reply.text:
                    yield {"user": name, "object": reply.text}  # each yield replaces the message: streaming
        except TobioError as exc:
            yield {"user": name, "object": f"({html.escape(str(exc))})"}
        finally:
            if response is not None and not response.done:
                talk.stop()  # stopped, timed out or the page went away: the model stops too
            talk.close()
        await refresh(contents)
        await show_alternatives()

    chat = pn.chat.ChatInterface(callback=respond, user="You", callback_exception="summary", renderers=[render],
                                 sizing_mode="stretch_both", show_rerun=False, show_undo=False)

    # ◀ n/m ▶ and "another reply" act on the agent's last reply (swipes.py): every alternative is kept,
    # the chosen one is what the agent goes on from.
    earlier = pn.widgets.Button(name="◀", width=44, disabled=True, description="the previous alternative of the last reply")
    later = pn.widgets.Button(name="▶", width=44, disabled=True, description="the next alternative of the last reply")
    another = pn.widgets.Button(name="↻ another reply", width=140, disabled=True)
    counter = pn.pane.HTML("", width=60, styles={"text-align": "center", "padding-top": "8px"})
    chosen_number = {"n": 0}

    def last_reply(name: str) -> pn.chat.ChatMessage | None:
        objects = chat.objects
        return objects[-1] if objects and getattr(objects[-1], "user", None) == name else None

    def person_said() -> str:
        """The person's last line on the page (what the memories pane searches for)."""
        said = [o for o in chat.objects if getattr(o, "user", None) == "You" and isinstance(getattr(o, "object", None), str)]
        return str(said[-1].object) if said else ""

    async def show_alternatives() -> None:
        """The counter and buttons for the last reply's alternatives (hidden while there is none)."""
        name = agent.value
        try:
            alternatives = await Conversation(kernel, name, user=PAGE_USER).alternatives() if name else []
        except TobioError:
            alternatives = []
        chosen = next((a.number for a in alternatives if a.chosen), 0)
        chosen_number["n"] = chosen
        counter.object = f"{chosen}/{len(alternatives)}" if alternatives else ""
        earlier.disabled, later.disabled = chosen <= 1, not alternatives or chosen >= len(alternatives)
        another.disabled = not alternatives or last_reply(name) is None

    async def swipe_to(step: int) -> None:
        name = agent.value
        try:
            message = await Conversation(kernel, name, user=PAGE_USER).swipe(chosen_number["n"] + step)
        except TobioError as exc:
            counter.object = f"<i>{html.escape(str(exc))}</i>"
            return
        shown = last_reply(name)
        if shown is not None:
            shown.object = message.content
        await refresh(person_said())  # the memories pane drops the reply swiped away
        await show_alternatives()

    async def retry() -> None:
        name = agent.value
        shown = last_reply(name)
        if shown is None:
            return
        another.disabled = earlier.disabled = later.disabled = True
        talk = Conversation(kernel, name, user=PAGE_USER)
        response: Response | None = None
        try:
            await talk.open()
            response = await talk.retry()
            async for reply in response.updates(timeout=ANSWER_TIMEOUT_S):
                if reply.text:
                    shown.object = reply.text
        except TobioError as exc:
            counter.object = f"<i>{html.escape(str(exc))}</i>"
        finally:
            if response is not None and not response.done:
                talk.stop()
            talk.close()
        await refresh(person_said())  # the memories pane drops the reply swiped away
        await show_alternatives()

    async def to_earlier() -> None:
        await swipe_to(-1)

    async def to_later() -> None:
        await swipe_to(+1)

    earlier.on_click(lambda _event: pn.state.execute(to_earlier))
    later.on_click(lambda _event: pn.state.execute(to_later))
    another.on_click(lambda _event: pn.state.execute(retry))
    swipe_bar = pn.Row(earlier, counter, later, another)

    async def open_agent() -> None:
        """Show the conversation so far with the chosen agent, then its sidebar."""
        name = agent.value
        before = list(chat.objects)
        shown = await earlier_messages(kernel, name) if name else []
        messages = [pn.chat.ChatMessage(text, user="You" if sender == PAGE_USER else sender, renderers=[render])
                    for sender, text in shown]
        if note and name == first:
            messages.insert(0, pn.chat.ChatMessage(note, user="Tobio", renderers=[render]))
        said_meanwhile = [m for m in chat.objects if not any(m is b for b in before)]  # typed while this loaded
        chat.objects = messages + said_meanwhile
        await refresh()
        await show_alternatives()

    agent.param.watch(lambda _event: pn.state.execute(open_agent), "value")
    pn.state.onload(open_agent)
    sidebar = pn.Column(agent, pn.pane.Markdown("**Mood**"), mood, trace, pn.pane.Markdown("**Recent memories**"), memories,
                        pn.pane.Markdown("**What it believes about you**"), knows, pn.Row(correction, correct), fixed,
                        pn.pane.Markdown("**Threads**"), threads, width=360)
    return pn.Row(sidebar, pn.Column(pn.pane.Markdown("## Tobio"), chat, swipe_bar, sizing_mode="stretch_both"),
                  sizing_mode="stretch_both")


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text[:200])


if __name__.startswith("bokeh"):  # `panel serve tobio/web/app.py`
    from tobio.jupyter.session import get_kernel

    create_app(get_kernel()).servable(title="Tobio")
