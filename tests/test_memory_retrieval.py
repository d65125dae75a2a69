"""Memory retrieval: who said it is searchable, replies are found through the turns before them (only
those the agent received, in the same sitting), and a reloaded index ranks exactly like the live one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.memory.bm25 import BM25
from tobio.memory.config import MemoryConfig
from tobio.memory.index import AgentIndex, Hit, Item
from tobio.memory.module import MemoryModule
from tobio.memory.service import Memory

T0 = datetime(2024, 5, 1, 18, 0, tzinfo=timezone.utc)
NO_CONTEXT = dict(context_turns=0)
FILLER = ["the weather turned grey again", "I cooked a big pot of soup", "work was busy this week",
          "my cat knocked over a plant", "we should repaint the kitchen"]


def start(url: str) -> Kernel:
    providers = {"s": {"type": "scripted", "replies": ["ok"], "embed_dim": 512}}
    models = {"m": {"provider": "s", "model": "x", "purpose": "chat"}, "embed": {"provider": "s", "model": "x", "purpose": "embed"}}
    kernel = Kernel(KernelConfig(modules=["models"], providers=providers, models=models), database=url).start()
    kernel.modules.register(type("RetrievalMemory", (MemoryModule,), {"config": MemoryConfig(summarize=False, tokenizer_model="m")}))
    kernel.run("mod load memory")
    return kernel


memory = Memory.of


@pytest.fixture
def kernel(duckdb_url: str) -> Iterator[Kernel]:
    k = start(duckdb_url)
    try:
        yield k
    finally:
        k.close()


def join(kernel: Kernel, channel: str, *names: str) -> None:
    async def go() -> None:
        for name in names:
            await kernel.agents.ensure_user(name, (channel,))

    kernel.call(go())


def say(kernel: Kernel, lines: list[tuple[str, str, datetime]], channel: str = "room") -> list[int]:
    """Post (sender, text, time) lines in order; returns message ids once memory has indexed them."""

    async def go() -> list[int]:
        ids = []
        for sender, text, when in lines:
            message = await kernel.transport.post(channel, text, sender=kernel.agents.live[sender], role="user", created_at=when)
            ids.append(message.id)
        await memory(kernel).settle()
        return ids

    return kernel.call(go())


def chat(kernel: Kernel, start_at: datetime = T0, channel: str = "room", gap: timedelta = timedelta(minutes=1)) -> int:
    """Filler, bob's question, alice's answer (`gap` after it), filler; returns the answer's id."""
    lines = [("alice" if i % 2 else "bob", text, start_at + timedelta(minutes=i)) for i, text in enumerate(FILLER[:3])]
    question_at = start_at + timedelta(minutes=10)
    lines += [("bob", "did you go to the lantern festival in riverton", question_at),
              ("alice", "yes, last saturday, it was magical", question_at + gap)]
    lines += [("bob", text, question_at + gap + timedelta(minutes=1 + i)) for i, text in enumerate(FILLER[3:])]
    return say(kernel, lines, channel)[4]


def search(kernel: Kernel, agent: str, query: str, k: int = 3, **settings: Any) -> list[Hit]:
    """The agent's hits under the module's config changed by `settings` (same index, same query vector)."""
    mem = memory(kernel)
    agent_id = kernel.agents.live[agent].id
    index = kernel.call(mem.index_for(agent_id))
    vector = np.asarray(kernel.call(mem.embed_model.embed([query]))[0], dtype=np.float32)
    return index.search(query, vector, mem.config.model_copy(update=settings), k)


def relevance(hits: list[Hit], message_id: int) -> float:
    return next(h.relevance for h in hits if h.item.source_id == message_id)


def test_the_sender_is_part_of_what_is_searched(kernel: Kernel) -> None:
    join(kernel, "room", "alice", "bob")
    say(kernel, [("bob", "I adore green tea so very very much", T0),  # longer: without its sender it would lose
                 ("alice", "I adore green tea", T0 + timedelta(days=1))])
    hits = kernel.call(memory(kernel).search(kernel.agents.live["alice"].id, "what tea does bob adore", k=1))
    assert [h.item.sender for h in hits] == ["bob"]


def test_an_answer_is_found_through_the_question_before_it(kernel: Kernel) -> None:
    join(kernel, "room", "alice", "bob")
    answer = chat(kernel)
    query = "lantern festival riverton"
    hits = kernel.call(memory(kernel).search(kernel.agents.live["alice"].id, query, k=2))
    assert answer in [h.item.source_id for h in hits]  # "yes, last saturday" shares no word with the query
    everything = len(FILLER) + 2
    with_context = search(kernel, "alice", query, k=everything)
    without = search(kernel, "alice", query, k=everything, **NO_CONTEXT)
    assert relevance(with_context, answer) > relevance(without, answer) + 0.2
    fillers = [h.relevance for h in with_context if h.item.source_id not in (answer, answer - 1)]
    assert relevance(with_context, answer) > max(fillers)


