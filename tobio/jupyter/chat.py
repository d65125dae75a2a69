"""Talking to an agent from a notebook cell: post as the notebook's UserAgent, wait for the reply."""

from __future__ import annotations

from tobio.agents.conversation import exchange
from tobio.jupyter.session import get_kernel


def ask(agent: str, text: str, *, user: str = "user", timeout: float = 300.0) -> str:
    """Say `text` to `agent` in a private channel (`dm.USER.AGENT`) and return its reply. Interrupting the
    cell (KeyboardInterrupt) stops the agent's turn: its model run is cancelled."""
    kernel = get_kernel()
    pending = kernel.submit(exchange(kernel, agent, text, user=user, timeout=timeout))
    try:
        return pending.result().content
    except KeyboardInterrupt:
        pending.cancel()  # exchange is cancelled on the kernel's loop, and stops the turn
        raise
