"""Sentence embeddings on llama.cpp: a drop-in for what Tobio used of sentence-transformers.

`load_embedder("all-MiniLM-L6-v2")` (or a sentence-transformers folder, a package shipping one, or a
BERT .gguf) returns an `Embedder` whose `encode(texts)` gives what `SentenceTransformer.encode` gave:
float32 rows, mean-pooled over [CLS] text [SEP] and L2-normalised, texts cut at the model's
`max_seq_length` (256 word pieces for MiniLM) the way its tokenizer cuts them. The weights are turned
into a GGUF once (bert_gguf.py); PyTorch, transformers and sentence-transformers are not needed.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from tobio.errors import ProviderSetupError

if TYPE_CHECKING:
    import numpy as np

    from tobio.providers.llama_adapter import LlamaEncoder

BATCH_TOKENS = 512  # tokens decoded together: longer batches pay for attention across all of them
# A batch this short (a recall query) runs on one thread. Its forward pass is a few ms, and llama.cpp's
# threads meet at a barrier after every op: on a busy machine a descheduled partner stalls the other, and
# measured with other work on both cores a 13-token query took 394 ms on 2 threads against 31 ms on 1
# (on idle cores 2.6 against 4.3 ms). Indexing batches (hundreds of tokens) keep every thread.
SHORT_TOKENS = 64


class WordPieceTokenizer:
    """The model's own tokenizer (llama.cpp's WordPiece), for counting: `encode` as a HF tokenizer's."""

    def __init__(self, encoder: LlamaEncoder) -> None:
        self._encoder = encoder

    def encode(self, text: str) -> list[int]:
        """Token ids with [CLS] and [SEP], not truncated (what `tokenizer.encode(text)` returned)."""
        return self._encoder.tokenize(text)