def test_context_ends_at_a_long_pause(kernel: Kernel) -> None:
    join(kernel, "room", "alice", "bob")
    answer = chat(kernel, gap=timedelta(days=2))  # answered two days later: a new sitting
    query = "lantern festival riverton"
    with_context = search(kernel, "alice", query, k=10)
    without = search(kernel, "alice", query, k=10, **NO_CONTEXT)
    assert relevance(with_context, answer) == pytest.approx(relevance(without, answer), abs=1e-6)


def test_context_is_only_what_the_agent_received(kernel: Kernel) -> None:
    join(kernel, "room", "alice", "bob")
    question_at = T0 + timedelta(minutes=10)
    say(kernel, [("bob", "did you go to the lantern festival in riverton", question_at)])
    join(kernel, "room", "carol")  # joins after the question: never received it
    answer = say(kernel, [("alice", "yes, last saturday, it was magical", question_at + timedelta(minutes=1)),
                          ("bob", FILLER[0], question_at + timedelta(minutes=2))])[0]
    query = "lantern festival riverton"
    assert relevance(search(kernel, "carol", query), answer) == pytest.approx(
        relevance(search(kernel, "carol", query, **NO_CONTEXT), answer), abs=1e-6)
    assert relevance(search(kernel, "alice", query), answer) > relevance(search(kernel, "alice", query, **NO_CONTEXT), answer)


def test_a_forgotten_message_is_no_longer_context(kernel: Kernel) -> None:
    join(kernel, "room", "alice", "bob")
    answer = chat(kernel)
    question = answer - 1
    query = "lantern festival riverton"
    boosted = relevance(search(kernel, "alice", query, k=10), answer)
    kernel.call(memory(kernel).forget(kernel.agents.live["alice"].id, question, "asked to", "test"))
    after = search(kernel, "alice", query, k=10)
    assert question not in [h.item.source_id for h in after]
    assert relevance(after, answer) < boosted
    assert relevance(after, answer) == pytest.approx(relevance(search(kernel, "alice", query, k=10, **NO_CONTEXT), answer), abs=1e-6)


def test_a_reloaded_index_ranks_like_the_live_one(kernel: Kernel) -> None:
    join(kernel, "room", "alice", "bob")
    join(kernel, "hall", "alice", "bob")
    answer = chat(kernel)
    chat(kernel, start_at=T0 + timedelta(days=1), channel="hall")
    kernel.call(memory(kernel).forget(kernel.agents.live["alice"].id, answer - 3, "asked to", "test"))
    queries = ["lantern festival riverton", "what did bob cook", "alice grey weather"]

    def ranked() -> list[list[tuple[int, float]]]:
        return [[(h.item.source_id, round(h.score, 5)) for h in search(kernel, "alice", q, k=8)] for q in queries]

    live = ranked()
    memory(kernel).indexes.clear()  # cold: rebuilt from the database
    assert ranked() == live


def test_arrival_order_does_not_change_the_index() -> None:
    rng = np.random.default_rng(7)
    words = ["festival", "lantern", "soup", "kitchen", "cat", "tea", "river", "saturday", "paint", "grey"]
    items = [Item("message", i, T0 + timedelta(minutes=i), 0.5, "ab"[i % 2], " ".join(rng.choice(words, 4)), "room" if i < 12 else "hall")
             for i in range(20)]
    vectors = {item.source_id: rng.normal(size=16).astype(np.float32) for item in items}
    query = rng.normal(size=16).astype(np.float32)
    config = MemoryConfig()

    def ranked(order: list[Item]) -> list[tuple[int, float]]:
        index = AgentIndex(1)
        for item in order[:10]:
            index.add(item, vectors[item.source_id])
        index.search("lantern festival", query, config, 3)  # derived state built halfway, then extended
        for item in order[10:]:
            index.add(item, vectors[item.source_id])
        return [(h.item.source_id, round(h.score, 5)) for h in index.search("lantern festival saturday", query, config, 20)]

    shuffled = list(items)
    rng.shuffle(shuffled)
    assert ranked(shuffled) == ranked(items)


