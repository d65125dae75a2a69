"""Every use of llama-cpp-python's internals, in one place, written against one pinned version.

Tobio needs more of llama.cpp than `Llama`'s public API offers: saving and restoring one sequence's KV
cells, moving cells, decoding at chosen positions, a second sequence, eval counters, its C log. Those
live behind private attributes (`_ctx`, `_model`, `_batch`, `_requires_eval`) and low-level
`llama_cpp.llama_*` calls that change between releases. Everything else in Tobio talks to
`LlamaEngine`, so an upgrade of llama-cpp-python means reading this file against the new release and
changing `PINNED_VERSION` together with pyproject.toml's pin.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tobio.progress import loading
from tobio.providers.cpu import require_cpu_baseline
from tobio.providers.quiet import quiet_this_thread

log = logging.getLogger(__name__)
llama_log = logging.getLogger("tobio.llama")

PINNED_VERSION = "0.3.36"  # pyproject.toml pins llama-cpp-python==0.3.36: change both together
SEQ = 0  # llama-cpp-python decodes everything into sequence 0

# llama.cpp's log callback is process-wide in C, so the reference that keeps ours alive (llama.cpp holds
# a raw pointer to it) is process-wide too: one, set once, shared by every engine.
_log_callback: Any = None

PromptHook = Callable[[Sequence[int]], bool]  # sees a prompt's tokens before generation; False: generate nothing


def version_mismatch(installed: str) -> str | None:
    """One line saying that `installed` is not the version this adapter was written for (None if it is)."""
    if installed == PINNED_VERSION:
        return None
    return (f"llama-cpp-python {installed} is installed, but Tobio's adapter (tobio/providers/llama_adapter.py) "
            f"is written for {PINNED_VERSION}: KV state reuse may fail or fall back to reading prompts in full")


def route_llama_log() -> None:
    """Send llama.cpp's and ggml's log lines to the `tobio.llama` logger (debug) instead of stderr."""
    global _log_callback
    if _log_callback is not None:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]  # ctypes CFUNCTYPE decorator, untyped
    def to_logging(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        # ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (a continued line: keep it quiet)
        line = text.decode("utf-8", "replace").rstrip()
        if level == 4:
            llama_log.error("%s", line)
        elif level == 3:
            llama_log.warning("%s", line)
        else:
            llama_log.debug("%s", line)

    _log_callback = to_logging
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


class LlamaEngine:
    """One llama.cpp model and its context, with the operations Tobio's KV state store needs.

    `llama` is the `llama_cpp.Llama` itself, for its public API (tokenize, eval, reset, metadata)."""

    def __init__(self, llama: Any) -> None:
        self.llama = llama
        self.prompt_tokens = 0  # of the last prompt a completion read
        self._on_prompt: PromptHook | None = None
        generate = llama.generate

        # `generate` is the one place that sees each prompt's exact tokens just before llama-cpp-python
        # matches them against the live context, so the store prepares the context there.
        def generate_with_hook(tokens: Sequence[int], *args: Any, **kwargs: Any) -> Generator[int, Any, None]:
            self.prompt_tokens = len(tokens)
            if self._on_prompt is not None and not self._on_prompt(tokens):
                return
            yield from generate(tokens, *args, **kwargs)

        llama.generate = generate_with_hook

    @classmethod
    def load(cls, path: Path, *, n_ctx: int, n_threads: int, n_batch: int, seed: int, sequences: int = 1) -> LlamaEngine:
        """Load a GGUF file quietly (its chatter goes to the log), with `sequences` KV sequences."""
        require_cpu_baseline()  # before the import: an unsupported CPU dies inside llama.cpp itself
        import llama_cpp

        mismatch = version_mismatch(llama_cpp.__version__)
        if mismatch:
            log.warning("%s", mismatch)
        route_llama_log()
        size_mb = path.stat().st_size / 1e6
        with loading(f"loading {path.name} ({size_mb:.0f} MB)"), quiet_this_thread():
            # verbose=True: with False, llama-cpp-python points fds 1 and 2 at /dev/null for the whole
            # process while it loads, and other threads' output is lost. Its chatter is routed instead.
            llama = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch,
                                    seed=seed, verbose=True)
            if sequences > 1:
                _rebuild_context(llama, sequences)
        llama.verbose = False  # no per-call timing prints from here on
        return cls(llama)

    def close(self) -> None:
        """Free the model and its context (never while a call on it runs)."""
        self.llama.close()

    @property
    def is_open(self) -> bool:
        """Whether the model and its context are still in memory."""
        return self.llama._ctx.ctx is not None

    # -- generation ------------------------------------------------------------------------------
    def stream_chat(self, messages: list[dict[str, Any]], params: dict[str, Any],
                    on_prompt: PromptHook | None = None) -> Generator[dict[str, Any], None, None]:
        """Stream a chat completion's parts; `on_prompt` sees the prompt's tokens first (close the iterator
        when stopping early, so the hook does not outlive the call)."""
        self._on_prompt = on_prompt
        self.prompt_tokens = 0
        try:
            yield from self.llama.create_chat_completion(messages=messages, stream=True, **params)
        finally:
            self._on_prompt = None

    def tokenize(self, text: str) -> list[int]:
        """Tokens of `text` as the chat template would see them (special tokens parsed, no BOS)."""
        tokens: list[int] = self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return tokens

    def reset_eval_counters(self) -> None:
        import llama_cpp

        llama_cpp.llama_perf_context_reset(self.llama._ctx.ctx)

    def prompt_tokens_evaluated(self) -> int:
        """Prompt tokens llama.cpp decoded in batches since the counters were reset.

        A one-token remainder is decoded alone and counted with the generated tokens instead."""
        import llama_cpp

        return int(llama_cpp.llama_perf_context(self.llama._ctx.ctx).n_p_eval)

    # -- the live context's tokens -----------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return int(self.llama.n_tokens)

    @property
    def tokens(self) -> npt.NDArray[np.intc]:
        """The live context's tokens (a view: copy it to keep it)."""
        ids: npt.NDArray[np.intc] = self.llama.input_ids[: self.llama.n_tokens]
        return ids

    def rewind(self, n: int) -> None:
        """Keep the first `n` tokens as the context's prefix; the next eval overwrites the cells after them."""
        self.llama.n_tokens = n

    def truncate(self, n: int) -> None:
        """Drop sequence 0's cells from position `n` on, and the tokens with them."""
        if self.llama.n_tokens > n:
            self.llama._ctx.kv_cache_seq_rm(SEQ, n, -1)
            self.llama.n_tokens = n

    def eval(self, tokens: Sequence[int]) -> None:
        self.llama.eval(tokens)

    def reset(self) -> None:
        """Forget the live tokens (their cells are overwritten by the next prompt)."""
        self.llama.reset()

    def clear(self) -> None:
        """Empty every sequence and forget the live tokens: the next prompt is read in full."""
        self.llama._ctx.kv_cache_clear()
        self.llama.reset()

    def settle(self) -> None:
        """Wait for queued decodes (else llama.cpp counts them with the next request's work) and mark the
        logits stale: the next prompt replays its last token instead of sampling from them."""
        import llama_cpp

        llama_cpp.llama_synchronize(self.llama._ctx.ctx)
        self.llama._requires_eval = True

    def adopt(self, tokens: npt.NDArray[np.intc]) -> None:
        """Say that the cells now hold `tokens` (after a restore or moves); no logits come with them."""
        n = len(tokens)
        self.llama.input_ids[:n] = tokens
        self.llama.n_tokens = n
        self.llama._requires_eval = True

    # -- KV cells ----------------------------------------------------------------------------------
    def seq_remove(self, seq: int, p0: int, p1: int) -> None:
        """Drop `seq`'s cells in [p0, p1) (p1 -1: to the end; seq -1: every sequence)."""
        self.llama._ctx.kv_cache_seq_rm(seq, p0, p1)

    def seq_shift(self, seq: int, p0: int, p1: int, delta: int) -> None:
        """Move `seq`'s cells in [p0, p1) by `delta` positions."""
        self.llama._ctx.kv_cache_seq_shift(seq, p0, p1, delta)

    def seq_copy(self, src: int, dst: int, p0: int, p1: int) -> None:
        """Let sequence `dst` see `src`'s cells in [p0, p1) (shared, not copied, in a unified KV buffer)."""
        self.llama._ctx.kv_cache_seq_cp(src, dst, p0, p1)

    def seq_positions(self, seq: int) -> tuple[int, int]:
        """The lowest and highest position `seq` holds ((-1, -1) when empty)."""
        import llama_cpp

        memory = self.llama._ctx.memory
        return int(llama_cpp.llama_memory_seq_pos_min(memory, seq)), int(llama_cpp.llama_memory_seq_pos_max(memory, seq))

    def decode_at(self, tokens: npt.NDArray[np.intc], pos: int) -> None:
        """Evaluate `tokens` into sequence 0 at positions from `pos` (the last position it holds, plus one)."""
        llama = self.llama
        for start in range(0, len(tokens), llama.n_batch):
            part = tokens[start:start + llama.n_batch].tolist()
            llama._batch.set_batch(batch=part, n_past=pos + start, logits_all=False)
            llama._ctx.decode(llama._batch)

    def save_seq(self) -> bytearray | None:
        """Sequence 0's KV cells as bytes (None if llama.cpp could not write them)."""
        import llama_cpp

        ctx = self.llama._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, SEQ)
        data = bytearray(size)
        written = llama_cpp.llama_state_seq_get_data(ctx, (ctypes.c_uint8 * size).from_buffer(data), size, SEQ)
        if written == 0 or written > size:
            return None
        del data[written:]
        return data

    def restore_seq(self, data: bytearray, tokens: npt.NDArray[np.intc]) -> bool:
        """Replace sequence 0 by saved cells holding `tokens`; False (and an empty context) if llama.cpp refused."""
        import llama_cpp

        self.llama._ctx.kv_cache_seq_rm(SEQ, 0, -1)
        size = len(data)
        read = llama_cpp.llama_state_seq_set_data(self.llama._ctx.ctx, (ctypes.c_uint8 * size).from_buffer(data), size, SEQ)
        if read != size:
            self.llama.reset()
            return False
        self.adopt(tokens)
        return True

    def last_logits(self) -> npt.NDArray[np.single]:
        """The logits of the last evaluated token (a copy)."""
        logits = np.ctypeslib.as_array(self.llama._ctx.get_logits(), shape=(self.llama._n_vocab,))
        return logits.copy()

    # -- what the model and context allow ----------------------------------------------------------
    @property
    def sequences(self) -> int:
        """How many KV sequences the context has."""
        import llama_cpp

        return int(llama_cpp.llama_n_seq_max(self.llama._ctx.ctx))

    @property
    def can_shift(self) -> bool:
        """Whether KV cells can be moved at all (RoPE models can; some recurrent ones cannot)."""
        import llama_cpp

        return bool(llama_cpp.llama_memory_can_shift(self.llama._ctx.memory))

    def first_end_of_turn(self, tokens: npt.NDArray[np.intc]) -> int | None:
        """Index of the first end-of-generation token (the chat template's end of turn), None if there is none."""
        import llama_cpp

        vocab = self.llama._model.vocab
        for i, token in enumerate(tokens.tolist()):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                return i
        return None


