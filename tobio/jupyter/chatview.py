"""`ChatView("tobio")`: a chat with an agent inside a notebook (ipywidgets: log, mood, input, send, stop).

ipywidgets has no chat widget, so this is an HTML log plus a Text and two Buttons. The talking is a
`tobio.conversation.Conversation` living on the kernel's loop: sending posts as the notebook's user
without blocking the notebook, the reply streams into the log as it is generated and is replaced by the
message the agent posted, and the agent's mood is shown beside it after each reply. Stop cancels the
agent's model run; "Another reply" regenerates the last reply in its place and ◀ ▶ choose among the
alternatives (the agent goes on from the chosen one, see tobio/swipes); `close()` (or leaving
`with ChatView(...)`) stops listening.
"""

from __future__ import annotations

import html
from types import TracebackType
from typing import Any

import ipywidgets as widgets

from tobio.conversation import Conversation, Reply
from tobio.errors import TobioError
from tobio.jupyter.session import get_kernel


class ChatView:
    """A live chat with `agent` in the private channel `dm.USER.AGENT`."""

    def __init__(self, agent: str, user: str = "user") -> None:
        self.kernel = get_kernel()
        self.agent = agent
        self.user = user
        self.conversation = Conversation(self.kernel, agent, user=user, on_reply=self._on_reply)
        self.channel = self.conversation.channel
        self.lines: list[tuple[str, str]] = []  # (speaker, text) shown in the log
        self.log = widgets.HTML(layout=widgets.Layout(max_height="360px", overflow_y="auto", border="1px solid #ddd", padding="6px"))
        self.mood = widgets.HTML()
        self.text = widgets.Text(placeholder=f"Say something to {agent}…", layout=widgets.Layout(flex="1"))
        self.send = widgets.Button(description="Send", button_style="primary")
        self.stop_button = widgets.Button(description="Stop")
        self.earlier = widgets.Button(description="◀", layout=widgets.Layout(width="44px"), tooltip="the previous alternative")
        self.later = widgets.Button(description="▶", layout=widgets.Layout(width="44px"), tooltip="the next alternative")
        self.another = widgets.Button(description="Another reply", tooltip="regenerate the last reply; it is kept")
        self.counter = widgets.HTML()
        self.chosen = 0  # which alternative of the last reply is shown (0: none)
        self._replacing = False  # the next posted reply replaces the last line (a retry)
        self.earlier.on_click(lambda _button: self.swipe(self.chosen - 1))
        self.later.on_click(lambda _button: self.swipe(self.chosen + 1))
        self.another.on_click(lambda _button: self.retry())
        self.send.on_click(lambda _button: self.say(self.text.value))
        self.text.on_submit(lambda _text: self.say(self.text.value))
        self.stop_button.on_click(lambda _button: self.stop())
        self.widget = widgets.VBox([widgets.HBox([self.log], layout=widgets.Layout(width="100%")), self.mood,
                                    widgets.HBox([self.text, self.send, self.stop_button]),
                                    widgets.HBox([self.earlier, self.counter, self.later, self.another])])
        self.kernel.call(self.conversation.open())  # its home is the kernel's loop: replies are drawn there
        self._render()

    def _on_reply(self, reply: Reply) -> None:
        """On the kernel's loop: a draft updates its line in progress; a finished reply joins the log."""
        if reply.done and (reply.state == "posted" or reply.draft.strip()):
            line = (reply.sender, reply.text + (" [stopped]" if reply.state == "stopped" else ""))
            if self._replacing and reply.sender == self.agent and self.lines and self.lines[-1][0] == self.agent:
                self.lines[-1] = line
            else:
                self.lines.append(line)
            if reply.sender == self.agent:
                self._replacing = False
            if reply.sender == self.agent and reply.state == "posted":
                self._show_mood()
                self.kernel.submit(self._count())
        self._render()

    # -- alternatives of the last reply ------------------------------------------------------------
    def retry(self) -> None:
        """Ask for another reply in place of the last one (which is kept as an alternative); returns at once."""
        self._replacing = True
        self.kernel.submit(self._retry())

    async def _retry(self) -> None:
        try:
            await self.conversation.retry()
        except TobioError as exc:
            self._replacing = False
            self.counter.value = f"<small>{html.escape(str(exc))}</small>"

    def swipe(self, number: int) -> None:
        """Show alternative `number` of the last reply: the agent goes on from it. Returns once it is chosen."""
        try:
            message = self.kernel.call(self.conversation.swipe(number))
        except TobioError as exc:
            self.counter.value = f"<small>{html.escape(str(exc))}</small>"
            return
        if self.lines and self.lines[-1][0] == self.agent:
            self.lines[-1] = (self.agent, message.content)
        self._show_mood()
        self.kernel.call(self._count())
        self._render()

    async def _count(self) -> None:
        try:
            alternatives = await self.conversation.alternatives()
        except TobioError:
            alternatives = []
        self.chosen = next((a.number for a in alternatives if a.chosen), 0)
        self.counter.value = f"<small>{self.chosen}/{len(alternatives)}</small>" if alternatives else ""
        self.earlier.disabled = self.chosen <= 1
        self.later.disabled = self.chosen >= len(alternatives)

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
        rows += [f"<div><b>{html.escape(r.sender)}:</b> {html.escape(r.draft)}<i>…</i></div>"
                 for r in self.conversation.in_progress()]
        self.log.value = "".join(rows) or f"<i>Talking with {html.escape(self.agent)}.</i>"

    def say(self, text: str) -> None:
        """Post `text` as the user; returns at once, the reply streams in."""
        text = text.strip()
        if not text:
            return
        self.text.value = ""
        self.kernel.submit(self._say(text))

    async def _say(self, text: str) -> None:
        self.lines.append((self.user, text))
        self._render()
        try:
            await self.conversation.say(text)
        except TobioError as exc:  # the agent was killed, the view closed: said in the log, not lost in a future
            self.lines.append(("tobio", f"not sent: {exc}"))
            self._render()

    def stop(self) -> None:
        """Stop the agent's turn: its model run is cancelled, the reply so far stays in the log."""
        self.kernel.call(_stop(self.conversation))

    def close(self) -> None:
        """Stop listening to the channel (the conversation stays in both histories); returns once done."""
        try:
            self.kernel.call(self.conversation.aclose())
        except TobioError:  # the kernel is closed, and its transport with it
            self.conversation.close()
        self.send.disabled = self.stop_button.disabled = self.text.disabled = True
        self.earlier.disabled = self.later.disabled = self.another.disabled = True

    def __enter__(self) -> ChatView:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        return f"<ChatView {self.agent} on {self.channel}: {len(self.lines)} messages>"


async def _stop(conversation: Conversation) -> None:
    conversation.stop()  # on the conversation's home loop, the kernel's


def chat(agent: str, **kwargs: Any) -> ChatView:
    return ChatView(agent, **kwargs)