def test_bm25_scores_like_the_textbook_formula_as_it_grows() -> None:
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(40)]
    bm25, docs = BM25(), []
    for i in range(300):  # past several doublings of the postings and lengths arrays
        chosen = [str(w) for w in rng.choice(words, rng.integers(1, 8))]
        if i % 2:  # a term -> weight mapping (context words weigh less)
            doc = {w: float(rng.choice([1.0, 0.7, 0.49, 2.0])) for w in chosen}
            bm25.add(doc)
        else:  # a list of terms, repeats counted
            bm25.add(chosen)
            doc = {w: float(chosen.count(w)) for w in chosen}
        docs.append(doc)
        if i % 37 == 0 or i == 299:
            query = list(rng.choice(words, 3)) + ["absent"]
            n, avg = len(docs), sum(sum(d.values()) for d in docs) / len(docs)
            expected = np.zeros(n)
            for term in set(query):
                having = [j for j, d in enumerate(docs) if term in d]
                idf = np.log(1 + (n - len(having) + 0.5) / (len(having) + 0.5))
                for j in having:
                    tf, length = docs[j][term], sum(docs[j].values())
                    expected[j] += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / avg))
            assert len(bm25) == n
            assert np.allclose(bm25.scores(query), expected, rtol=1e-5, atol=1e-6)


def test_a_live_index_ranks_like_one_built_at_once() -> None:
    """Alternating add and search (arrays grown, derived state extended), with messages arriving late and
    messages forgotten in the middle of their sittings (links and documents patched, not rebuilt), ranks
    like an index filled at once with the same final state."""
    rng = np.random.default_rng(11)
    words = ["festival", "lantern", "soup", "kitchen", "cat", "tea", "river", "saturday", "paint", "grey", "bob"]
    gaps = [0, 1, 2, 400]  # minutes; 400 (past the 6 h gap) ends a sitting
    minutes = np.cumsum([gaps[int(rng.choice(4, p=[0.4, 0.3, 0.25, 0.05]))] * 3 for _ in range(300)])
    items = [Item("message" if i % 7 else "summary", i, T0 + timedelta(minutes=int(minutes[i])), float(rng.random()),
                  "ab"[i % 2], " ".join(rng.choice(words, 5)), ["room", "hall", None][i % 3]) for i in range(300)]
    vectors = {item.source_id: rng.normal(size=24).astype(np.float32) for item in items}
    queries = [(" ".join(rng.choice(words, 3)), rng.normal(size=24).astype(np.float32)) for _ in range(3)]
    config = MemoryConfig()
    arrival = list(items)
    for _ in range(40):  # some messages arrive late: moved later in the arrival order
        i = int(rng.integers(0, 290))
        arrival.insert(min(i + int(rng.integers(2, 30)), len(arrival)), arrival.pop(i))
    forgotten: list[int] = []

    live = AgentIndex(1)
    for i, item in enumerate(arrival):
        live.add(item, vectors[item.source_id])
        live.search(*queries[i % 3], config, 5)
        if i % 9 == 8:  # forget an already indexed message, often one with turns before and after it
            target = arrival[int(rng.integers(0, i))]
            if target.kind == "message":
                live.forget("message", target.source_id)
                live.forget("message", target.source_id)  # twice: no effect
                forgotten.append(target.source_id)
    assert live._built is not None  # patched throughout, never thrown away
    at_once = AgentIndex(1)
    for item in items:
        at_once.add(item, vectors[item.source_id])
    for source_id in forgotten:
        at_once.forget("message", source_id)
    assert len(forgotten) > 20
    assert len(live) == len(at_once) == len(items) - len(set(forgotten))
    for query, vector in queries + [("festival lantern saturday bob", queries[0][1]), ("soup kitchen tea", queries[1][1])]:
        ours, theirs = live.search(query, vector, config, 40), at_once.search(query, vector, config, 40)
        assert len(ours) == len(theirs) == 40
        for rank, (hit, other) in enumerate(zip(ours, theirs)):
            assert hit.score == pytest.approx(other.score, rel=1e-6)
            neighbours = [theirs[j].score for j in (rank - 1, rank + 1) if 0 <= j < len(theirs)]
            if all(abs(other.score - score) > 1e-9 for score in neighbours):  # not tied: the same item
                assert hit.item.source_id == other.item.source_id
                assert hit.relevance == pytest.approx(other.relevance, rel=1e-6, abs=1e-9)
    # the derived state itself: the same links, and the same BM25 scores for every word
    by_position = {item.source_id: p for p, item in enumerate(at_once.items)}
    assert [by_position[live.items[p].source_id] if p >= 0 else -1 for p in live._prev] == [
        at_once._prev[by_position[item.source_id]] for item in live.items]
    for word in words:
        ours_bm25 = live.bm25.scores([word])
        assert np.allclose(ours_bm25, at_once.bm25.scores([word])[[by_position[item.source_id] for item in live.items]], rtol=1e-6, atol=1e-9)


