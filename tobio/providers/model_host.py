"""The local provider's models: loaded on first use, shared by every bundle on that provider, freed when
the provider closes.

One host per provider, and nothing kept at module level: two kernels (or two providers) in one process
each load their own copy, and closing one frees its copy without touching the other's. All of a
host's generations run on its one llama thread (priority.py), replies before background work; calls
to one model are serialised by its lock, since a llama.cpp context is not re-entrant.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tobio.providers.base import ProviderError
from tobio.providers.embedder import load_embedder
from tobio.providers.files import gguf_path
from tobio.providers.priority import PriorityThread

if TYPE_CHECKING:
    from tobio.providers.kv_states import KVStates
    from tobio.providers.llama_adapter import LlamaEngine
    from tobio.providers.local import LocalConfig

log = logging.getLogger(__name__)

M = TypeVar("M")
CLOSED = "the local provider is closed"
CLOSE_WAIT_S = 10.0  # longest a closing host waits for a generation to notice its stop flag


class Embedder(Protocol):
    """What the host needs of an embedding model, whichever library runs it."""

    def embed(self, texts: list[str]) -> list[list[float]]: ...

    def count_tokens(self, text: str) -> int: ...

    def close(self) -> None: ...


class ChatModel:
    """A loaded chat model: its engine, its saved KV states (None when turned off), and the lock that
    serialises its use."""

    def __init__(self, name: str, engine: LlamaEngine, states: KVStates | None) -> None:
        self.name = name
        self.engine = engine
        self.states = states
        self.lock = threading.Lock()
        self.stepped_aside = 0  # background generations stopped for a reply, then started again

    def forget(self) -> None:
        """Empty the live context and the saved states (benchmarks and tests start from nothing)."""
        with self.lock:
            self.engine.reset()
            if self.states is not None:
                self.states.clear()


class LoadedEmbedder:
    """A loaded embedding model and the lock that serialises its use."""

    def __init__(self, name: str, embedder: Embedder) -> None:
        self.name = name
        self.embedder = embedder
        self.lock = threading.Lock()


class ModelHost:
    """Loads, shares and frees one local provider's models, and runs their generations on one thread."""

    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self._loading = threading.Lock()  # one load at a time (held for seconds)
        self._lock = threading.Lock()  # the fields below (held briefly: the kernel's loop takes it)
        self._chats: dict[str, ChatModel] = {}
        self._embedders: dict[str, LoadedEmbedder] = {}
        self._worker: PriorityThread | None = None
        self._generating: set[threading.Event] = set()  # stop flags of requests in progress or queued
        self._closed = False

    # -- models ------------------------------------------------------------------------------------
    def chat(self, model: str) -> ChatModel:
        """The chat model `model` (a bundled name or a .gguf path), loaded on first use."""
        path = gguf_path(model).resolve()
        return self._shared(self._chats, str(path), lambda: self._load_chat(path), lambda chat: chat.engine.close())

    def embedder(self, name: str) -> LoadedEmbedder:
        """The embedding model `name`, loaded on first use by `load_embedder`."""
        return self._shared(self._embedders, name, lambda: LoadedEmbedder(name, load_embedder(name)),
                            lambda loaded: loaded.embedder.close())

    def loaded(self) -> list[str]:
        """Names of the models in memory."""
        with self._lock:
            return [chat.name for chat in self._chats.values()] + list(self._embedders)

    def _shared(self, models: dict[str, M], key: str, load: Callable[[], M], free: Callable[[M], None]) -> M:
        """`models[key]`, loaded by `load` unless it is there; a model loaded while the host closed is freed."""
        with self._lock:
            self._check_open()
            if key in models:
                return models[key]
        with self._loading:
            with self._lock:
                self._check_open()
                if key in models:  # loaded by another thread while this one waited
                    return models[key]
            loaded = load()
            with self._lock:
                if not self._closed:
                    models[key] = loaded
                    return loaded
        free(loaded)  # the host closed while it loaded
        raise ProviderError(CLOSED)

    def _load_chat(self, path: Path) -> ChatModel:
        from tobio.providers.kv_reuse import SEQUENCES  # numpy: only once a model is loaded (startup imports nothing heavy)
        from tobio.providers.kv_states import KVStates
        from tobio.providers.llama_adapter import LlamaEngine

        c = self.config
        moves = c.kv_reuse_min_tokens if c.kv_reuse != "off" else 0
        engine = LlamaEngine.load(path, n_ctx=c.n_ctx, n_threads=c.n_threads or os.cpu_count() or 1, n_batch=c.n_batch,
                                  seed=c.seed, sequences=SEQUENCES if moves else 1)
        # Agents share one model, so each speaker's prompt evicts the previous one's KV cells: the store
        # keeps evaluated states by token prefix and restores the longest match.
        states = None
        if c.kv_cache_mb or moves:
            states = KVStates(engine, c.kv_cache_mb << 20, moves, always=c.kv_reuse == "always", yield_to=self.reply_waiting)
        return ChatModel(path.name, engine, states)

    def _check_open(self) -> None:
        if self._closed:
            raise ProviderError(CLOSED)

    # -- the llama thread --------------------------------------------------------------------------
    @property
    def worker(self) -> PriorityThread:
        """The one long-lived thread that runs this host's generations, replies before background work."""
        with self._lock:
            self._check_open()
            if self._worker is None:
                # Ends with the program's main thread, freeing the models first, if nobody closed the host.
                self._worker = PriorityThread("tobio-llama", on_orphaned=self.close)
            return self._worker

    def submit(self, job: Callable[[], Any], *, background: bool) -> None:
        """Queue `job` on the llama thread (background jobs after waiting replies)."""
        try:
            self.worker.submit(job, background=background)
        except RuntimeError as exc:  # shut down between the check and the submit
            raise ProviderError(CLOSED) from exc

    def reply_waiting(self) -> bool:
        """Whether a reply is queued for the llama thread (background work that can stop part-way asks)."""
        worker = self._worker
        return worker is not None and worker.foreground_waiting()

    @contextmanager
    def generating(self, stop: threading.Event) -> Iterator[None]:
        """Count a request as in progress while the block runs: `close` sets its stop flag first."""
        self._generating.add(stop)
        try:
            yield
        finally:
            stop.set()  # a consumer that stops early (cancel, error) ends the generation too
            self._generating.discard(stop)

    def stop_generations(self) -> None:
        """Ask every generation in progress or queued to stop (each ends at its next token)."""
        for stop in list(self._generating):
            stop.set()

    # -- closing -----------------------------------------------------------------------------------
    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Stop generations, let the llama thread finish, and free every model. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            worker, self._worker = self._worker, None
            chats, embedders = list(self._chats.values()), list(self._embedders.values())
            self._chats.clear()
            self._embedders.clear()
        self.stop_generations()
        if worker is not None:
            worker.shutdown(timeout=wait_s)  # queued generations see their stop flags and return at once
        for chat in chats:
            _free(chat.name, chat.lock, chat.engine.close, wait_s)
        for loaded in embedders:
            _free(loaded.name, loaded.lock, loaded.embedder.close, wait_s)


def _free(name: str, lock: threading.Lock, close: Callable[[], None], wait_s: float) -> None:
    """Free a model once nobody uses it (freeing one mid-eval crashes the process); if a call on it outlasts
    `wait_s`, leave it loaded and say so."""
    if not lock.acquire(timeout=wait_s):
        log.warning("%s is still in use after %.0f s; not freed", name, wait_s)
        return
    try:
        close()
    except Exception as exc:  # the others must still be freed
        log.warning("could not free %s: %s", name, exc)
    finally:
        lock.release()
