"""Personality in the affect loop (ALMA, Gebhard 2005): Big Five traits set the baseline mood by
Mehrabian's equations, and neuroticism sets how strongly events move the mood and how slowly it returns.

Traits are 0-1 (0.5 is the population middle); Mehrabian's equations take them in [-1, 1]. A neutral
personality (all 0.5) changes nothing: baseline offset 0, sensitivity 1, half-life as configured.
"""

from __future__ import annotations

from typing import Protocol

from tobio.emotion.affect import Affect

SENSITIVITY_SPAN = 0.6  # neuroticism 1 moves the mood 1.6x as far as a neutral person; 0 moves it 0.4x
HALF_LIFE_SPAN = 1.0  # neuroticism 1 doubles the time the mood takes to return; 0 halves it (powers of 2)


class Traits(Protocol):
    """The Big Five, each 0-1 (the persona file's `big_five`)."""

    openness: float
    conscientiousness: float
    extraversion: float
    agreeableness: float
    neuroticism: float


def _centred(value: float) -> float:
    return max(-1.0, min(1.0, 2.0 * value - 1.0))


def mehrabian(traits: Traits) -> Affect:
    """Baseline PAD from the Big Five (Mehrabian 1996, as ALMA uses it). Neuroticism enters with the sign of
    emotional stability's opposite: Mehrabian's equations are written for stability (= -neuroticism)."""
    o, c, e = _centred(traits.openness), _centred(traits.conscientiousness), _centred(traits.extraversion)
    a, n = _centred(traits.agreeableness), _centred(traits.neuroticism)
    stability = -n
    pleasure = 0.21 * e + 0.59 * a + 0.19 * stability
    arousal = 0.15 * o + 0.30 * a - 0.57 * stability
    dominance = 0.25 * o + 0.17 * c + 0.60 * e - 0.32 * a
    return Affect(pleasure, arousal, dominance)


def sensitivity(traits: Traits | None) -> float:
    """How far an event moves the mood, relative to a neutral person."""
    return 1.0 if traits is None else 1.0 + SENSITIVITY_SPAN * _centred(traits.neuroticism)


def half_life_factor(traits: Traits | None) -> float:
    """The mood's half-life relative to the configured one."""
    return 1.0 if traits is None else 2.0 ** (HALF_LIFE_SPAN * _centred(traits.neuroticism))
