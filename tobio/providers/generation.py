"""One chat request on the embedded model: run as a job on the host's llama thread, its chunks relayed
to the kernel's loop.

With `background_steps_aside`, background work (a summary, a reflection) that a reply finds
mid-generation steps aside, once: it stops, having sent nothing (its text is handed over whole), and
starts again after the reply from its kept context.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from typing import TYPE_CHECKING, Any

from tobio.providers.base import ChatRequest, Chunk, ProviderError
from tobio.providers.priority import main_thread_finished

if TYPE_CHECKING:
    from tobio.providers.model_host import ChatModel, ModelHost

STREAM_BATCH_S = 0.015  # longest a streamed token waits to be handed to the kernel's loop

Item = Chunk | BaseException | None  # None: the stream ended


class Relay:
    """Hands items from the llama thread to one consumer on the kernel's loop; `stop` is the request's
    stop flag, set when the consumer goes away or cancels."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Item] = asyncio.Queue()

    def put(self, item: Item) -> None:
        """Called from the llama thread."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the kernel's loop closed under us (shutdown): nobody is listening
            self.stop.set()

    async def chunks(self, cancel: asyncio.Event) -> AsyncIterator[Chunk]:
        """Yield chunks until the stream ends; raise what the job raised; `cancel` stops the job."""
        watcher = asyncio.ensure_future(cancel.wait())

        def wake(w: asyncio.Future[Any]) -> None:
            if not w.cancelled():
                self.stop.set()
                self._queue.put_nowait(None)

        watcher.add_done_callback(wake)
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.stop.set()
            watcher.cancel()


class _Batcher:
    """Streamed text handed over in small batches: each hand-over wakes the kernel's loop, which competes
    with llama.cpp's threads for the same cores. With `hold`, everything waits for `flush`."""

    def __init__(self, put: Callable[[Item], None], *, hold: bool) -> None:
        self._put = put
        self._hold = hold
        self._pending: list[str] = []
        self._last = time.perf_counter()

    def add(self, text: str) -> None:
        self._pending.append(text)
        now = time.perf_counter()
        if not self._hold and now - self._last >= STREAM_BATCH_S:
            self.flush()
            self._last = now

    def flush(self) -> None:
        if self._pending:
            self._put(Chunk(text="".join(self._pending)))
            self._pending = []


class Generation:
    """A request's job on the llama thread: `run` streams its reply into `relay`, then its usage."""

    def __init__(self, host: ModelHost, request: ChatRequest, params: dict[str, Any], relay: Relay,
                 *, may_step_aside: bool) -> None:
        from tobio.providers.kv_states import RequestFlags

        self.host = host
        self.request = request
        self.params = params
        self.relay = relay
        self.flags = RequestFlags(background=request.background, prefill=request.prefill,
                                  history_moved=request.history_moved)
        self.may_step_aside = may_step_aside
        self.stepped_aside = False  # once per job

    def run(self) -> None:
        """The job: submitted once, and again behind the waiting reply if it steps aside."""
        put = self.relay.put
        if self.relay.stop.is_set():  # cancelled, or shutting down, while it waited in the queue
            put(Chunk(finish_reason="cancelled"))
            put(None)
            return
        again = False
        try:
            chat = self.host.chat(self.request.model)
            with chat.lock:
                again = self._generate(chat)
        except ProviderError as exc:
            put(exc)
        except Exception as exc:  # reported on the loop as a ProviderError
            put(ProviderError(f"local model {self.request.model}: {type(exc).__name__}: {exc}"))
        finally:
            if not again:
                put(None)

    def _generate(self, chat: ChatModel) -> bool:
        """Stream the reply, then its usage; True if it stepped aside and was queued again instead."""
        states = chat.states
        if states is None and self.flags.prefill:  # no store to keep it in: nothing to do
            self.relay.put(Chunk(finish_reason="stop"))
            return False
        flags = self.flags
        on_prompt = None if states is None else (lambda tokens: states.prepare(tokens, flags))
        chat.engine.reset_eval_counters()
        batcher = _Batcher(self.relay.put, hold=self.may_step_aside)
        produced, finish = 0, None
        with closing(chat.engine.stream_chat(self.request.messages, self.params, on_prompt)) as parts:
            for part in parts:
                if self.relay.stop.is_set() or main_thread_finished():  # the program is exiting: free the model soon
                    finish = "cancelled"
                    break
                if self._should_step_aside():
                    self._step_aside(chat)
                    if self._queue_again():
                        return True
                    finish = "cancelled"  # shutting down
                    break
                choice = part["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                if text:
                    produced += 1
                    batcher.add(text)
                finish = choice.get("finish_reason") or finish
        batcher.flush()
        self.relay.put(self._usage(chat, produced, finish))
        return False

    def _usage(self, chat: ChatModel, produced: int, finish: str | None) -> Chunk:
        """Token counts: the prompt's, the reply's, and the prompt tokens llama.cpp did not evaluate (reused
        from the live context or a saved state)."""
        prompt_tokens = chat.engine.prompt_tokens
        if self.flags.prefill and chat.states is not None:
            cached = prompt_tokens - chat.states.prefill_read
        else:
            evaluated = chat.engine.prompt_tokens_evaluated()
            # A one-token remainder is counted with the generated tokens: with none counted, claim all but one.
            cached = max(0, prompt_tokens - (evaluated or 1))
        return Chunk(prompt_tokens=prompt_tokens, completion_tokens=produced, cached_tokens=cached, finish_reason=finish)

    def _should_step_aside(self) -> bool:
        return self.may_step_aside and not self.stepped_aside and self.host.reply_waiting()

    def _step_aside(self, chat: ChatModel) -> None:
        self.stepped_aside = True
        chat.stepped_aside += 1
        if chat.states is not None:
            chat.states.stepped_aside()

    def _queue_again(self) -> bool:
        """Queue this job behind the waiting reply; False once the host is shutting down."""
        try:
            self.host.submit(self.run, background=True)
        except ProviderError:
            return False
        return True
