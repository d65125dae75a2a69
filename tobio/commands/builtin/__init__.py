"""The kernel's built-in commands, one file per group."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tobio.kernel import Kernel


def register_builtins(kernel: Kernel) -> None:
    from tobio.commands.builtin import agent, channel, help, log, mod, sql, task, thread

    for group in (help, mod, agent, channel, thread, sql, log, task):
        group.register(kernel.commands)
