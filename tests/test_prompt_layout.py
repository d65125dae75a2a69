"""The prompt keeps a stable prefix from turn to turn, so the model's KV cache (or a server's prefix
cache) reuses it: persona and examples first and unchanged, history appended, and whatever changes
every turn (mood, recalled memories, triggered lore, the per-person block) next to the newest message.

Checked on the real configs/kernel.yaml (every module loaded) with the embedded model, and with the
model's own chat template and tokenizer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tobio.agents.conversation import exchange
from tobio.config.schema import load_kernel_config
from tobio.kernel import Kernel
from tobio.models.module import models_of, runs_of
from tobio.models.runs import FINAL
from tobio.turn.prompt import SUMMARY_PREFIX

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
LINES = ["Hi Tobio! My name is Ada.", "Do you like steam trains?", "I am feeling a bit sad today.",
         "What did I say my name was?"]


@dataclass
class Chat:
    kernel: Kernel
    sent: list[list[dict[str, Any]]]  # each turn's reply prompt
    # ("reply" | "prefill", messages, run) in the order the runs were made
    runs: list[tuple[str, list[dict[str, Any]], Any]]

    def read_ahead_then_replies(self) -> list[tuple[list[dict[str, Any]], Any, list[dict[str, Any]], Any]]:
        """(opening, prefill run, prompt, reply run): each turn's first reply run and the last prefill made
        before it (after a summary there are two: the reply's, then the one with the new summary)."""
        pairs, last = [], None
        for kind, messages, run in self.runs:
            if kind == "prefill":
                last = (messages, run)
            elif last is not None and (not pairs or messages != pairs[-1][2]):
                pairs.append((*last, messages, run))
                last = None
        return pairs


BACKGROUND = ("memory:summarize:", "tobio:prefill")


def turns_of_a_chat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, settle: bool = False,
                    lines: list[str] = LINES, memory: dict[str, Any] | None = None) -> Chat:
    """A chat on the real config; with `settle`, each line waits until the summaries and prefills the last
    reply set off are done (a person reading the reply), else it follows at once (the worst case)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = load_kernel_config(ROOT / "configs" / "kernel.yaml")
    chat = config.models["chat-default"]
    models = {**config.models, "chat-default": chat.model_copy(update={"params": {**chat.params, "max_tokens": 12, "seed": 3}})}
    settings = {**config.settings, "memory": {**config.settings.get("memory", {}), **(memory or {})}}
    kernel = Kernel(config.model_copy(update={"models": models, "settings": settings}),
                    database=f"duckdb:///{tmp_path / 'layout.duckdb'}").start()
    record = Chat(kernel, [], [])
    original = runs_of(kernel).create

    def remember(model: Any, messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        run = original(model, messages, *args, **kwargs)
        if model.name == "chat-default":
            record.runs.append(("prefill" if kwargs.get("prefill") else "reply", [dict(m) for m in messages], run))
            if not kwargs.get("prefill") and (not record.sent or messages != record.sent[-1]):  # a resample (freshness) sends the same prompt again
                record.sent.append([dict(m) for m in messages])
        return run

    runs_of(kernel).create = remember  # type: ignore[method-assign]

    async def talk() -> None:
        for line in lines:
            await exchange(kernel, "tobio", line, user="ada", timeout=240)
            await asyncio.sleep(0.1)  # the reply's own prefill is spawned just after the reply is posted
            while settle and (any(t.name.startswith(BACKGROUND) for t in kernel.tasks.live.values())
                              or any(run.status not in FINAL for _, _, run in record.runs)):
                await asyncio.sleep(0.02)

    kernel.call(asyncio.wait_for(talk(), 900))
    return record


def test_each_turn_extends_the_last_ones_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chat = turns_of_a_chat(tmp_path, monkeypatch)
    kernel, sent = chat.kernel, chat.sent
    try:
        assert len(sent) == len(LINES)
        for before, after in zip(sent, sent[1:]):
            # Everything up to the per-turn messages of the earlier turn comes back, unchanged and in order.
            stable = before[:first_volatile(before)]
            assert after[:len(stable)] == stable
            assert len(stable) >= 2  # at least the system prompt and the earlier turn's user message
            assert "Your mood right now" not in after[0]["content"] and "Memory (" not in after[0]["content"]
        assert_token_prefix(kernel, sent)
    finally:
        kernel.close()


def test_the_next_opening_is_read_while_the_user_reads_the_reply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After each reply the agent prefills the next turn's opening (its prompt's history and the reply as
    posted), and the next turn's prompt starts with exactly those messages, so the reply reads only its
    per-turn notes and the new line."""
    chat = turns_of_a_chat(tmp_path, monkeypatch, settle=True)
    try:
        assert_read_ahead(chat, len(LINES) - 1)
    finally:
        chat.kernel.close()


