"""How what an agent knows about someone reads in its prompt.

Measured on SmolLM2-135M (bench/person.py and a format sweep): a short parenthesised note stating each
fact the way the agent would say it back to the person ("your dog is called Biscuit"), one message
above the newest, is copied into answers more often than a third-person list ("Ada's dog: Biscuit"),
which the model tends to recite as its own biography. Heading it with the agent's own name ("Notes for
Tobio") halved the facts score: the model then answered "your name is Tobio".
"""

from __future__ import annotations

_TEMPLATES = {
    "name": "your name is {v}.",
    "age": "you are {v}.",
    "job": "you work as a {v}.",
    "workplace": "you work at {v}.",
    "is": "you are {v}.",
    "home": "you live in {v}.",
    "from": "you are from {v}.",
    "birthday": "your birthday is {v}.",
    "likes": "you like {v}.",
    "dislikes": "you dislike {v}.",
}
_DERIVED = {"relationship", "feeling"}
# Facts whose change itself matters for a while ("I moved to Paris"): the note says what they used to be.
_USED_TO = {
    "home": "you used to live in {v}.",
    "job": "you used to work as a {v}.",
    "workplace": "you used to work at {v}.",
    "is": "you used to be {v}.",
}
USED_TO_KEYS = frozenset(_USED_TO)


def display_name(person: str, facts: dict[str, str]) -> str:
    """The name they gave, else their agent name with a capital."""
    return facts.get("name") or person[:1].upper() + person[1:]


def fact_sentence(key: str, value: str) -> str:
    template = _TEMPLATES.get(key) or ("your " + key + " is {v}." if key.startswith("favourite") else "your " + key + " is called {v}.")
    text = template.format(v=value)
    return text[:1].upper() + text[1:]


def used_to_sentence(key: str, value: str) -> str:
    text = _USED_TO[key].format(v=value)
    return text[:1].upper() + text[1:]


def person_block(me: str, person: str, facts: dict[str, str], reflections: list[str] | None = None,
                 is_user: bool = True, sign: bool = False, was: dict[str, str] | None = None) -> str:
    """The per-person note placed next to the newest message ('' when there is nothing to say).
    `sign`: head it with the agent's own name ("Notes for Tobio"). `was`: {key: old value} of facts that
    changed recently, said as "used to" after the current value (only for keys where the change matters)."""
    name = display_name(person, facts)
    told = []
    for key, value in facts.items():
        if key not in _DERIVED:
            told.append(fact_sentence(key, value))
            if was and key in _USED_TO and was.get(key) and was[key] != value:
                told.append(used_to_sentence(key, was[key]))
    told += [used_to_sentence(k, v) for k, v in (was or {}).items() if k in _USED_TO and k not in facts and v]
    parts = [f"(Notes for {me}." if sign else "(Notes:"]
    if facts.get("name") or not is_user:
        parts.append(f"The user is {name}." if is_user else f"You are talking with {name}.")
    if told:
        parts.append("Remember: " + " ".join(told))
    feeling = facts.get("feeling", "neutral")
    if feeling.startswith("hurt"):
        parts.append(f"{name} has been rude to you; you feel hurt.")
    elif feeling.startswith("warm"):
        parts.append(f"You like {name}.")
    for thought in reflections or []:
        parts.append(f"Your thought: {thought}")
    if len(parts) == 1:
        return ""
    return " ".join(parts) + ")"
