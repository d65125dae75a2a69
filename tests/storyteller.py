"""A persona that takes its time: `tobio` on a scripted model streaming a long story a word at a time,
for tests that stop a reply in the middle (Ctrl-C, the page's Stop, ChatView's Stop, exchange's timeout)."""

from __future__ import annotations

from pathlib import Path

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel

from conftest import write

STORY = " ".join(f"word{i}" for i in range(300))  # 30 s at 0.1 s a word: always stopped in the middle


def storyteller(url: str, tmp_path: Path, *, modules: tuple[str, ...] = (), token_delay: float = 0.1,
                latency: float = 0.0, greeting: str | None = None) -> Kernel:
    """A started kernel with the persona `tobio` telling STORY (plus `modules`)."""
    config = KernelConfig(modules=["scripted", "persona", *modules],
                          providers={"s": {"type": "scripted", "replies": [STORY], "token_delay_s": token_delay,
                                           "latency_s": latency}},
                          models={"chat-default": {"provider": "s", "model": "x"}})
    kernel = Kernel(config, database=url).start()
    write(tmp_path / "p.yaml", "name: Tobio\ndescription: A friend.\n" + (f"greeting: {greeting}\n" if greeting else ""))
    kernel.run(f"agent spawn {write(tmp_path / 'tobio.yaml', 'name: tobio' + chr(10) + 'type: persona' + chr(10) + 'persona: p.yaml' + chr(10))}")
    return kernel
