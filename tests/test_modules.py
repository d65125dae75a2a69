"""LKM-style modules: dependency order, clear errors, refusing to unload what is needed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tobio.commands import Context
from tobio.errors import ModuleError
from tobio.kernel import Kernel
from tobio.modules import DatabaseModule, Module

from conftest import make_kernel

events: list[str] = []


class Storage(Module):
    name = "storage"
    dependencies = (DatabaseModule,)

    async def module_init(self, kernel: Kernel) -> None:
        events.append("init storage")

        @kernel.commands.group("storage", "test group", owner=self).command("ping")
        def ping(ctx: Context) -> str:
            """Answer pong."""
            return "pong"

    async def module_exit(self, kernel: Kernel) -> None:
        events.append("exit storage")


class Memory(Module):
    name = "memory"
    dependencies = (Storage,)

    async def module_init(self, kernel: Kernel) -> None:
        events.append("init memory")

    async def module_exit(self, kernel: Kernel) -> None:
        events.append("exit memory")


class Emotion(Module):
    name = "emotion"
    dependencies = (Memory, Storage)

    async def module_init(self, kernel: Kernel) -> None:
        events.append("init emotion")

    async def module_exit(self, kernel: Kernel) -> None:
        events.append("exit emotion")


class Telepathy(Module):
    """Needs a type nobody provides."""


class Mind(Module):
    name = "mind"
    dependencies = (Telepathy,)


class Chicken(Module):
    name = "chicken"


class Egg(Module):
    name = "egg"
    dependencies = (Chicken,)


Chicken.dependencies = (Egg,)


class Broken(Module):
    name = "broken"

    async def module_init(self, kernel: Kernel) -> None:
        kernel.commands.group("half", "registered before failing", owner=self)
        raise RuntimeError("no disk")


@pytest.fixture
def k(duckdb_url: str) -> Iterator[Kernel]:
    kernel = make_kernel(duckdb_url)
    for cls in (Storage, Memory, Emotion, Mind, Chicken, Egg, Broken):
        kernel.modules.register(cls)
    events.clear()
    yield kernel
    kernel.close()


def test_load_in_dependency_order(k: Kernel) -> None:
    assert "loaded: storage, memory, emotion" == k.run("mod load emotion").text
    assert events == ["init storage", "init memory", "init emotion"]
    assert k.run("storage ping").text == "pong"
    rows = {r[0]: r for r in k.run("mod ls").rows}
    assert rows["storage"][3] == "memory, emotion" or set(rows["storage"][3].split(", ")) == {"memory", "emotion"}


def test_missing_dependency_type(k: Kernel) -> None:
    with pytest.raises(ModuleError, match="module 'mind' needs a module of type Telepathy, and none is available"):
        k.run("mod load mind")


def test_dependency_cycle(k: Kernel) -> None:
    with pytest.raises(ModuleError, match=r"dependency cycle: (chicken -> egg -> chicken|egg -> chicken -> egg)"):
        k.run("mod load egg")
    assert "egg" not in k.modules.loaded and "chicken" not in k.modules.loaded


def test_refuse_unload_of_needed_module_then_force_in_reverse(k: Kernel) -> None:
    k.run("mod load emotion")
    events.clear()
    with pytest.raises(ModuleError, match="module 'storage' is used by emotion, memory|module 'storage' is used by"):
        k.run("mod unload storage")
    assert events == []
    assert k.run("mod unload storage --force").text == "unloaded: emotion, memory, storage"
    assert events == ["exit emotion", "exit memory", "exit storage"]
    with pytest.raises(Exception, match="unknown command 'storage'"):
        k.run("storage ping")


def test_failed_init_leaves_nothing_behind(k: Kernel) -> None:
    with pytest.raises(ModuleError, match="module 'broken' failed to initialise: no disk"):
        k.run("mod load broken")
    assert "broken" not in k.modules.loaded
    assert k.commands.get("half") is None


def test_builtin_module_found_through_entry_point(k: Kernel) -> None:
    info = dict(k.run("mod info scripted").rows)
    assert info["class"] == "tobio.agents.scripted.ScriptedModule"
    assert info["needs"] == "DatabaseModule"


def test_shutdown_exits_modules_in_reverse(duckdb_url: str) -> None:
    kernel = make_kernel(duckdb_url)
    for cls in (Storage, Memory, Emotion):
        kernel.modules.register(cls)
    kernel.run("mod load emotion")
    events.clear()
    kernel.close()
    assert events == ["exit emotion", "exit memory", "exit storage"]
