"""The embedded provider's embedding model, on sentence-transformers (all-MiniLM-L6-v2 from PyPI).

The model host loads embedders through `load_embedder` only, so another back end (a GGUF embedder on
llama.cpp) replaces this one by changing the host's import of that function.
"""

from __future__ import annotations

import os
from typing import Any

from tobio.progress import loading
from tobio.providers.files import embedder_path
from tobio.providers.quiet import quiet_this_thread


class SentenceEmbedder:
    """A loaded sentence-transformers model: normalised vectors, and its tokenizer's counts."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True).tolist()
        return vectors

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer.encode(text))

    def close(self) -> None:
        """Drop the weights (torch frees them with the last reference)."""
        self.model = None


def load_embedder(name: str) -> SentenceEmbedder:
    """Load a bundled embedding model by name, or a local sentence-transformers directory, offline."""
    path = str(embedder_path(name))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are on disk; never reach for a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our own progress shows instead
    with loading(f"loading embedding model {name}"), quiet_this_thread():
        _quiet_transformers()
        from sentence_transformers import SentenceTransformer

        return SentenceEmbedder(SentenceTransformer(path, device="cpu"))


def _quiet_transformers() -> None:
    """transformers' "Loading weights" bar and warnings would land in scripts and mid-chat on stderr."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
