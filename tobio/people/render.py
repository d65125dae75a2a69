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


def display_name(person: str, facts: dict[str, str]) -> str:
    """The name they gave, else their agent name with a capital."""
    return facts.get("name") or person[:1].upper() + person[1:]


def fact_sentence(key: str, value: str) -> str:
    template = _TEMPLATES.get(key) or ("your " + key + " is {v}." if key.startswith("favourite") else "your " + key + " is called {v}.")
    text = template.format(v=value)
    return text[:1].upper() + text[1:]


def person_block(me: str, person: str, facts: dict[str, str], reflections: list[str] | None = None,
                 is_user: bool = True, sign: bool = False) -> str:
    """The per-person note placed next to the newest message ('' when there is nothing to say).
    `sign`: head it with the agent's own name ("Notes for Tobio")."""
    name = display_name(person, facts)
    told = [fact_sentence(k, v) for k, v in facts.items() if k not in _DERIVED]
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