class Embedder:
    """A BERT sentence encoder in llama.cpp; calls are serialised (a llama.cpp context is not re-entrant)."""

    def __init__(self, gguf_path: str | os.PathLike[str], n_threads: int | None = None,
                 batch_tokens: int = BATCH_TOKENS) -> None:
        from tobio.providers.bert_gguf import MAX_SEQ_KEY, NORMALIZE_KEY
        from tobio.providers.llama_adapter import LlamaEncoder

        self.path = Path(gguf_path)
        threads = n_threads or os.cpu_count() or 1
        self._threads = threads
        self._encoder = LlamaEncoder.load(self.path, n_ctx=batch_tokens, n_threads=threads)
        meta = self._encoder.metadata
        if meta.get("general.architecture") != "bert":
            self._encoder.close()
            raise ProviderSetupError(f"{self.path} is not a BERT embedding model (architecture {meta.get('general.architecture')!r})")
        train_ctx = int(meta.get("bert.context_length", 512))
        self.max_seq_length = min(int(meta.get(MAX_SEQ_KEY, train_ctx)), train_ctx, batch_tokens)
        self.normalize = meta.get(NORMALIZE_KEY, "true").lower() == "true"
        self.dimension = self._encoder.dimension
        self.tokenizer = WordPieceTokenizer(self._encoder)
        self._sep = self._encoder.separator
        self._n_seq_max = self._encoder.max_sequences
        self._batch_tokens = batch_tokens
        self._lock = threading.Lock()

    def get_sentence_embedding_dimension(self) -> int:
        """Length of a vector (384 for MiniLM), as SentenceTransformer names it."""
        return self.dimension

    def tokenize(self, text: str) -> list[int]:
        """[CLS] text [SEP], cut to `max_seq_length` keeping the closing [SEP] (the HF tokenizer's truncation)."""
        ids = self.tokenizer.encode(text)
        if len(ids) > self.max_seq_length:
            ids = ids[: self.max_seq_length - 1] + [self._sep]
        return ids

    @overload
    def encode(self, sentences: str, batch_size: int = ..., show_progress_bar: bool | None = ...,
               convert_to_numpy: bool = ..., normalize_embeddings: bool = ..., **unused: Any) -> np.ndarray[Any, Any]: ...

    @overload
    def encode(self, sentences: Sequence[str], batch_size: int = ..., show_progress_bar: bool | None = ...,
               convert_to_numpy: bool = ..., normalize_embeddings: bool = ..., **unused: Any) -> np.ndarray[Any, Any]: ...

    def encode(self, sentences: str | Sequence[str], batch_size: int = 32, show_progress_bar: bool | None = None,
               convert_to_numpy: bool = True, normalize_embeddings: bool = False, **unused: Any) -> np.ndarray[Any, Any]:
        """Vectors for `sentences`: shape (n, dim) float32, or (dim,) for one string, as SentenceTransformer's.

        Rows are L2-normalised when the model ends in a Normalize module (MiniLM does) or when asked.
        `batch_size`, `show_progress_bar` and `convert_to_numpy` are accepted for compatibility; batches
        here are cut by tokens instead.
        """
        import numpy as np

        single = isinstance(sentences, str)
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        with self._lock:
            token_lists = [self.tokenize(t) for t in texts]
            order = sorted(range(len(texts)), key=lambda i: len(token_lists[i]))
            group: list[int] = []
            used = 0
            for i in order:
                n = len(token_lists[i])
                if group and (used + n > self._batch_tokens or len(group) >= self._n_seq_max):
                    self._decode(group, token_lists, out)
                    group, used = [], 0
                group.append(i)
                used += n
            if group:
                self._decode(group, token_lists, out)
        if self.normalize or normalize_embeddings:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.maximum(norms, 1e-12)  # sentence-transformers' F.normalize: an all-zero row stays zero
        return out[0] if single else out

    def _decode(self, group: list[int], token_lists: list[list[int]], out: np.ndarray[Any, Any]) -> None:
        """Run one batch of sequences through the encoder and copy each pooled vector into `out`."""
        import numpy as np

        pooled = np.zeros((len(group), self.dimension), dtype=np.float32)
        sequences = [token_lists[i] for i in group]
        short = sum(map(len, sequences)) <= SHORT_TOKENS
        self._encoder.pooled(sequences, pooled, n_threads=1 if short else self._threads)
        out[group] = pooled

    # What the model host calls (tobio/providers/model_host.py).
    def embed(self, texts: list[str]) -> list[list[float]]:
        """Normalised vectors as lists (what the provider's `embed` returns)."""
        vectors: list[list[float]] = self.encode(texts, normalize_embeddings=True).tolist()
        return vectors

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def close(self) -> None:
        """Free the llama.cpp model now instead of at garbage collection (a second call does nothing)."""
        with self._lock:
            self._encoder.close()


def resolve_model_dir(path_or_package: str | os.PathLike[str]) -> Path:
    """A sentence-transformers folder from a bundled name, a folder path, or an installed package's name."""
    text = str(path_or_package)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    from tobio.providers.files import BUNDLED_EMBEDDERS, embedder_path

    if text.lower().split("/")[-1] in BUNDLED_EMBEDDERS:
        return Path(embedder_path(text))
    if text.isidentifier():
        spec = importlib.util.find_spec(text)  # the package's folder, without running its __init__
        if spec is not None and spec.submodule_search_locations:
            base = Path(next(iter(spec.submodule_search_locations)))
            for candidate in (base, *sorted(p.parent for p in base.glob("*/model.safetensors"))):
                if (candidate / "model.safetensors").is_file() and (candidate / "config.json").is_file():
                    return candidate
            raise ProviderSetupError(f"the package {text} ships no sentence-transformers model (model.safetensors)")
    raise ProviderSetupError(f"no embedding model '{text}' (a sentence-transformers folder, a package shipping one, or a .gguf)")


def load_embedder(path_or_package: str | os.PathLike[str], n_threads: int | None = None) -> Embedder:
    """An `Embedder` for a BERT .gguf, or for a sentence-transformers model (converted once, then cached)."""
    path = Path(path_or_package).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ProviderSetupError(f"no GGUF file '{path}'")
        return Embedder(path, n_threads=n_threads)
    from tobio.providers.bert_gguf import cached_gguf

    return Embedder(cached_gguf(resolve_model_dir(path_or_package)), n_threads=n_threads)
