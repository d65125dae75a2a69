"""Small helpers for tests: waiting on agents (not timing anything), and the local model behind a bundle."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.providers.kv_states import KVStates
    from tobio.providers.model_host import ChatModel

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.02) -> T:
    """Poll `check` until it returns something truthy; fail with its last value after `timeout`."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)
        value = check()
    return value


def chat_model(kernel: Kernel, bundle: str = "chat-default") -> ChatModel:
    """The llama.cpp model behind a local bundle (its provider loads it if no test has yet)."""
    from tobio.models.module import models_of
    from tobio.providers.local import LocalProvider

    model = models_of(kernel).get(bundle)
    assert isinstance(model.provider, LocalProvider)
    return model.provider.chat_model(model.provider_model)


def kv_states(kernel: Kernel, bundle: str = "chat-default") -> KVStates:
    """The KV state store of that model (the bundle's provider keeps one)."""
    states = chat_model(kernel, bundle).states
    assert states is not None
    return states
