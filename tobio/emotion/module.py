"""The `emotion` module: an explicit affect per agent, appraised from every message it receives or
sends, fed back into its prompt (a mood line) and sampling (arousal warms the temperature).

The affect lives in the agent's state (`modules.emotion`), so every change is in the `state` table
and its history can be plotted. Time is message time: replays and imports decay correctly.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from tobio.agents.base import Agent
from tobio.db.migrations import utcnow
from tobio.emotion.affect import Affect, Mood
from tobio.emotion.appraise import Direction, LexiconAppraiser, ModelAppraiser
from tobio.hooks import ON_MESSAGE, PROMPT, REPLAY, implements
from tobio.messages import Message
from tobio.models.module import models_of
from tobio.modules import DatabaseModule, Module
from tobio.turn.placement import NEXT_TO_NEWEST, Injection

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.replay import Snapshot
    from tobio.turn.prompt import Prompt

log = logging.getLogger(__name__)
KEY = "emotion"


class EmotionSettings(BaseModel):
    """`settings: {emotion: {...}}` in kernel.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    half_life_s: float = Field(600.0, gt=0, description="seconds for a mood to fall halfway back to baseline")
    appraiser: Literal["lexicon", "model"] = Field("lexicon", description="VADER lexicon, or the `classify` model")
    gain: float = Field(0.35, gt=0, le=1, description="how far one message moves the affect")
    temperature_gain: float = Field(0.3, ge=0, le=1, description="temperature added per unit of arousal")
    mood_in_prompt: bool = True


class EmotionModule(Module):
    """Affect, appraisal and feedback for every non-human agent."""

    name = "emotion"
    description = "Pleasure/arousal/dominance per agent, appraised from messages, fed back into prompts."
    dependencies = (DatabaseModule,)
    Settings = EmotionSettings
    settings: EmotionSettings

    async def module_init(self, kernel: Kernel) -> None:
        from tobio.emotion.commands import register

        self.kernel = kernel
        self.lexicon = LexiconAppraiser(self.settings.gain)
        register(kernel.commands, self)

    @implements(REPLAY)
    async def replay(self, snapshot: Snapshot) -> None:
        """The mood the agent was in at the snapshot's time (its state then, decayed to that moment)."""
        emotion = (snapshot.state or {}).get("modules", {}).get(KEY)
        if emotion:
            snapshot.affect = Mood.from_state(emotion).at_time(snapshot.at, self.settings.half_life_s).affect.as_dict()

    # -- state -----------------------------------------------------------------------------------
    def baseline(self, agent: Agent) -> Affect:
        persona = getattr(agent, "persona", None)
        mood = getattr(persona, "initial_mood", None)
        return Affect(mood.pleasure, mood.arousal, mood.dominance) if mood is not None else Affect()

    def mood(self, agent: Agent, at: datetime | None = None) -> Mood:
        """The agent's mood, decayed to `at` (now by default)."""
        state = agent.module_state.get(KEY)
        baseline = self.baseline(agent)
        mood = Mood.from_state(state) if state else Mood(baseline, baseline, at or utcnow())
        return mood.at_time(at or utcnow(), self.settings.half_life_s)

    def set_mood(self, agent: Agent, mood: Mood) -> None:
        agent.module_state[KEY] = mood.to_state()

    def feels(self, agent: Agent) -> bool:
        return agent.type_name != "user"

    # -- appraisal -------------------------------------------------------------------------------
    @implements(ON_MESSAGE)
    def observe(self, message: Message) -> None:
        """Appraise a durable message for its sender (outgoing) and each live receiver (incoming)."""
        if not message.content or message.channel is None:
            return
        receivers = [sub.receiver for sub in self.kernel.transport.channels.get(message.channel, {}).values()]
        for agent in receivers:
            if isinstance(agent, Agent) and self.feels(agent):
                direction: Direction = "outgoing" if agent.id == message.sender_id else "incoming"
                if self.settings.appraiser == "model":
                    self.kernel.tasks.spawn(self._appraise_with_model(agent, message, direction), name=f"appraise:{agent.name}",
                                            kind="job", module=self)
                else:
                    self.apply(agent, self.lexicon.score(message.content, direction), message.created_at)

    async def _appraise_with_model(self, agent: Agent, message: Message, direction: Direction) -> None:
        appraiser = ModelAppraiser(models_of(self.kernel).get_for("classify"), self.settings.gain)
        try:
            delta = await appraiser.appraise(message.content, direction)
        except Exception as exc:  # fall back rather than lose the appraisal
            log.warning("model appraisal failed for %s (%s); using the lexicon", agent.name, exc)
            delta = self.lexicon.score(message.content, direction)
        self.apply(agent, delta, message.created_at)
        await self.kernel.agents.save_state(agent)

    def apply(self, agent: Agent, delta: Affect, at: datetime) -> Mood:
        """Decay to `at`, then nudge by `delta`."""
        mood = self.mood(agent, at)
        mood = Mood(mood.affect.nudged(delta), mood.baseline, max(at, mood.at))
        self.set_mood(agent, mood)
        return mood

    # -- feedback --------------------------------------------------------------------------------
    @implements(PROMPT)
    async def prompt_hook(self, prompt: Prompt) -> None:
        """Add the mood line and let arousal adjust the temperature."""
        agent = prompt.agent
        at = prompt.incoming.created_at if prompt.incoming is not None else utcnow()
        affect = self.mood(agent, at).affect
        if self.settings.mood_in_prompt:
            # Next to the newest message, not in the system prompt: the mood changes every turn, and a
            # changed system prompt would make the model read the whole conversation again.
            prompt.injections.append(Injection(NEXT_TO_NEWEST, "system", mood_line(affect), instruction=True))
        model = models_of(self.kernel).models.get(agent.config.model)
        base = prompt.params.get("temperature", (model.spec.params if model else {}).get("temperature", 0.7))
        prompt.params["temperature"] = round(max(0.0, min(1.5, base + self.settings.temperature_gain * affect.arousal)), 3)
        prompt.notes[KEY] = {"affect": affect.as_dict(), "label": affect.label, "temperature": prompt.params["temperature"]}


def mood_line(affect: Affect) -> str:
    """What the agent is told about its own mood: its name only.

    The numbers (pleasure, arousal, dominance) stay in `agent prompt`'s notes and the agent's state. In
    the prompt they changed every turn, so the block next to the newest message was never the same
    twice, and on SmolLM2-135M "(pleasure +0.41, arousal +0.16, …)" set off parenthesised German
    replies that then copied themselves turn after turn (5 of the latency bench's first 12 turns); with
    the label alone those turns answered in English (tried on the same prompts and seeds)."""
    return f"Your mood right now: {affect.label}. Let it colour how you answer."
