"""Words for lexical scoring, dates named in a query, and the cheap importance estimate every memory gets."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, tzinfo

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off
    on once only or other our ours ourselves out over own same she should so some such than that the their theirs
    them themselves then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves i'm you're it's that's don't
    yeah oh wow hey hi really so just like also got get""".split()
)


def _stem(word: str) -> str:
    """A light suffix stripper: enough to match 'painting'/'paints'/'painted' without a dependency."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)] + keep
    return word


def terms(text: str) -> list[str]:
    """Lower-cased, stemmed content words (the same for documents and queries)."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def spoken(sender: str | None, content: str) -> str:
    """A message as memory indexes it: who said it, then what ("caroline: I went to the support group").

    Questions about a memory usually name the person ("what did Caroline…"); with the name in the text
    both BM25 and the embedding can match it, and "I" in the content gets a referent.
    """
    return f"{sender}: {content}" if sender else content


def importance(text: str) -> float:
    """0..1 from the number of distinct content words: 'ok, thanks!' matters less than a detailed account.

    Cheap and defensible: the Generative Agents paper asks an LLM to rate poignancy, which costs a model
    call per message; information content is a proxy that needs none and is deterministic.
    """
    distinct = len(set(terms(text)))
    return min(1.0, math.log1p(distinct) / math.log1p(24))


_MONTHS = {m: i + 1 for i, m in enumerate(
    "january february march april may june july august september october november december".split())}
_MONTH = "(" + "|".join(_MONTHS) + ")"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"((?:19|20)\d\d)"
# "October 13, 2023", "13 October 2023" / "8th of December, 2023", "May 2023": day or month precision
_DATES = (
    (re.compile(rf"\b{_MONTH}\s+{_DAY},?\s*{_YEAR}\b", re.IGNORECASE), ("month", "day", "year")),
    (re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s*{_YEAR}\b", re.IGNORECASE), ("day", "month", "year")),
    (re.compile(rf"\b{_MONTH},?\s+{_YEAR}\b", re.IGNORECASE), ("month", "year")),
)


def date_spans(text: str, tz: tzinfo | None = None) -> list[tuple[datetime, datetime]]:
    """The calendar days and months `text` names ("on October 13, 2023", "in May 2022") as [start, end) spans.

    Questions about a memory often say when it was said; a span lets recall prefer what was said then.
    Only absolute dates count: "last week" needs a now the question does not carry. Years alone are too
    coarse to prefer anything. `tz` is the clock the memories' times read in (None: naive)."""
    spans: list[tuple[datetime, datetime]] = []
    for pattern, fields in _DATES:
        for match in pattern.finditer(text):
            found = dict(zip(fields, match.groups()))
            year, month = int(found["year"]), _MONTHS[found["month"].lower()]
            try:
                if "day" in found:
                    start = datetime(year, month, int(found["day"]), tzinfo=tz)
                    spans.append((start, start + timedelta(days=1)))
                else:
                    spans.append((datetime(year, month, 1, tzinfo=tz),
                                  datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)))
            except ValueError:  # "February 30, 2023": not a date
                continue
        text = pattern.sub(" ", text)  # a full date is not read again as a month
    return spans
