"""LKM-style modules: dependency order, clear errors, refusing to unload what is needed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tobio.commands import Context
from tobio.config.schema import KernelConfig
from tobio.errors import ModuleError, ProviderSetupError
from tobio.hooks import PROVIDER_TYPE
from tobio.kernel import Kernel
from tobio.models.module import ModelsModule, models_of
from tobio.modules import DatabaseModule, Module
from tobio.providers.base import ChatRequest, Chunk, Provider

from conftest import make_kernel, write

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


# -- in use: live agents of a module's agent type, models on its provider type ---------------------------
def spawn_scripted(kernel: Kernel, tmp_path: Path, name: str) -> None:
    path = write(tmp_path / f"{name}.yaml", f"name: {name}\ntype: scripted\nchannels: [lobby]\n")
    kernel.run(f"agent spawn {path}")


def test_unload_refused_while_agents_of_its_type_live(duckdb_url: str, tmp_path: Path) -> None:
    kernel = make_kernel(duckdb_url)
    try:
        spawn_scripted(kernel, tmp_path, "bob")
        with pytest.raises(ModuleError) as refused:
            kernel.run("mod unload scripted")
        assert str(refused.value) == "mod unload scripted: in use by agent bob (type scripted) (--force stops them)"
        spawn_scripted(kernel, tmp_path, "amy")
        with pytest.raises(ModuleError, match=r"in use by agents (bob, amy|amy, bob) \(type scripted\)"):
            kernel.run("mod unload scripted")
        assert "scripted" in kernel.modules.loaded and kernel.agents.get("bob").status != "killed"

        kernel.run("agent kill bob")
        kernel.run("agent kill amy")
        assert kernel.run("mod unload scripted").text == "unloaded: scripted"
    finally:
        kernel.close()


def test_force_unload_kills_the_agents_of_its_type_first(duckdb_url: str, tmp_path: Path) -> None:
    kernel = make_kernel(duckdb_url)
    try:
        spawn_scripted(kernel, tmp_path, "bob")
        bob = kernel.agents.get("bob")
        assert kernel.run("mod unload scripted --force").text == "unloaded: scripted"
        assert "bob" not in kernel.agents.live and bob.status == "killed"
        assert "scripted" not in kernel.agents.types
        kernel.run("mod load scripted")  # and it comes back cleanly
        spawn_scripted(kernel, tmp_path, "cid")
    finally:
        kernel.close()


class Echo(Provider):
    """Repeats the last message; counts how often it was closed."""

    closed = 0

    async def stream_chat(self, request: ChatRequest, cancel: asyncio.Event) -> AsyncIterator[Chunk]:
        yield Chunk(text=f"echo: {request.messages[-1]['content']}")
        yield Chunk(finish_reason="stop")

    async def close(self) -> None:
        Echo.closed += 1


class Echoes(Module):
    """Adds the `echo` provider type."""

    name = "echoes"
    dependencies = (DatabaseModule,)

    async def module_init(self, kernel: Kernel) -> None:
        kernel.hooks.add(PROVIDER_TYPE, Echo, key="echo")


def echo_kernel(url: str, modules: list[str]) -> Kernel:
    config = KernelConfig(modules=modules, providers={"e": {"type": "echo"}},
                          models={"m": {"provider": "e", "model": "x", "purpose": "chat"},
                                  "n": {"provider": "e", "model": "y", "purpose": "chat"}}, log_level="WARNING")
    kernel = Kernel(config, database=url)
    kernel.modules.register(Echoes)
    return kernel.start()


def ask(kernel: Kernel, model: str = "m") -> str:
    return kernel.call(models_of(kernel).get(model).chat([{"role": "user", "content": "hi"}]))


@pytest.mark.parametrize("modules", [["models", "echoes"], ["echoes", "models"]])
def test_a_provider_type_may_come_after_models(duckdb_url: str, modules: list[str]) -> None:
    kernel = echo_kernel(duckdb_url, modules)
    try:
        assert ask(kernel) == "echo: hi"
        assert kernel.run("provider ls").rows[0][0] in models_of(kernel).providers
    finally:
        kernel.close()


def test_a_provider_type_loaded_at_run_time_serves_models_configured_before(duckdb_url: str) -> None:
    kernel = echo_kernel(duckdb_url, ["models"])
    try:
        with pytest.raises(ProviderSetupError, match=r"provider 'e': unknown type 'echo' \(known: .*local.*`mod load`"):
            ask(kernel)
        kernel.run("mod load echoes")
        assert ask(kernel) == "echo: hi"
    finally:
        kernel.close()


def test_unload_refused_while_its_provider_type_backs_a_model(duckdb_url: str) -> None:
    kernel = echo_kernel(duckdb_url, ["echoes", "models"])
    try:
        with pytest.raises(ModuleError) as refused:
            kernel.run("mod unload echoes")  # even before any model on it was used: the config names it
        assert str(refused.value) == "mod unload echoes: in use by models m, n (provider e, type echo) (--force stops them)"
        assert ask(kernel) == "echo: hi"
        with pytest.raises(ModuleError, match="in use by models m, n"):
            kernel.run("mod unload echoes")
        assert ask(kernel, "n") == "echo: hi"

        Echo.closed = 0
        assert kernel.run("mod unload echoes --force").text == "unloaded: echoes"
        assert Echo.closed == 1  # no model keeps a provider of a type whose module is gone
        with pytest.raises(ProviderSetupError, match="unknown type 'echo'"):
            ask(kernel)
        kernel.run("mod load echoes")
        assert ask(kernel) == "echo: hi"
    finally:
        kernel.close()


def test_a_model_on_another_provider_does_not_hold_the_module(duckdb_url: str) -> None:
    config = KernelConfig(modules=["echoes", "models"], log_level="WARNING")  # no provider of type echo
    kernel = Kernel(config, database=duckdb_url)
    kernel.modules.register(Echoes)
    kernel.start()
    try:
        assert kernel.modules.get(ModelsModule) is not None
        assert kernel.run("mod unload echoes").text == "unloaded: echoes"
    finally:
        kernel.close()
