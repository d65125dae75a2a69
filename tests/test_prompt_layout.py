"""The prompt keeps a stable prefix from turn to turn, so the model's KV cache (or a server's prefix
cache) reuses it: persona and examples first and unchanged, history appended, and whatever changes
every turn (mood, recalled memories, triggered lore, the per-person block) next to the newest message.

Checked on the real configs/kernel.yaml (every module loaded) with the embedded model, and with the
model's own chat template and tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tobio.agents.conversation import exchange
from tobio.config.schema import load_kernel_config
from tobio.kernel import Kernel
from tobio.models.module import runs_of

ROOT = Path(__file__).resolve().parent.parent
LINES = ["Hi Tobio! My name is Ada.", "Do you like steam trains?", "I am feeling a bit sad today.",
         "What did I say my name was?"]


def turns_of_a_chat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Kernel, list[list[dict[str, Any]]]]:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = load_kernel_config(ROOT / "configs" / "kernel.yaml")
    chat = config.models["chat-default"]
    models = {**config.models, "chat-default": chat.model_copy(update={"params": {**chat.params, "max_tokens": 12, "seed": 3}})}
    kernel = Kernel(config.model_copy(update={"models": models}), database=f"duckdb:///{tmp_path / 'layout.duckdb'}").start()
    sent: list[list[dict[str, Any]]] = []
    original = runs_of(kernel).create

    def remember(model: Any, messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        if model.name == "chat-default" and (not sent or messages != sent[-1]):  # a resample (freshness) sends the same prompt again
            sent.append([dict(m) for m in messages])
        return original(model, messages, *args, **kwargs)

    runs_of(kernel).create = remember  # type: ignore[method-assign]

    async def talk() -> None:
        for line in LINES:
            await exchange(kernel, "tobio", line, user="ada", timeout=240)

    kernel.call(talk())
    return kernel, sent


def test_each_turn_extends_the_last_ones_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel, sent = turns_of_a_chat(tmp_path, monkeypatch)
    try:
        assert len(sent) == len(LINES)
        for before, after in zip(sent, sent[1:]):
            # Everything up to the per-turn messages of the earlier turn comes back, unchanged and in order.
            stable = before[:first_volatile(before)]
            assert after[:len(stable)] == stable
            assert len(stable) >= 2  # at least the system prompt and the earlier turn's user message
            assert "Your mood right now" not in after[0]["content"] and "Memory (" not in after[0]["content"]
        assert_token_prefix(sent)
    finally:
        kernel.close()


def first_volatile(messages: list[dict[str, Any]]) -> int:
    """Index of the first message after the history: the injected per-turn system text, then the newest."""
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    index = last_user
    while index > 1 and messages[index - 1]["role"] == "system":
        index -= 1
    return index


def assert_token_prefix(sent: list[list[dict[str, Any]]]) -> None:
    """With SmolLM2's own chat template and tokenizer, turn n+1's tokens start with turn n's stable tokens."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from tobio.providers import local

    llama = next(iter(local._llamas.values())).model
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
