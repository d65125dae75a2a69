"""Who is who, checked on the reply before it is posted (a REPLY_FILTER).

A 135M model given "Your name is Ada." next to "You are Tobio." answers "Your name is Tobio" or
"Biscuit, my name" (bench/person.py). When the newest message asks about something the agent holds
(the person's name, dog, home, job…, or the agent's own name), the reply must state the value it holds
and none it knows to be wrong (a retracted value, one that has since changed, the other party's name),
and not as its own ("My dog is called Biscuit" to the person whose dog it is).
A reply that fails is answered from the record: the fact said back the way the note says it, plus the
reply's own closing question when that is clean. The rest of the reply is the model's.
"""

from __future__ import annotations

import re

from tobio.people.render import USED_TO_KEYS, fact_sentence, used_to_sentence

# (key, question): the person asking about themselves; keys are tried in order (job: job, workplace, is).
_ASKS: list[tuple[tuple[str, ...], re.Pattern[str]]] = [
    (("name",), re.compile(r"\b(?:what(?:'s| is| was) my name|who am i\b|what am i called|do you (?:know|remember) my name"
                           r"|my name\b.*\?)", re.I)),
    (("home",), re.compile(r"\b(?:where (?:do|did) i (?:live|stay)|(?:which|what) (?:city|town|country|place) (?:do|did) i live"
                           r"|where(?:'s| is| was) my home|where am i living|where i live)", re.I)),
    (("from",), re.compile(r"\b(?:where am i from|where do i come from)", re.I)),
    (("age",), re.compile(r"\bhow old am i\b", re.I)),
    (("job", "workplace", "is"), re.compile(r"\b(?:what(?:'s| is| was) my (?:job|work|profession|occupation)"
                                              r"|what do i do\b|what did i do for|what do i work as|what is it i do)", re.I)),
    (("workplace",), re.compile(r"\bwhere do i work\b", re.I)),
    (("birthday",), re.compile(r"\bwhen(?:'s| is) my birthday", re.I)),
]
# "What is my dog called?", "what's my cat's name?", "what is my favourite colour?"
_ASK_NAMED = re.compile(r"\bwhat(?:'s| is| was) my ([a-z]+(?: [a-z]+)??)(?:'s name| called| named|\s*\?| again)", re.I)
_ASK_SELF = re.compile(r"\b(?:what(?:'s| is| was) your name|who are you|what are you called|your name again"
                       r"|what (?:should|shall|do) i call you|tell me your name|do you have a name|what do (?:people|they) call you"
                       r"|who am i (?:talking|speaking|chatting) (?:to|with)|and you are\?)", re.I)
# Asked what it is, or what it loves: its persona's description answers ("A curious, warm artificial
# person who … loves trains."), so a reply saying "I'm a human being" is as wrong as "your name is Tobio".
_ASK_NATURE = re.compile(r"\bare you (?:a |an )?(?:real|human|person|robot|machine|computer|program|bot|ai|artificial|alive)\b", re.I)
_ASK_LOVES = re.compile(r"\bwhat (?:do|would) you (?:love|like|enjoy)(?: most| best| the most)?\s*\?", re.I)
_ARTIFICIAL = ("artificial", "not a human", "not human", "ai", "a computer", "a program", "a machine", "a robot")
_LOVES = re.compile(r"\b(?:loves?|adores?|is passionate about) ([a-z][\w' -]{2,40}?)(?=[.,;!]|$| and )", re.I)
_PAST = re.compile(r"\b(?:before|used to|previously|formerly|in the past|did i use)\b", re.I)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))) + " "


def mentions(text: str, value: str) -> bool:
    """Does `text` say `value` (whole words, case and punctuation aside)?"""
    needle = _words(value)
    return needle.strip() != "" and needle in _words(text)


_OWN = {
    "name": r"\bmy name\b|\bI(?:'m| am) {v}\b",
    "home": r"\bmy (?:home|city|town)\b|\bI live\b",
    "from": r"\bI(?:'m| am| come) from\b",
    "job": r"\bI work\b|\bmy job\b|\bI(?:'m| am| was| have been|'ve been)\b.*\b{v}\b",
    "workplace": r"\bI work\b",
}


