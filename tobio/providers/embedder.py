"""Sentence embeddings on llama.cpp: a drop-in for what Tobio used of sentence-transformers.

`load_embedder("all-MiniLM-L6-v2")` (or a sentence-transformers folder, a package shipping one, or a
BERT .gguf) returns an `Embedder` whose `encode(texts)` gives what `SentenceTransformer.encode` gave:
float32 rows, mean-pooled over [CLS] text [SEP] and L2-normalised, texts cut at the model's
`max_seq_length` (256 word pieces for MiniLM) the way its tokenizer cuts them. The weights are turned
into a GGUF once (bert_gguf.py); PyTorch, transformers and sentence-transformers are not needed.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from tobio.errors import ProviderSetupError

if TYPE_CHECKING:
    import numpy as np

BATCH_TOKENS = 512  # tokens decoded together: longer batches pay for attention across all of them
_open: weakref.WeakSet[Embedder] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Free llama.cpp models before interpreter teardown (their __del__ fails once modules are gone)."""
    for embedder in list(_open):
        embedder.close()


class WordPieceTokenizer:
    """The model's own tokenizer (llama.cpp's WordPiece), for counting: `encode` as a HF tokenizer's."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama

    def encode(self, text: str) -> list[int]:
        """Token ids with [CLS] and [SEP], not truncated (what `tokenizer.encode(text)` returned)."""
        ids: list[int] = self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        return ids


class Embedder:
    """A BERT sentence encoder in llama.cpp; calls are serialised (a llama.cpp context is not re-entrant)."""

    def __init__(self, gguf_path: str | os.PathLike[str], n_threads: int | None = None,
                 batch_tokens: int = BATCH_TOKENS) -> None:
        from tobio.providers.cpu import require_cpu_baseline

        require_cpu_baseline()  # before llama.cpp loads: an unsupported CPU would die inside it
        import llama_cpp

        from tobio.providers.bert_gguf import MAX_SEQ_KEY, NORMALIZE_KEY
        from tobio.providers.quiet import quiet_this_thread, route_llama_log

        route_llama_log()
        self.path = Path(gguf_path)
        # verbose=True: llama-cpp-python's quiet mode silences fds 1 and 2 for the whole process while it
        # loads (quiet.py); its log is routed to logging and its prints are dropped for this thread only.
        # Pooling comes from the file (mean for MiniLM, as its sentence-transformers config says).
        with quiet_this_thread():
            self._llama = llama_cpp.Llama(
                model_path=str(self.path), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED,
                n_ctx=batch_tokens, n_batch=batch_tokens, n_ubatch=batch_tokens,
                n_threads=n_threads or os.cpu_count(), n_threads_batch=n_threads or os.cpu_count(), verbose=True,
            )
        self._llama.verbose = False
        meta = self._llama.metadata
        if meta.get("general.architecture") != "bert":
            self._llama.close()
            raise ProviderSetupError(f"{self.path} is not a BERT embedding model (architecture {meta.get('general.architecture')!r})")
        train_ctx = int(meta.get("bert.context_length", 512))
        self.max_seq_length = min(int(meta.get(MAX_SEQ_KEY, train_ctx)), train_ctx, batch_tokens)
        self.normalize = meta.get(NORMALIZE_KEY, "true").lower() == "true"
        self.dimension = int(self._llama.n_embd())
        self.tokenizer = WordPieceTokenizer(self._llama)
        self._sep = int(self._llama.token_eos())
        self._n_seq_max = int(self._llama.context_params.n_seq_max)
        self._batch_tokens = batch_tokens
        self._lock = threading.Lock()
        _open.add(self)

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
        import llama_cpp
        import numpy as np

        # llama-cpp-python's own Llama.embed does the same with these, but cuts a long text's closing [SEP]
        # and tokenizes again: its batch and context are used directly (both untyped there).
        ctx: Any = self._llama._ctx
        batch: Any = self._llama._batch
        batch.reset()
        for seq, i in enumerate(group):
            batch.add_sequence(token_lists[i], seq, True)
        ctx.kv_cache_clear()  # no memory in an encoder; kept as Llama.embed does, for other architectures
        ctx.decode(batch)
        for seq, i in enumerate(group):
            pointer = llama_cpp.llama_get_embeddings_seq(ctx.ctx, seq)
            out[i] = np.ctypeslib.as_array(pointer, shape=(self.dimension,))
        batch.reset()

    def close(self) -> None:
        """Free the llama.cpp model now instead of at garbage collection (a second call does nothing)."""
        with self._lock:
            self._llama.close()
        _open.discard(self)


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
