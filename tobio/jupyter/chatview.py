"""`ChatView("tobio")`: a chat with an agent inside a notebook (ipywidgets: log, mood, input, send).

ipywidgets has no chat widget, so this is an HTML log plus a Text and a Button. Sending posts as the
notebook's user agent without blocking the notebook; the reply streams into the log as it is
generated (the transport's deltas), and the agent's mood is shown beside it after each reply.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from tobio.jupyter.session import get_kernel
from tobio.messages import Delta, Message


class ChatView:
    """A live chat with `agent` in the private channel `dm.USER.AGENT`."""

    def __init__(self, agent: str, user: str = "user") -> None:
        self.kernel = get_kernel()
        self.agent = agent
        self.user = user
        self.channel = ""  # set by _join: the private channel with the agent
        self.lines: list[tuple[str, str]] = []  # (speaker, text) shown in the log
        self._partial: dict[str, str] = {}  # stream id -> text so far
        self.log = widgets.HTML(layout=widgets.Layout(max_height="360px", overflow_y="auto", border="1px solid #ddd", padding="6px"))
        self.mood = widgets.HTML()
        self.text = widgets.Text(placeholder=f"Say something to {agent}…", layout=widgets.Layout(flex="1"))
        self.send = widgets.Button(description="Send", button_style="primary")
        self.send.on_click(lambda _button: self.say(self.text.value))
        self.text.on_submit(lambda _text: self.say(self.text.value))
        self.widget = widgets.VBox([widgets.HBox([self.log], layout=widgets.Layout(width="100%")), self.mood,
                                    widgets.HBox([self.text, self.send])])
        self.kernel.call(self._join())
        self._render()

    async def _join(self) -> None:
        self._me, self.channel = await self.kernel.agents.open_dm(self.user, self.agent)
        self.kernel.transport.listen(self.channel, self._on_item)

    def _on_item(self, item: Message | Delta) -> None:
        """On the kernel's loop: streamed pieces update a partial line; a posted message replaces it."""
        if isinstance(item, Delta):
            if item.done:
                return
            self._partial[item.stream_id] = self._partial.get(item.stream_id, "") + item.text
        else:
            stream_id = (item.metadata or {}).get("stream_id")
            if isinstance(stream_id, str):
                self._partial.pop(stream_id, None)
            self.lines.append((item.sender or "kernel", item.content))
            if item.sender == self.agent:
                self._show_mood()
        self._render()

    def _show_mood(self) -> None:
        from tobio.emotion.module import EmotionModule

        emotion = self.kernel.modules.get(EmotionModule)
        agent = self.kernel.agents.live.get(self.agent)
        if emotion is not None and agent is not None:
            affect = emotion.mood(agent).affect
            self.mood.value = (f"<small>{html.escape(self.agent)} feels <b>{affect.label}</b> "
                               f"(pleasure {affect.pleasure:+.2f}, arousal {affect.arousal:+.2f})</small>")

    def _render(self) -> None:
        rows = [f"<div><b>{html.escape(who)}:</b> {html.escape(text)}</div>" for who, text in self.lines]
        rows += [f"<div><b>{html.escape(self.agent)}:</b> {html.escape(t)}<i>…</i></div>" for t in self._partial.values()]
        self.log.value = "".join(rows) or f"<i>Talking with {html.escape(self.agent)}.</i>"

    def say(self, text: str) -> None:
        """Post `text` as the user; returns at once, the reply streams in."""
        text = text.strip()
        if not text:
            return
        self.text.value = ""
        self.kernel.submit(self._me.say(self.channel, text, role="user"))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        return f"<ChatView {self.agent} on {self.channel}: {len(self.lines)} messages>"


def chat(agent: str, **kwargs: Any) -> ChatView:
    return ChatView(agent, **kwargs)
