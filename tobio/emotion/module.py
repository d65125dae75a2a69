"""The `emotion` module: an explicit affect per agent, appraised from every message it receives or
sends, fed back into its prompt (mood and strongest emotion), sampling (arousal warms the temperature)
and recall (memories that match the mood rank a little higher).

ALMA's layers (Gebhard 2005): a personality (Big Five in the persona file) sets the baseline mood and how
strongly and how long events move it; each appraised message arises as a short-lived OCC emotion with a
cause, whose push moves the slower mood; both decay. Appraisal reuses the vector memory computes for
every message (an EmoBank-trained head); VADER stands in where memory does not embed.

The affect lives in the agent's state (`modules.emotion`), so every change is in the `state` table
and its history can be plotted. Time is message time: replays and imports decay correctly.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tobio.agents.base import Agent
from tobio.db.migrations import utcnow
from tobio.hooks import EMBEDDED, ON_MESSAGE, PROMPT, RECALL_BIAS, REPLAY, SWIPED, implements
from tobio.messages import Message
from tobio.models.module import models_of
from tobio.modules import DatabaseModule, Module
from tobio.tasks import within

if TYPE_CHECKING:
    import numpy as np

    from tobio.emotion.affect import Affect, Mood
    from tobio.emotion.appraise import Direction, LearnedAppraiser, LexiconAppraiser
    from tobio.emotion.emotions import Emotion
    from tobio.emotion.personality import Traits
    from tobio.kernel import Kernel
    from tobio.replay import Snapshot
    from tobio.swipes.service import Swiped
    from tobio.turn.prompt import Prompt

log = logging.getLogger(__name__)
KEY = "emotion"
PENDING_MOST = 4096  # messages waiting for memory's vectors; past this the oldest are appraised by the lexicon
FELT = 0.15  # an emotion weaker than this is not mentioned in the prompt


class EmotionSettings(BaseModel):
    """`settings: {emotion: {...}}` in kernel.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    half_life_s: float = Field(600.0, gt=0, description="seconds for a mood to fall halfway back to baseline (neutral personality)")
    emotion_half_life_s: float = Field(60.0, gt=0, description="seconds for an emotion's intensity to halve")
    appraiser: Literal["learned", "lexicon", "model"] = Field(
        "learned", description="the EmoBank head on memory's vectors (VADER where memory does not embed), VADER, or the `classify` model")
    gain: float = Field(0.35, gt=0, le=1, description="how far one message moves the affect")
    temperature_gain: float = Field(0.3, ge=0, le=1, description="temperature added per unit of arousal")
    mood_in_prompt: bool = Field(True, description="the mood's name in the per-turn block")
    emotion_in_prompt: bool = Field(True, description="the strongest current emotion and its cause in the per-turn block")
    mood_in_sampling: bool = Field(True, description="arousal shifts the temperature")
    # 0.2: the least with a clear effect in bench/emotion.py (first stage alone: a mood-matching share of the top
    # five 0.625 vs 0.5 off, 0.525 at 0.05); the learned ranker orders more decisively (top eight 0.531 vs 0.5).
    # Bounded: scores span 0-1 over the candidates, so it reorders memories of near-equal rank only.
    recall_congruence: float = Field(0.2, ge=0, le=0.5, description="most a memory's score gains or loses for matching the mood (0: off)")
    wait_s: float = Field(5.0, ge=0, description="longest a reply waits for its incoming message's appraisal")


