"""Emotion, measured parts: the EmoBank head on memory's vectors, personality, OCC emotions with causes,
mood-congruent recall, the switches, and the training script."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from tobio.config.schema import KernelConfig
from tobio.emotion.affect import Affect, Mood
from tobio.emotion.emotions import MOST, Emotion, arise, current, name_for
from tobio.emotion.head import FEATURES, HEAD_PATH, Head, features, shipped
from tobio.emotion.module import EmotionModule
from tobio.emotion.personality import half_life_factor, mehrabian, sensitivity
from tobio.emotion.train import ALPHAS, Corpus, fit, load_corpus
from tobio.errors import ConfigError
from tobio.hooks import SHOULD_ANSWER
from tobio.kernel import Kernel
from tobio.memory.service import Memory
from tobio.persona.cards import card_to_persona, persona_to_card
from tobio.persona.schema import BigFive, Persona

from conftest import write
from helpers import wait_until

T0 = datetime(2026, 1, 1, 12, 0, 0)
SAMPLE = Path(__file__).parent / "data" / "emobank_sample.csv"
MIRROR = Path("/work/.mirror/JULIELab+EmoBank/repo")
KIND = ["Thank you so much, you were wonderful and kind to me!", "I love how clever and generous you are."]
CRUEL = ["You are useless and I hate you!", "This is awful, you stupid machine."]


@pytest.fixture(scope="module")
def embedder() -> Iterator[object]:
    from tobio.providers.embedder import load_embedder

    model = load_embedder("all-MiniLM-L6-v2")
    yield model
    model.close()


def start(url: str, memory: bool = True, **settings: object) -> Kernel:
    config = KernelConfig(
        modules=["scripted", "models", "persona", *(["memory"] if memory else []), "emotion"],
        providers={"s": {"type": "scripted", "replies": ["I see."]}},
        models={"chat-default": {"provider": "s", "model": "x", "purpose": "chat", "params": {"temperature": 0.5}}},
        settings={"emotion": {"half_life_s": 60.0, **settings}},
    )
    return Kernel(config, database=url).start()


def user(kernel: Kernel, name: str = "ben") -> object:
    """A person on the room (messages need a sender that is an agent)."""
    return kernel.call(kernel.agents.ensure_user(name, ("room",)))


def persona_agent(kernel: Kernel, tmp_path: Path, name: str = "ada", big_five: str = "") -> None:
    write(tmp_path / f"{name}-p.yaml", f"name: {name.title()}\ndescription: An engineer.\n{big_five}")
    agent = write(tmp_path / f"{name}.yaml", f"name: {name}\ntype: persona\npersona: {name}-p.yaml\nchannels: [room]\n")
    kernel.run(f"agent spawn {agent}")


# -- the head ---------------------------------------------------------------------------------------
def test_shipped_head_reads_kindness_as_pleasant_and_cruelty_as_not(embedder: object) -> None:
    head = shipped()
    assert head.dimension == 384 and "CC-BY-SA" in head.meta["license"] and head.meta["embedder"] == "all-MiniLM-L6-v2"
    vectors = embedder.encode(["ada: " + t for t in KIND + CRUEL], normalize_embeddings=True)  # type: ignore[attr-defined]
    pushes = [head.push(v, t) for v, t in zip(vectors, KIND + CRUEL)]
    assert min(p[0] for p in pushes[:2]) > 0.1 > -0.1 > max(p[0] for p in pushes[2:])
    assert all(-1 <= x <= 1 for p in pushes for x in p)
    linear = head.linear(vectors)[:, 0]  # the vector alone (what recall uses) agrees on the sign
    assert min(linear[:2]) > 3 > max(linear[2:])


def test_the_words_features_count_what_a_lexicon_misses() -> None:
    calm, loud = features("I am fine."), features("I am NOT fine!!! Why?")
    named = dict(zip(FEATURES, loud))
    assert named["exclamations"] == 3 and named["questions"] == 1 and named["negations"] == 1 and named["caps_share"] > 0
    assert dict(zip(FEATURES, calm))["vader_compound"] > 0 > named["vader_compound"]
    assert len(features("word " * 5000)) == len(FEATURES)  # a long text is read through VADER's bounded window


def test_head_round_trips_through_its_file(tmp_path: Path) -> None:
    head = shipped()
    head.save(tmp_path / "h.json")
    again = Head.load(tmp_path / "h.json")
    probe = np.linspace(-0.1, 0.1, head.dimension)
    assert again.push(probe, "Hello there!") == pytest.approx(head.push(probe, "Hello there!"), abs=1e-4)
    assert again.context_weight == head.context_weight and again.meta == head.meta
    assert head.network is not None and "f16" in json.loads((tmp_path / "h.json").read_text())["network"]["w1"]


def test_a_head_trained_on_other_features_is_refused(tmp_path: Path) -> None:
    data = json.loads(HEAD_PATH.read_text(encoding="utf-8"))
    data["features"] = data["features"][:-1]
    (tmp_path / "h.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="other features"):
        Head.load(tmp_path / "h.json")


def test_training_fits_and_picks_alpha_on_dev(embedder: object, tmp_path: Path) -> None:
    """The training code end to end on the shipped sample (its test rows relabelled train/dev: the real
    splits are in the mirror): alpha is chosen on dev, and the head it writes loads and correlates."""
    sample = load_corpus(SAMPLE)
    rows = sample.where("test")
    splits = list(sample.splits)
    for j, i in enumerate(rows):
        splits[i] = "dev" if j % 4 == 0 else "train"
    corpus = Corpus(sample.ids, sample.texts, splits, sample.ratings)
    vectors = embedder.encode(corpus.texts, normalize_embeddings=True).astype(np.float64)  # type: ignore[attr-defined]
    head, report = fit(corpus, vectors)
    assert report["alpha_v"] in ALPHAS and report["dev_r_v_linear"] > 0.2 and report["dev_r_v"] > 0.2
    assert 1 <= report["epochs"] <= 30 and report["target"] == "reader"
    head.save(tmp_path / "h.json")
    again = Head.load(tmp_path / "h.json")
    assert again.dimension == 384 and again.network is not None
    rated = again.ratings(vectors[rows], [corpus.texts[i] for i in rows])
    assert np.corrcoef(rated[:, 0], corpus.ratings[rows, 0])[0, 1] > 0.3  # it learned its own training data


@pytest.mark.skipif(not MIRROR.exists(), reason="EmoBank's mirror is not on this machine")
def test_emobank_mirror_has_the_published_splits() -> None:
    corpus = load_corpus(MIRROR)
    assert [len(corpus.where(s)) for s in ("train", "dev", "test")] == [8062, 1000, 1000]
    assert corpus.combined is not None and corpus.combined.shape == corpus.ratings.shape
    assert sum(p >= 0 for p in corpus.previous()) > 5000  # most sentences have one before them in their document


# -- personality ------------------------------------------------------------------------------------
def test_personality_sets_baseline_sensitivity_and_half_life() -> None:
    neutral = BigFive()
    assert mehrabian(neutral) == Affect(0.0, 0.0, 0.0) and sensitivity(neutral) == 1 and half_life_factor(neutral) == 1
    nervy, steady = BigFive(neuroticism=0.9), BigFive(neuroticism=0.1)
    assert mehrabian(nervy).pleasure < 0 < mehrabian(nervy).arousal  # Mehrabian: low stability, less pleasure, more arousal
    assert mehrabian(BigFive(extraversion=1.0)).dominance == pytest.approx(0.6)
    assert sensitivity(nervy) > 1 > sensitivity(steady) and half_life_factor(nervy) > 1 > half_life_factor(steady)


def test_big_five_in_persona_files_and_cards(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neuroticism"):
        Persona(name="x", big_five={"neuroticism": 1.5})  # type: ignore[arg-type]
    card = {"spec": "chara_card_v2", "spec_version": "2.0",
            "data": {"name": "Mo", "description": "", "extensions": {"tobio": {"big_five": {"extraversion": 0.9}}}}}
    persona = card_to_persona(card, "mo.json")
    assert persona.big_five.extraversion == 0.9 and persona.big_five.neuroticism == 0.5
    assert persona_to_card(persona)["data"]["extensions"]["tobio"]["big_five"]["extraversion"] == 0.9
    with pytest.raises(ConfigError, match="big_five"):
        card_to_persona({**card, "data": {**card["data"], "extensions": {"tobio": {"big_five": {"openness": 2}}}}}, "bad.json")


# -- emotions ---------------------------------------------------------------------------------------
def test_an_insult_arises_as_anger_at_its_sender_and_fades() -> None:
    hit = arise(Affect(-0.6, 0.5, 0.2), "incoming", "ada: you are useless", "ada", T0)
    assert hit is not None and hit.name == "anger" and hit.source == "ada" and 0.5 < hit.intensity <= 1
    assert hit.phrase() == 'anger at ada (because of "you are useless")'
    assert name_for(Affect(0.5, 0.2, -0.2), "incoming") in ("gratitude", "admiration")
    assert name_for(Affect(0.4, 0.3, 0.3), "outgoing") == "pride"  # one's own words: attributed to oneself
    assert arise(Affect(0.01, 0.0, 0.0), "incoming", "hm", "ada", T0) is None  # too weak to be an emotion
    later = current((hit,), T0 + timedelta(seconds=60), 60.0)
    assert later[0].intensity == pytest.approx(hit.intensity / 2)
    assert current((hit,), T0 + timedelta(hours=1), 60.0) == ()
    many = tuple(Emotion("joy", 0.1 * (i + 1), str(i), T0) for i in range(9))
    assert [e.cause for e in current(many, T0, 60.0)] == ["8", "7", "6", "5", "4", "3"][:MOST]


def test_mood_state_keeps_emotions_and_reads_old_states() -> None:
    mood = Mood(Affect(0.1, 0.2, 0.3), Affect(), T0, (Emotion("joy", 0.5, "ada: hi", T0, "ada", T0),))
    again = Mood.from_state(json.loads(json.dumps(mood.to_state())))
    assert again == mood and again.strongest is not None and again.strongest.name == "joy"
    old = {"affect": {"pleasure": 0.1, "arousal": 0, "dominance": 0}, "baseline": {"pleasure": 0, "arousal": 0, "dominance": 0},
           "at": T0.isoformat()}
    assert Mood.from_state(old).emotions == ()


# -- in the kernel ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_messages_are_appraised_from_memorys_vectors_with_emotions_and_causes(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, wait_s=60.0)  # a loaded machine may take seconds to load the embedding model
    try:
        persona_agent(kernel, tmp_path, big_five="big_five: {neuroticism: 0.8}\n")
        ada = kernel.agents.live["ada"]
        module = kernel.modules.get(EmotionModule)
        assert module is not None and module.embeds()
        ben = user(kernel)
        for text in CRUEL:
            kernel.post_sync("room", text, sender=ben)
        wait_until(lambda: ada.turns == len(CRUEL), timeout=120)
        kernel.call(Memory.of(kernel).settle())
        assert module.appraised["learned"] >= len(CRUEL) and module.appraised["lexicon"] == 0
        shown = kernel.run("emotion show ada")
        assert shown.data["affect"]["pleasure"] < shown.data["baseline"]["pleasure"] < 0.2  # neurotic: below the default
        assert shown.data["half_life_s"] == pytest.approx(60.0 * 2 ** 0.6)
        causes = {e["cause"] for e in shown.data["emotions"] if e["source"] == "ben"}
        assert any("useless" in c or "stupid" in c for c in causes), shown.data["emotions"]
        prompt = kernel.run("agent prompt ada")
        block = next(row[2] for row in prompt.rows if "Your mood right now:" in row[2])
        assert "You feel" in block and "ben" in block, block
        history = kernel.run("emotion history ada")
        assert any(row["cause"] and "ben:" in row["cause"] for row in history.data)
        replay = kernel.run("agent replay ada")
        assert "because of" in json.dumps(replay.data, default=str)
    finally:
        kernel.close()


def test_without_memory_the_lexicon_appraises(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, memory=False)
    try:
        persona_agent(kernel, tmp_path)
        module = kernel.modules.get(EmotionModule)
        assert module is not None and not module.embeds()
        ben = user(kernel)
        kernel.post_sync("room", CRUEL[0], sender=ben)
        wait_until(lambda: kernel.agents.live["ada"].turns == 1)
        assert module.appraised["lexicon"] >= 1 and module.appraised["learned"] == 0
        felt = [e for e in kernel.run("emotion show ada").data["emotions"] if e["source"] == "ben"][0]
        assert felt["name"] in ("anger", "distress", "reproach") and felt["cause"].startswith("ben: You are useless")
        picture = tmp_path / "mood.svg"
        plotted = kernel.run(f"emotion plot ada --out {picture}")
        drawn = ElementTree.fromstring(picture.read_text("utf-8"))
        assert drawn.get("viewBox") == "0 0 800 360" and len(drawn.findall("{http://www.w3.org/2000/svg}polyline")) == 3
        assert any(c.findtext("{http://www.w3.org/2000/svg}title", "").startswith(f"{felt['name']} ")
                   for c in drawn.iter("{http://www.w3.org/2000/svg}circle"))  # the emotion, marked
        assert any(e["cause"].startswith("ben:") for e in plotted.data["emotions"]) and len(plotted.data["trace"]) > 100
        assert plotted._repr_html_().startswith('<img src="data:image/svg+xml;base64,')  # a figure in a notebook
    finally:
        kernel.close()


def test_effects_switch_off(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, memory=False, mood_in_prompt=False, emotion_in_prompt=False, mood_in_sampling=False)
    try:
        persona_agent(kernel, tmp_path)
        kernel.run("emotion set ada --arousal 0.9 --pleasure -0.8")
        prompt = kernel.run("agent prompt ada")
        assert not any("Your mood" in row[2] or "You feel" in row[2] for row in prompt.rows)
        assert prompt.data["params"].get("temperature", 0.5) == pytest.approx(0.5)
        kernel.run("emotion set ada --baseline --pleasure -0.5")
        assert kernel.run("emotion show ada").data["baseline"]["pleasure"] == -0.5  # kept over the persona's
    finally:
        kernel.close()


def test_recall_is_mood_congruent_and_bounded(duckdb_url: str, tmp_path: Path, embedder: object) -> None:
    kernel = start(duckdb_url)
    try:
        persona_agent(kernel, tmp_path)
        module = kernel.modules.get(EmotionModule)
        assert module is not None
        ada = kernel.agents.live["ada"]
        vectors = embedder.encode(["ben: We laughed all day at the lovely picnic.", "ben: My dog died and I cried all night."],  # type: ignore[attr-defined]
                                  normalize_embeddings=True)
        kernel.run("emotion set ada --pleasure -0.9")
        sad = module.recall_bias(ada.id, vectors)
        assert isinstance(sad, np.ndarray) and sad[1] > 0 > sad[0]  # a sad mood recalls the sad memory first
        assert np.all(np.abs(sad) <= module.settings.recall_congruence + 1e-9)
        kernel.run("emotion set ada --pleasure 0.9")
        happy = module.recall_bias(ada.id, vectors)
        assert isinstance(happy, np.ndarray) and happy[0] > 0 > happy[1]
        kernel.run("emotion set ada --pleasure 0.0 --arousal 0 --dominance 0")
        assert module.recall_bias(ada.id, vectors) == 0.0  # a neutral mood biases nothing
    finally:
        kernel.close()


def test_recovery_follows_the_personalitys_half_life(duckdb_url: str, tmp_path: Path) -> None:
    async def listen_only(_agent: object, _delivery: object) -> bool:
        return False  # no replies: their own words (said now, not at T0) would move the moods too

    kernel = start(duckdb_url, memory=False)
    try:
        kernel.hooks.add(SHOULD_ANSWER, listen_only)
        persona_agent(kernel, tmp_path, "nervy", "big_five: {neuroticism: 1.0}\n")
        persona_agent(kernel, tmp_path, "steady", "big_five: {neuroticism: 0.0}\n")
        ben = user(kernel)
        for i, text in enumerate(CRUEL * 2):
            kernel.post_sync("room", text, sender=ben, created_at=T0 + timedelta(seconds=i))
        module = kernel.modules.get(EmotionModule)
        assert module is not None
        wait_until(lambda: module.appraised["lexicon"] == 8)
        end = T0 + timedelta(seconds=3)
        moved = {}
        for name, factor in (("nervy", 2.0), ("steady", 0.5)):
            hurt = kernel.run(f"emotion show {name} --at {end.isoformat()}").data
            base = hurt["baseline"]["pleasure"]
            later = kernel.run(f"emotion show {name} --at {(end + timedelta(seconds=60 * factor)).isoformat()}").data
            assert later["affect"]["pleasure"] - base == pytest.approx((hurt["affect"]["pleasure"] - base) / 2, abs=1e-3)
            moved[name] = base - hurt["affect"]["pleasure"]
        assert moved["nervy"] > moved["steady"] > 0 and math.isfinite(moved["nervy"])
    finally:
        kernel.close()
