"""Facts found by the `json` model bundle, for when a capable model is configured (`model_extract: true`):
it catches what the rules miss ("we moved to Porto last spring"). Off by default: the embedded 135M
model invents more facts than it finds."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from tobio.messages import Message
from tobio.models.module import models_of
from tobio.people.facts import Fact

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.people.service import People

log = logging.getLogger(__name__)


class _Item(BaseModel):
    key: str = Field(description="what the fact is about, one or two lowercase words: name, dog, home, job, likes…")
    value: str


class StatedFacts(BaseModel):
    facts: list[_Item] = Field(default_factory=list, max_length=8)


PROMPT = ("List the facts the speaker states about themselves in this message (their name, pets, family, home, "
          "job, likes). Only facts they state, none you guess. Empty list if there are none.\nMessage: {text}")


async def model_facts(kernel: Kernel, people: People, agent: Any, person: str, message: Message, bundle: str) -> None:
    """Ask the bundle for facts in `message` and record them with source `model`."""
    try:
        model = models_of(kernel).get_for(bundle) if bundle not in models_of(kernel).models else models_of(kernel).get(bundle)
        found = await model.json(PROMPT.format(text=message.content), StatedFacts)
        facts = [Fact(i.key.strip().lower()[:64], i.value.strip()) for i in found.facts if i.key.strip() and i.value.strip()]
        people.learn(agent.id, person, facts, message.id, "model", at=message.created_at)
    except Exception as exc:  # the rules already ran; a model failure only loses extras
        log.warning("people: model extraction for %s failed: %s", agent.name, exc)
