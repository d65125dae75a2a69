"""The kernel's built-in commands, one file per group, and the completion sources they name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.agents.sandbox import CORE_SCOPES
from tobio.hooks import COMPLETION_SOURCE, SQL_SCOPE

if TYPE_CHECKING:
    from tobio.kernel import Kernel


def register_builtins(kernel: Kernel) -> None:
    from tobio.commands.builtin import agent, channel, cluster, help, log, message, mod, sql, task, thread

    for group in (help, mod, agent, channel, thread, message, sql, log, task, cluster):
        group.register(kernel.commands)
    message.hook(kernel)
    for name, source in CORE_SOURCES.items():
        kernel.hooks.add(COMPLETION_SOURCE, source, key=name)
    for table, scope in CORE_SCOPES.items():
        kernel.hooks.add(SQL_SCOPE, scope, key=table)


def _agents(kernel: Kernel) -> list[tuple[str, str]]:
    return [(n, f"{a.type_name} · {a.status}{' · ' + a.config.description if a.config.description else ''}")
            for n, a in sorted(kernel.agents.live.items())]


def _channels(kernel: Kernel) -> list[tuple[str, str]]:
    subs = kernel.transport.channels
    return [(n, f"{len(subs.get(n, {}))} subscribed") for n in kernel.transport.known_channels()]


def _modules(kernel: Kernel) -> list[tuple[str, str]]:
    manager = kernel.modules
    return [(n, f"{'loaded' if n in manager.loaded else 'available'} · {c.description}".strip(" ·"))
            for n, c in sorted(manager.available.items())]


def _tasks(kernel: Kernel) -> list[tuple[str, str]]:
    return [(str(t.id), f"{t.name} · {t.state}") for t in kernel.tasks.list()]


CORE_SOURCES = {"agent": _agents, "channel": _channels, "module": _modules, "task": _tasks}