def claims_own(reply: str, key: str, value: str) -> bool:
    """Does a sentence of `reply` that names `value` give it to the agent ("My dog is called Biscuit",
    "Lisbon is my home") instead of to the person it belongs to?"""
    pattern = re.compile(_OWN.get(key, r"\bmy " + re.escape(key) + r"\b").format(v=re.escape(value)), re.I)
    return any(mentions(s, value) and pattern.search(s) for s in _SENTENCE.findall(reply))


def asked_keys(question: str, facts: dict[str, str]) -> tuple[str, ...]:
    """Which held facts `question` asks about (empty: none, or not a question about the person)."""
    for keys, pattern in _ASKS:
        if pattern.search(question):
            return tuple(k for k in keys if k in facts)[:1] or keys[:1]
    match = _ASK_NAMED.search(question)
    if match:
        noun = match.group(1).lower()
        for key in (noun, f"favourite {noun.removeprefix('favourite ').removeprefix('favorite ')}"):
            if key in facts:
                return (key,)
    return ()


def _closing_question(text: str, bad: list[str]) -> str:
    """The reply's last sentence when it is a question naming nothing known to be wrong ('' else)."""
    sentences: list[str] = [str(s).strip() for s in _SENTENCE.findall(text) if str(s).strip()]
    last = sentences[-1] if sentences else ""
    if last.endswith("?") and len(last) <= 120 and not any(mentions(last, b) for b in bad):
        return " " + last
    return ""


def self_checked(reply: str, question: str, description: str) -> str | None:
    """Asked whether it is human, or what it loves, the reply must agree with the agent's description
    (None: it does, or the description does not say); else the description answers, in the first person."""
    first = re.split(r"(?<=[.!?])\s", description.strip(), maxsplit=1)[0].rstrip(".!")
    as_me = "I'm " + first[:1].lower() + first[1:] + "." if re.match(r"(?:a|an) ", first, re.I) else ""
    if _ASK_NATURE.search(question) and "artificial" in description.lower() and as_me:
        said = _words(reply)
        if any(_words(m) in said for m in _ARTIFICIAL) and " human being " not in said.replace(" not a human being ", " "):
            return None
        return "No, I'm not a human. " + as_me
    loves = _LOVES.search(description)
    if _ASK_LOVES.search(question) and loves:
        thing = loves.group(1).strip()
        if mentions(reply, thing) or (thing.endswith("s") and mentions(reply, thing[:-1])):
            return None
        return f"I love {thing}!" + _closing_question(reply, [])
    return None


def checked(reply: str, question: str, me: str, person_name: str | None, facts: dict[str, str], was: dict[str, str],
            wrong: dict[str, set[str]]) -> str | None:
    """The reply to post instead of `reply`, or None when it is right (or the question is about nothing held).
    `was`: {key: earlier value} of recent changes; `wrong`: {key: retracted values}."""
    if _ASK_SELF.search(question):
        bad = [person_name] if person_name and person_name.lower() != me.lower() else []
        if mentions(reply, me) and not any(mentions(reply, b) for b in bad):
            return None
        return f"I'm {me}." + _closing_question(reply, bad + [me])
    keys = asked_keys(question, facts)
    if not keys:
        return None
    key = keys[0]
    past = bool(_PAST.search(question))
    if past:
        value = was.get(key)
        if value is None:
            return None
        answer = used_to_sentence(key, value) if key in USED_TO_KEYS else f"Before, it was {value}."
        bad = [facts[key]] if key in facts else []
    else:
        if key not in facts:
            return None
        value = facts[key]
        answer = fact_sentence(key, value)
        bad = sorted(wrong.get(key, set()) | ({was[key]} if key in was else set()))
        if key == "name":
            bad.append(me)
    bad = [b for b in bad if b and not mentions(value, b)]
    if mentions(reply, value) and not any(mentions(reply, b) for b in bad) and (past or not claims_own(reply, key, value)):
        return None
    return answer + _closing_question(reply, bad + [value])

