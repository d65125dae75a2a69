"""Recall: the hybrid finds what only the words or only the meaning match (on the embedded model), an answer's
sitting lifts it, and a question that names a day or month prefers what was said then."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from tobio.memory.config import MemoryConfig
from tobio.memory.index import AgentIndex, Item
from tobio.memory.text import date_spans
from tobio.providers.embedder import Embedder, load_embedder

T0 = datetime(2024, 5, 1, 18, 0, tzinfo=timezone.utc)
FILLER = ["the weather turned grey again", "I cooked a big pot of soup", "work was busy this week",
          "my cat knocked over a plant", "we should repaint the kitchen", "the train was late this morning",
          "I finished the novel about the lighthouse", "my sister called from Lisbon"]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedder]:
    cache: Path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOBIO_CACHE_DIR", str(cache))
        yield load_embedder("all-MiniLM-L6-v2")


def message(source_id: int, text: str, when: datetime, sender: str = "bob", channel: str = "room") -> Item:
    return Item("message", source_id, when, 0.5, sender, text, channel)


def indexed(embedder: Embedder, lines: list[str]) -> AgentIndex:
    """One sitting per line (a day apart), so no turn is context for another and only the hybrid decides."""
    index = AgentIndex(1)
    items = [message(i, text, T0 + timedelta(days=i)) for i, text in enumerate(lines)]
    for item, vector in zip(items, embedder.encode([item.text for item in items])):
        index.add(item, vector)
    return index


def rank_of(embedder: Embedder, index: AgentIndex, query: str, source_id: int, **settings: float) -> int:
    config = MemoryConfig(w_recency=0.0, w_importance=0.0, **settings)  # type: ignore[arg-type]
    hits = index.search(query, embedder.encode([query])[0], config, len(index))
    return [h.item.source_id for h in hits].index(source_id)


def test_the_hybrid_finds_what_only_the_words_match(embedder: Embedder) -> None:
    target = len(FILLER)
    index = indexed(embedder, [*FILLER, "the locker code is QX4411"])
    query = "what was QX4411 for"
    assert rank_of(embedder, index, query, target) == 0
    assert rank_of(embedder, index, query, target, hybrid_alpha=0.0) == 0  # BM25 alone: the rare word


def test_the_hybrid_finds_what_only_the_meaning_matches(embedder: Embedder) -> None:
    target = len(FILLER)
    index = indexed(embedder, [*FILLER, "we adopted a puppy, a tiny beagle"])
    query = "does she have a new dog"
    assert rank_of(embedder, index, query, target) == 0
    assert index.bm25.scores(["dog", "new", "have"])[target] == 0  # no word in common
    assert rank_of(embedder, index, query, target, hybrid_alpha=1.0) == 0  # the embedding alone: the meaning


def test_the_sitting_of_an_answer_lifts_it() -> None:
    """Two turns alike in every way; the one whose sitting is about the question ranks first, and only
    because of its sitting (without the sitting prior they tie)."""
    index = AgentIndex(1)
    vector = np.ones(4, dtype=np.float32)
    lines = [message(1, "yes it was wonderful", T0),  # the answer, first in its sitting
             message(2, "the lantern festival by the river was the best night of the year", T0 + timedelta(minutes=1)),
             message(3, "yes it was wonderful", T0 + timedelta(days=2)),  # the same words in another sitting
             message(4, "the plumber fixed the sink", T0 + timedelta(days=2, minutes=1))]
    for item in lines:
        index.add(item, vector)
    config = MemoryConfig(w_recency=0.0, context_turns=0, rerank=False)  # the first stage's prior (the ranker reads it too)
    hits = index.search("was the lantern festival wonderful", vector, config, 4)
    order = [h.item.source_id for h in hits]
    assert order.index(1) < order.index(3)
    flat = {h.item.source_id: h.score for h in index.search("was the lantern festival wonderful", vector,
                                                            config.model_copy(update={"w_sitting": 0.0}), 4)}
    assert flat[1] == pytest.approx(flat[3])


def test_a_question_naming_a_day_prefers_what_was_said_then() -> None:
    index = AgentIndex(1)
    vector = np.ones(4, dtype=np.float32)
    for i in range(5):  # the same words on five days
        index.add(message(i, "I planted tomatoes in the garden", T0 + timedelta(days=i)), vector)
    config = MemoryConfig(w_recency=0.0, rerank=False)  # the first stage's date match (the ranker reads it too)
    for day in (1, 3):
        when = T0 + timedelta(days=day)
        hits = index.search(f"what did bob plant on {when:%B} {when.day}, {when.year}", vector, config, 5)
        assert hits[0].item.source_id == day
    hits = index.search("what did bob plant in June 2024", vector, config, 5)  # a month with none of them: no preference
    assert len({round(h.score, 9) for h in hits}) == 1


def test_dates_are_read_in_the_ways_questions_write_them() -> None:
    day = (datetime(2023, 12, 8), datetime(2023, 12, 9))
    for text in ("on December 8, 2023", "on 8 December 2023", "on 8th December, 2023", "on the 8th of december, 2023",
                 "on December 8,2023"):
        assert date_spans(text) == [day], text
    assert date_spans("in May 2022") == [(datetime(2022, 5, 1), datetime(2022, 6, 1))]
    assert date_spans("in December 2023") == [(datetime(2023, 12, 1), datetime(2024, 1, 1))]
    assert date_spans("on February 30, 2023") == []  # no such day
    assert date_spans("back in 2022, may be") == []  # a year alone is too coarse to prefer anything
    utc = date_spans("May 3, 2024", timezone.utc)[0][0]
    assert utc.tzinfo is timezone.utc