LONGER = [*LINES, "Tell me about the night train to the coast.", "What do you do when it rains?",
          "Who is your best friend at the station?", "Do you remember my dog's name?", "What is your favourite colour?",
          "Where would you go tomorrow?"]


def test_after_a_summary_the_next_turn_reads_only_what_is_new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When memory folds old messages into a summary, the agent prefills the prompt's new opening: the
    summary and the history it kept. The turn after a summary no longer re-reads its whole history."""
    chat = turns_of_a_chat(tmp_path, monkeypatch, settle=True, lines=LONGER,
                           memory={"budget_tokens": 520, "summary_tokens": 60, "memory_tokens": 60})
    try:
        summarised = [opening for opening, *_ in chat.read_ahead_then_replies()
                      if any(m["content"].startswith(SUMMARY_PREFIX) for m in opening)]
        assert summarised, "no summary was written: the budget is too large for this chat"
        first = next(i for i, prompt in enumerate(chat.sent) if any(m["content"].startswith(SUMMARY_PREFIX) for m in prompt))
        assert first > 0 and any(chat.sent[first][:len(o)] == o for o in summarised)  # the summary turn was read ahead
        # ... reading the summary, with the history it kept moved behind it rather than read again
        moved = [run for kind, _, run in chat.runs if kind == "prefill" and run.request.history_moved]
        assert moved and all(run.prompt_tokens - run.cached_tokens < run.prompt_tokens / 2 for run in moved), \
            [(run.prompt_tokens, run.cached_tokens) for run in moved]
        assert_read_ahead(chat, len(LONGER) - 1)
    finally:
        chat.kernel.close()


def assert_read_ahead(chat: Chat, turns: int) -> None:
    pairs = chat.read_ahead_then_replies()
    assert len(pairs) == turns
    for opening, prefill, prompt, reply in pairs:
        assert prompt[:len(opening)] == opening
        assert opening[-1]["role"] == "assistant" and prompt[len(opening)]["role"] == "system"  # then the new notes
        assert prefill.status == "completed" and prefill.prompt_tokens
        assert reply.cached_tokens >= prefill.prompt_tokens - 4, (prefill.prompt_tokens, reply.cached_tokens)


def first_volatile(messages: list[dict[str, Any]]) -> int:
    """Index of the first message after the history: the injected per-turn system text, then the newest."""
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    index = last_user
    while index > 1 and messages[index - 1]["role"] == "system":
        index -= 1
    return index


def assert_token_prefix(kernel: Kernel, sent: list[list[dict[str, Any]]]) -> None:
    """With SmolLM2's own chat template and tokenizer, turn n+1's tokens start with turn n's stable tokens."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    bundle = models_of(kernel).get("chat-default")
    llama = bundle.provider.chat_model(bundle.provider_model).engine.llama  # type: ignore[attr-defined]  # the local provider's
    template = llama.metadata["tokenizer.chat_template"]
    eos = llama.detokenize([llama.token_eos()]).decode()
    bos = llama.detokenize([llama.token_bos()]).decode()
    render = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, add_generation_prompt=False)

    def tokens(messages: list[dict[str, Any]]) -> list[int]:
        return llama.tokenize(render(messages=messages).prompt.encode(), add_bos=False, special=True)

    for before, after in zip(sent, sent[1:]):
        stable = tokens(before[:first_volatile(before)])
        full = tokens(after)
        assert full[:len(stable)] == stable, "the stable part is not a token prefix of the next turn's prompt"
        assert len(stable) / len(tokens(before)) > 0.5 or len(before) <= 4