def _rebuild_context(llama: Any, sequences: int) -> None:
    """Give a freshly loaded `Llama` a context with `sequences` sequences in one unified KV buffer (a
    sequence sees the whole n_ctx, and cells shared by several are stored once).

    llama-cpp-python builds its context with one sequence and no setting for more, so the context is
    built again, before anything was evaluated."""
    from llama_cpp import _internals

    llama.context_params.n_seq_max = sequences
    llama.context_params.kv_unified = True
    old = llama._ctx
    llama._ctx = llama._stack.enter_context(contextlib.closing(
        _internals.LlamaContext(model=llama._model, params=llama.context_params, verbose=llama.verbose)))
    old.close()


class LlamaEncoder:
    """A BERT-family embedding model in llama.cpp: pooled vectors of a batch of token sequences.

    llama-cpp-python's own `Llama.embed` does the same, but cuts a long text's closing [SEP] and tokenizes
    again; its batch and context are used directly here (both untyped there)."""

    def __init__(self, llama: Any, n_threads: int) -> None:
        self.llama = llama
        self.n_threads = n_threads  # what the context runs on now

    @classmethod
    def load(cls, path: Path, *, n_ctx: int, n_threads: int) -> LlamaEncoder:
        """Load a BERT GGUF quietly, pooling as the file says (mean for MiniLM)."""
        require_cpu_baseline()  # before the import: an unsupported CPU dies inside llama.cpp itself
        import llama_cpp

        mismatch = version_mismatch(llama_cpp.__version__)
        if mismatch:
            log.warning("%s", mismatch)
        route_llama_log()
        with loading(f"loading embedding model {path.name}"), quiet_this_thread():  # verbose=True: see LlamaEngine.load
            llama = llama_cpp.Llama(model_path=str(path), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED,
                                    n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=n_threads,
                                    n_threads_batch=n_threads, verbose=True)
        llama.verbose = False
        return cls(llama, n_threads)

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.llama.metadata)

    @property
    def dimension(self) -> int:
        return int(self.llama.n_embd())

    @property
    def separator(self) -> int:
        """The token that ends a sequence ([SEP])."""
        return int(self.llama.token_eos())

    @property
    def max_sequences(self) -> int:
        return int(self.llama.context_params.n_seq_max)

    def tokenize(self, text: str) -> list[int]:
        """Token ids with [CLS] and [SEP], special tokens typed in the text parsed, not truncated."""
        ids: list[int] = self.llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        return ids

    def pooled(self, sequences: list[list[int]], out: npt.NDArray[np.float32], n_threads: int | None = None) -> None:
        """Run `sequences` through the encoder as one batch; row i of `out` gets sequence i's pooled vector.

        `n_threads` (default: as loaded) applies to this batch only; the vectors do not depend on it."""
        import llama_cpp

        ctx: Any = self.llama._ctx
        if n_threads is not None and n_threads != self.n_threads:
            llama_cpp.llama_set_n_threads(ctx.ctx, n_threads, n_threads)
            self.n_threads = n_threads
        batch: Any = self.llama._batch
        batch.reset()
        for seq, tokens in enumerate(sequences):
            batch.add_sequence(tokens, seq, True)
        ctx.kv_cache_clear()  # no memory in an encoder; kept as Llama.embed does, for other architectures
        ctx.decode(batch)
        for seq in range(len(sequences)):
            pointer = llama_cpp.llama_get_embeddings_seq(ctx.ctx, seq)
            out[seq] = np.ctypeslib.as_array(pointer, shape=(out.shape[1],))
        batch.reset()

    def close(self) -> None:
        self.llama.close()
