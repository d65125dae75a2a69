"""Who is acting: the person at a front end, or an agent. Privilege is asked of this object, never of a name.

The front end that received the input hands its principal to `kernel.run(..., caller=...)`; the shell,
the notebook and the web page are driven by a person (`Person`), an agent's tool call by the agent
itself (`AgentPrincipal`). A name is only a label: an agent called `user` is still an agent. Modelled
on datasette's `allowed(actor, action, resource)`.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tobio.agents.base import Agent

RUN = "run"  # the action of running a command; the resource is its path ("agent ls")
# Names a person at a front end goes by, which no other kind of agent may take (compared by `name_key`).
PERSON_NAMES = frozenset({"user"})


class Principal:
    """Someone acting on the kernel; subclasses decide what they may do."""

    name: str = ""

    @property
    def privileged(self) -> bool:
        """True for the person: no whitelist, no view, their own paths."""
        return False

    @property
    def agent(self) -> Agent | None:
        """The live agent acting, if an agent is."""
        return None

    @property
    def label(self) -> str:
        """Who, as recorded in `changed_by` columns; what an agent recorded is recognised by this later,
        so it must never equal a person's or the kernel's own labels (`file`, `user`)."""
        return self.name

    def allowed(self, action: str, resource: str = "") -> bool:
        """May this principal do `action` on `resource` at all (views are checked after this)?"""
        return self.privileged

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Person(Principal):
    """The human at a front end (shell, notebook, web page): may run anything."""

    def __init__(self, name: str = "user") -> None:
        self.name = name

    @property
    def privileged(self) -> bool:
        return True

    def allowed(self, action: str, resource: str = "") -> bool:
        return True


class AgentPrincipal(Principal):
    """An agent acting through a command: only its whitelist, only its own view. Never privileged."""

    def __init__(self, agent: Agent | None, name: str | None = None) -> None:
        self._agent = agent
        self.name = agent.name if agent is not None else (name or "?")

    @property
    def agent(self) -> Agent | None:
        return self._agent

    @property
    def label(self) -> str:
        return f"agent:{self.name}"  # ':' is in no agent name, so no agent can pass for another recorder

    @property
    def agent_id(self) -> int | None:
        return self._agent.id if self._agent is not None else None

    @property
    def whitelist(self) -> list[str]:
        return list(self._agent.config.commands) if self._agent is not None else []

    def allowed(self, action: str, resource: str = "") -> bool:
        if action != RUN or self._agent is None or self._agent.status == "killed":  # a late call of a killed agent
            return False
        return any(resource == p or resource.startswith(p + " ") for p in self.whitelist)


LOCAL_PERSON = Person()


def principal_of(kernel: Any, caller: Principal | str | None) -> Principal:
    """The principal for `caller`: None is the local person; a string names an agent (never a person)."""
    if caller is None:
        return LOCAL_PERSON
    if isinstance(caller, Principal):
        return caller
    return AgentPrincipal(kernel.agents.live.get(caller), caller)


_ZERO_WIDTH = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u034f", "\u180e"}
# Cyrillic and Greek letters that NFKC leaves alone but that look like Latin ones (a small skeleton map).
_CONFUSABLE = str.maketrans("аеорсухіјѕԁԛԝүνοαιτκмнвтυ", "aeopcyxijsdqwyvoaitkmhbtu")


def name_key(name: str) -> str:
    """A name as compared for look-alikes: NFKC, case folded, format and zero-width characters dropped,
    Cyrillic/Greek look-alike letters mapped to Latin (`User`, `ｕｓｅｒ`, `user\\u200b`, `usеr` all give `user`)."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(c for c in text if c not in _ZERO_WIDTH and unicodedata.category(c) not in ("Cf", "Mn", "Cc"))
    return unicodedata.normalize("NFKC", text).casefold().translate(_CONFUSABLE).strip()


def is_person_name(name: str) -> bool:
    """True for a name reserved for the person at a front end (or one that looks like it)."""
    return name_key(name) in PERSON_NAMES
