"""Sentences a reply copied from the agent's own instructions, cut before the reply is posted.

A small model copies the text nearest its answer. In bench/latency.py's chat on SmolLM2-135M, from about
turn 30 every reply ended with the reminder placed above the newest message ("You are Tobio. A curious,
warm artificial person who lives in a small computer and loves trains."), and once a few replies in the
history carried it, every later one did. A person does not recite their character sheet or their mood
line, and a copied line left in the history teaches the model to copy it again.

Only instructions count (`Prompt.instructions`: the reminder, the mood line, the card's post-history
instructions): what memory, notes on people and World Info put in the prompt are facts the agent may
say back word for word ("Your dog is called Biscuit."). A sentence is cut only when all of its words
(at least MIN_WORDS) appear in that order, contiguously, in one instruction; a paraphrase in the
agent's own voice ("I'm Tobio, and I love trains.") is kept.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9']+")
# A sentence ends at . ! ? or … before whitespace; a line break ends one too. The separators are kept.
_SEPARATOR = re.compile(r"((?<=[.!?…])[ \t]+|\s*\n\s*)")
MIN_WORDS = 3  # "You are Tobio." is an echo; "I see." copied from anywhere is not worth judging


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def strip_echoes(text: str, instructions: list[str]) -> str:
    """`text` without the sentences copied from any of `instructions` ('' when nothing else is left)."""
    sources = [f" {' '.join(_words(source))} " for source in instructions if source.strip()]
    if not sources:
        return text
    parts = _SEPARATOR.split(text)
    kept: list[str] = []
    for i in range(0, len(parts), 2):
        sentence, separator = parts[i], parts[i + 1] if i + 1 < len(parts) else ""
        words = _words(sentence)
        if len(words) >= MIN_WORDS and any(f" {' '.join(words)} " in source for source in sources):
            continue
        kept.append(sentence + separator)
    return "".join(kept).strip()