def test_a_forgotten_turn_leaves_the_document_of_the_turn_after_it() -> None:
    """Forgetting the middle of three turns: the third is indexed with the first's words, no longer the
    second's; forgetting the first (a pause past the gap before the third) leaves it only its own."""
    config = MemoryConfig()
    index = AgentIndex(1)
    lines = [(0, "did you go to the lantern festival"), (1, "no the parade in riverton"), (2, "yes last saturday")]
    for source_id, text in lines:
        index.add(Item("message", source_id, T0 + timedelta(minutes=source_id), 0.5, "ab"[source_id % 2], text, "room"), np.ones(4, dtype=np.float32))
    index.search("lantern", np.ones(4, dtype=np.float32), config, 3)
    third = 2

    def weight(word: str) -> float:
        return float(index.bm25.scores([word])[third])

    assert weight("parade") > 0 and weight("lantern") > 0
    index.forget("message", 1)
    assert weight("parade") == 0  # the forgotten turn's words are gone from the documents after it
    assert weight("lantern") > 0  # the turn before it is now the previous turn
    assert index._prev[third] == 0 and index._order["room"] == [0, 2]
    assert index.bm25.scores(["lantern"])[1] == 0  # the forgotten message itself: only its own words
    late = Item("message", 3, T0 + timedelta(minutes=1, seconds=30), 0.5, "a", "the riverton parade was loud", "room")
    index.add(late, np.ones(4, dtype=np.float32))
    index.search("lantern", np.ones(4, dtype=np.float32), config, 3)
    assert weight("loud") > 0 and index._prev[third] == 3  # a late turn slots in before the third
    index.forget("message", 3)
    index.forget("message", 0)
    assert weight("loud") == weight("lantern") == 0 and index._prev[third] == -1
    index.add(Item("message", 4, T0 + timedelta(hours=7), 0.5, "b", "a new day", "room"), np.ones(4, dtype=np.float32))
    index.search("lantern", np.ones(4, dtype=np.float32), config, 3)
    assert index._prev[4] == -1  # past the gap after the latest live message
    index.add(Item("message", 5, T0 + timedelta(hours=7, minutes=1), 0.5, "a", "indeed", "room"), np.ones(4, dtype=np.float32))
    index.forget("message", 4)
    index.search("lantern", np.ones(4, dtype=np.float32), config, 3)
    assert index._order["room"] == [2, 5] and index._prev[5] == -1


def test_recall_skips_what_the_prompt_already_says() -> None:
    from tobio.memory.context import distinct
    from tobio.messages import Message

    def hit(i: int, text: str) -> Hit:
        return Hit(Item("message", i, T0, 0.5, "ada", text), 1.0 - i / 10, 0.5, 0.5, 0.5)

    window = [Message(9, "dm.ada", "ada", "user", "Which train is the fastest you know? (40)", T0)]
    hits = [hit(1, "Which train is the fastest you know? (16)"),  # the question asked again, already in the window
            hit(2, "My dog Biscuit hates the fast trains."),
            hit(3, "my dog biscuit hates the fast trains!"),  # a better-ranked memory said it
            hit(4, "Fine."),  # too short to judge: kept
            hit(5, "We took the night train to Vienna in May."),
            hit(6, "I painted the shed blue.")]
    kept, skipped = distinct(hits, window, k=3)
    assert [h.item.source_id for h in kept] == [2, 4, 5] and skipped == 2
    assert [h.item.source_id for h in distinct(hits, [], k=10)[0]] == [1, 2, 4, 5, 6]


def test_recalled_memories_read_best_first_with_date_and_who() -> None:
    from tobio.memory.context import recalled_text

    hits = [Hit(Item("message", 2, T0 + timedelta(days=1), 0.5, "ada", "Biscuit ate my sock."), 0.9, 0.5, 0.5, 0.5),
            Hit(Item("reflection", 3, T0, 0.5, "ada", "Ada loves her dog."), 0.8, 0.5, 0.5, 0.5),
            Hit(Item("summary", 1, T0, 0.5, None, "They talked about dogs."), 0.7, 0.5, 0.5, 0.5)]
    assert recalled_text(hits) == ("Memory (2024-05-02, ada): Biscuit ate my sock.\n"
                                   "Memory (2024-05-01, your thought about ada): Ada loves her dog.\n"
                                   "Memory (2024-05-01, summary): They talked about dogs.")
    assert recalled_text([]) == ""