class EmotionModule(Module):
    """Affect, appraisal and feedback for every non-human agent."""

    name = "emotion"
    description = "Pleasure/arousal/dominance and named emotions per agent, appraised from messages, fed back into prompts."
    dependencies = (DatabaseModule,)
    Settings = EmotionSettings
    settings: EmotionSettings

    async def module_init(self, kernel: Kernel) -> None:
        from tobio.emotion.commands import register

        self.kernel = kernel
        # message id -> (message, who appraises it, in which direction), until memory's vectors come
        self.pending: OrderedDict[int, tuple[Message, list[tuple[Agent, Direction]]]] = OrderedDict()
        self.done: dict[int, asyncio.Future[None]] = {}
        self.appraised = {"learned": 0, "lexicon": 0, "model": 0}
        register(kernel.commands, self)

    # The affect, appraisal and personality files are imported by the first message, prompt or command that
    # needs them: a start that runs none (`tobio-shell -c "agent ls"`) does not build their classes.
    @functools.cached_property
    def lexicon(self) -> LexiconAppraiser:
        """VADER, made on first use."""
        from tobio.emotion.appraise import LexiconAppraiser

        return LexiconAppraiser(self.settings.gain)

    @functools.cached_property
    def learned(self) -> LearnedAppraiser | None:
        """The EmoBank head, read on first use: a command that only lists agents needs neither it nor numpy."""
        if self.settings.appraiser != "learned":
            return None
        from tobio.emotion.appraise import LearnedAppraiser
        from tobio.emotion.head import shipped

        return LearnedAppraiser(shipped(), self.settings.gain)

    @implements(REPLAY)
    async def replay(self, snapshot: Snapshot) -> None:
        """The mood and emotions the agent was in at the snapshot's time (its state then, decayed to that moment)."""
        emotion = (snapshot.state or {}).get("modules", {}).get(KEY)
        if emotion:
            from tobio.emotion.affect import Mood

            agent = self.kernel.agents.live.get(snapshot.agent)
            mood = Mood.from_state(emotion).at_time(snapshot.at, *self.half_lives(agent))
            snapshot.affect = mood.affect.as_dict()
            snapshot.extra["emotions"] = [f"{e.phrase()} {e.intensity:.2f}" for e in mood.emotions]

    # -- personality -----------------------------------------------------------------------------
    def traits(self, agent: Agent | None) -> Traits | None:
        traits: Traits | None = getattr(getattr(agent, "persona", None), "big_five", None)
        return traits

    def half_lives(self, agent: Agent | None) -> tuple[float, float]:
        """(mood, emotion) half-lives in seconds for this agent's personality."""
        from tobio.emotion.personality import half_life_factor

        return self.settings.half_life_s * half_life_factor(self.traits(agent)), self.settings.emotion_half_life_s

    def baseline(self, agent: Agent) -> Affect:
        """The persona's `initial_mood` when it sets one; else its default shifted by the Big Five (Mehrabian)."""
        from tobio.emotion.affect import Affect
        from tobio.emotion.personality import mehrabian

        persona = getattr(agent, "persona", None)
        mood = getattr(persona, "initial_mood", None)
        base = Affect(mood.pleasure, mood.arousal, mood.dominance) if mood is not None else Affect()
        traits = self.traits(agent)
        if traits is None or "initial_mood" in getattr(persona, "model_fields_set", ()):
            return base
        shift = mehrabian(traits)
        return Affect(*(max(-1.0, min(1.0, getattr(base, k) + getattr(shift, k))) for k in ("pleasure", "arousal", "dominance")))

    # -- state -----------------------------------------------------------------------------------
    def mood(self, agent: Agent, at: datetime | None = None) -> Mood:
        """The agent's mood and emotions, decayed to `at` (now by default)."""
        from tobio.emotion.affect import Mood

        state = agent.module_state.get(KEY)
        baseline = self.baseline(agent)
        mood = Mood.from_state(state) if state else Mood(baseline, baseline, at or utcnow())  # the state's baseline (`emotion set --baseline`)
        return mood.at_time(at or utcnow(), *self.half_lives(agent))

    def set_mood(self, agent: Agent, mood: Mood) -> None:
        agent.module_state[KEY] = mood.to_state()

    def feels(self, agent: Agent) -> bool:
        return agent.type_name != "user"

    # -- appraisal -------------------------------------------------------------------------------
    def embeds(self) -> bool:
        """Whether memory embeds every message with the model the head was trained on (then its vectors are used)."""
        from tobio.memory.module import MemoryModule

        memory = self.kernel.modules.get(MemoryModule)
        if self.learned is None or memory is None or memory.memory is None or not memory.memory.config.index:
            return False
        model = models_of(self.kernel).models.get(memory.memory.config.embed_model)
        trained_on = str(self.learned.head.meta.get("embedder", "")).lower()
        return model is not None and bool(trained_on) and trained_on in str(model.spec.model).lower()

    @implements(ON_MESSAGE)
    def observe(self, message: Message) -> None:
        """Appraise a durable message for its sender (outgoing) and each live receiver (incoming)."""
        if not message.content or message.channel is None:
            return
        receivers = [sub.receiver for sub in self.kernel.transport.channels.get(message.channel, {}).values()]
        feeling: list[tuple[Agent, Direction]] = [
            (agent, "outgoing" if agent.id == message.sender_id else "incoming")
            for agent in receivers if isinstance(agent, Agent) and self.feels(agent)]
        if self.settings.appraiser == "learned" and self.embeds():
            self.pending[message.id] = (message, feeling)  # even with no one feeling it: it is context for the next
            self.done[message.id] = asyncio.get_running_loop().create_future()
            while len(self.pending) > PENDING_MOST:
                self._by_lexicon(next(iter(self.pending)))
            return
        for agent, direction in feeling:
            if self.settings.appraiser == "model":
                self.kernel.tasks.spawn(self._appraise_with_model(agent, message, direction), name=f"appraise:{agent.name}",
                                        kind="job", module=self)
            else:
                self.appraised["lexicon"] += 1
                self.feel(agent, self.lexicon.score(message.content, direction), direction, message)

    @implements(EMBEDDED)
    def embedded(self, messages: list[Message], vectors: list[list[float]]) -> None:
        """Memory's vectors for messages it embedded: appraise those waiting for them (not backfilled ones)."""
        assert self.learned is not None or not self.pending
        touched: dict[int, Agent] = {}
        for message, vector in zip(messages, vectors):
            waiting = self.pending.pop(message.id, None)
            if waiting is None or message.channel is None:
                continue
            if self.learned is None or len(vector) != self.learned.head.dimension:  # not the model the head knows
                self.pending[message.id] = waiting
                self._by_lexicon(message.id)
                continue
            read = self.learned.read(message.channel, vector, message.created_at, message.content)
            for agent, direction in waiting[1]:
                self.appraised["learned"] += 1
                self.feel(agent, self.learned.score(read, direction), direction, message)
                touched[agent.id] = agent
            self._settled(message.id)
        for agent in touched.values():
            self.kernel.tasks.spawn(self.kernel.agents.save_state(agent), name=f"emotion:save:{agent.name}", kind="job", module=self)

    @implements(SWIPED)
    async def unfelt(self, change: Swiped) -> None:
        """A message withdrawn before its vector came is never appraised: the state put back stays as it was."""
        for message_id in change.withdrawn:
            self.pending.pop(message_id, None)
            self._settled(message_id)

    def _settled(self, message_id: int) -> None:
        future = self.done.pop(message_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _by_lexicon(self, message_id: int) -> None:
        """Appraise a message that waited too long for its vector with VADER (its vector, if it comes, is ignored)."""
        waiting = self.pending.pop(message_id, None)
        if waiting is not None:
            message, feeling = waiting
            for agent, direction in feeling:
                self.appraised["lexicon"] += 1
                self.feel(agent, self.lexicon.score(message.content, direction), direction, message)
        self._settled(message_id)

    async def appraised_by(self, message_id: int) -> None:
        """Wait (at most `wait_s`) until the message is appraised; then VADER appraises it instead."""
        future = self.done.get(message_id)
        if future is None:
            return
        try:
            await within(asyncio.shield(future), self.settings.wait_s)
        except TimeoutError:
            log.info("emotion: no vector for message %s within %.1f s; the lexicon appraises it", message_id, self.settings.wait_s)
            self._by_lexicon(message_id)

    async def _appraise_with_model(self, agent: Agent, message: Message, direction: Direction) -> None:
        from tobio.emotion.appraise import ModelAppraiser

        appraiser = ModelAppraiser(models_of(self.kernel).get_for("classify"), self.settings.gain)
        try:
            delta = await appraiser.appraise(message.content, direction)
            self.appraised["model"] += 1
        except Exception as exc:  # fall back rather than lose the appraisal
            log.warning("model appraisal failed for %s (%s); using the lexicon", agent.name, exc)
            delta = self.lexicon.score(message.content, direction)
        self.feel(agent, delta, direction, message)
        await self.kernel.agents.save_state(agent)

    def feel(self, agent: Agent, delta: Affect, direction: Direction, message: Message) -> Mood:
        """An appraised message: an emotion arises with its cause, and its push (scaled by the personality's
        sensitivity) moves the mood."""
        from tobio.emotion.affect import Affect
        from tobio.emotion.emotions import arise, cause_of
        from tobio.emotion.personality import sensitivity

        scale = sensitivity(self.traits(agent))
        push = Affect(delta.pleasure * scale, delta.arousal * scale, delta.dominance * scale)
        emotion = arise(Affect(*(getattr(delta, k) / self.settings.gain for k in ("pleasure", "arousal", "dominance"))),
                        direction, cause_of(message.sender, message.content), message.sender or "", message.created_at)
        return self.apply(agent, push, message.created_at, emotion)

    def apply(self, agent: Agent, delta: Affect, at: datetime, emotion: Emotion | None = None) -> Mood:
        """Decay to `at`, then nudge by `delta` (and add the emotion it caused)."""
        from tobio.emotion.affect import Mood
        from tobio.emotion.emotions import current

        mood = self.mood(agent, at)
        emotions = mood.emotions if emotion is None else current((*mood.emotions, emotion), mood.at, self.half_lives(agent)[1])
        mood = Mood(mood.affect.nudged(delta), mood.baseline, max(at, mood.at), emotions)
        self.set_mood(agent, mood)
        return mood

    # -- feedback --------------------------------------------------------------------------------
    @implements(PROMPT)
    async def prompt_hook(self, prompt: Prompt) -> None:
        """Add the mood line (and the strongest emotion) and let arousal adjust the temperature."""
        from tobio.turn.placement import NEXT_TO_NEWEST, Injection

        agent = prompt.agent
        if prompt.incoming is not None:
            await self.appraised_by(prompt.incoming.id)
        at = prompt.incoming.created_at if prompt.incoming is not None else utcnow()
        mood = self.mood(agent, at)
        affect = mood.affect
        felt = mood.strongest if self.settings.emotion_in_prompt else None
        felt = felt if felt is not None and felt.intensity >= FELT else None
        if self.settings.mood_in_prompt or felt is not None:
            # Next to the newest message, not in the system prompt: the mood changes every turn, and a
            # changed system prompt would make the model read the whole conversation again.
            line = mood_line(affect if self.settings.mood_in_prompt else None, felt)
            prompt.injections.append(Injection(NEXT_TO_NEWEST, "system", line, instruction=True))
        if self.settings.mood_in_sampling:
            model = models_of(self.kernel).models.get(agent.config.model)
            base = prompt.params.get("temperature", (model.spec.params if model else {}).get("temperature", 0.7))
            prompt.params["temperature"] = round(max(0.0, min(1.5, base + self.settings.temperature_gain * affect.arousal)), 3)
        prompt.notes[KEY] = {"affect": affect.as_dict(), "label": affect.label, "temperature": prompt.params.get("temperature"),
                             "emotions": [{"name": e.name, "intensity": round(e.intensity, 3), "cause": e.cause} for e in mood.emotions]}

    @implements(RECALL_BIAS)
    def recall_bias(self, agent_id: int, vectors: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | float:
        """Mood-congruent recall: a memory whose appraised pleasure has the mood's sign scores up to
        `recall_congruence` higher (the opposite sign lower), in proportion to both."""
        weight = self.settings.recall_congruence
        agent = next((a for a in self.kernel.agents.live.values() if a.id == agent_id), None)
        if (not weight or self.learned is None or agent is None or not self.feels(agent)
                or vectors.shape[-1] != self.learned.head.dimension):
            return 0.0
        pleasure = self.mood(agent).affect.pleasure
        if abs(pleasure) < 0.05:
            return 0.0
        import numpy as np

        head = self.learned.head
        # einsum, not `@`: a threaded BLAS matrix-vector product spins on cores the model wants (index.py)
        rated = np.einsum("ij,j->i", vectors, head.weights[:, 0].astype(vectors.dtype)) + head.intercept[0]
        item = np.clip((rated - head.center[0]) / head.scale[0], -1.0, 1.0)
        bias: np.ndarray[Any, Any] = weight * pleasure * item
        return bias


def mood_line(affect: Affect | None, felt: Emotion | None = None) -> str:
    """What the agent is told about its own mood: its name, and the strongest emotion with its cause.

    The numbers (pleasure, arousal, dominance) stay in `agent prompt`'s notes and the agent's state. In
    the prompt they changed every turn, so the block next to the newest message was never the same
    twice, and on SmolLM2-135M "(pleasure +0.41, arousal +0.16, …)" set off parenthesised German
    replies that then copied themselves turn after turn (5 of the latency bench's first 12 turns); with
    the label alone those turns answered in English (tried on the same prompts and seeds)."""
    parts = [f"Your mood right now: {affect.label}."] if affect is not None else []
    if felt is not None:
        parts.append(f"You feel {felt.phrase()}.")
    return " ".join(parts) + " Let it colour how you answer."
