"""Stopping an agent's replies: the model runs a front end's stop (Ctrl-C, the page's stop button) cancels.

Typed, through the loaded models module: the shell once looked the runs up with `getattr` defaults on
the kernel, found nothing after they moved into this module, and Ctrl-C cancelled no run at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.models.module import ModelsModule

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.models.runs import Run


def reply_runs(kernel: Kernel, agent_id: int, thread_id: int | None) -> list[Run]:
    """The agent's live runs that write on `thread_id` (or on no thread at all); not prefills, which only
    read the next turn's opening ahead and answer no one. None when the models module is not loaded."""
    module = kernel.modules.get(ModelsModule)
    if module is None:
        return []
    return [run for run in module.runs.live.values()
            if run.agent_id == agent_id and run.thread_id in (thread_id, None) and not run.request.prefill]


def cancel_reply_runs(kernel: Kernel, agent_id: int, thread_id: int | None) -> list[int]:
    """Cancel `reply_runs` (on the kernel's loop); returns their ids. Each ends `cancelled` once its
    provider stops, which for the embedded model is after the token being computed."""
    runs = reply_runs(kernel, agent_id, thread_id)
    for run in runs:
        run.cancel()
    return [run.id for run in runs]
