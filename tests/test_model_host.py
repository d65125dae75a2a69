"""The local provider's model host: each provider owns its models (nothing process-wide), closing it
frees them with no exit hook, and every llama-cpp-python internal stays in one adapter pinned to the
version pyproject.toml names."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.models.module import models_of
from tobio.providers.base import ProviderError
from tobio.providers.llama_adapter import PINNED_VERSION, version_mismatch
from tobio.providers.local import LocalConfig, LocalProvider
from tobio.providers.model_host import ModelHost

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"max_tokens": 8, "temperature": 0.0, "seed": 1}


def speaker(name: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": f"You are {name}, who sells tickets at the station and tells short stories."},
            {"role": "user", "content": "Good morning! Which platform is the night train on?"}]


def local_provider(kernel: Kernel) -> LocalProvider:
    provider = models_of(kernel).get("chat-default").provider
    assert isinstance(provider, LocalProvider)
    return provider


def test_two_kernels_keep_their_models_apart_and_closing_one_frees_its_own(tmp_path: Path) -> None:
    a = Kernel(KernelConfig(modules=["models"]), database=f"duckdb:///{tmp_path / 'a.duckdb'}").start()
    b = Kernel(KernelConfig(modules=["models"]), database=f"duckdb:///{tmp_path / 'b.duckdb'}").start()
    try:
        host_a, host_b = local_provider(a).host, local_provider(b).host
        chat_a, chat_b = host_a.chat("smollm2"), host_b.chat("smollm2")
        assert chat_a is not chat_b and chat_a.engine.llama is not chat_b.engine.llama
        assert chat_a.states is not None and chat_b.states is not None
        # Two speakers take turns in A: A saves a KV state; B's store and context stay empty.
        model_a = models_of(a).get("chat-default")
        for name in ("Ada", "Bo"):
            assert a.call(model_a.run(speaker(name), params=PARAMS).wait()).status == "completed"
        a.call(models_of(a).get("embed").embed(["a ticket to the coast"]))
        assert len(chat_a.states) >= 1 and chat_a.engine.n_tokens > 0
        assert len(chat_b.states) == 0 and chat_b.engine.n_tokens == 0
        assert sorted(host_a.loaded()) == sorted(["SmolLM2-135M-Instruct.Q4_1.gguf", "all-MiniLM-L6-v2"])

        a.close()  # the models module closes its providers: A's models are freed now, not at exit
        assert not chat_a.engine.is_open and host_a.loaded() == []
        with pytest.raises(ProviderError, match="closed"):
            host_a.chat("smollm2")
        # B's copy is untouched and still answers.
        assert chat_b.engine.is_open
        run = b.call(models_of(b).get("chat-default").run(speaker("Cy"), params=PARAMS).wait())
        assert run.status == "completed" and run.text.strip()
    finally:
        a.close()
        b.close()
    assert not chat_b.engine.is_open


def test_a_closed_provider_refuses_requests_in_one_line(tmp_path: Path) -> None:
    kernel = Kernel(KernelConfig(modules=["models"]), database=f"duckdb:///{tmp_path / 'k.duckdb'}").start()
    try:
        model = models_of(kernel).get("chat-default")
        provider = local_provider(kernel)
        kernel.call(provider.close())
        with pytest.raises(ProviderError) as refused:
            kernel.call(model.run(speaker("Di"), params=PARAMS).wait())
        assert str(refused.value) == "the local provider is closed"
    finally:
        kernel.close()


NO_EXIT_HOOK = """
import atexit
hooks = []
register = atexit.register
atexit.register = lambda fn, *a, **k: (hooks.append(getattr(fn, "__module__", "?")), register(fn, *a, **k))[1]
from tobio.providers.local import LocalConfig
from tobio.providers.model_host import ModelHost
host = ModelHost(LocalConfig(n_ctx=512))
engine = host.chat("smollm2").engine
host.close()
print(sum(str(m).startswith("tobio") for m in hooks), engine.is_open)
"""


def test_the_host_registers_no_exit_hook_and_frees_on_close(tmp_path: Path) -> None:
    """Loading and freeing a model registers no interpreter exit hook of ours (test order cannot matter)."""
    done = subprocess.run([sys.executable, "-c", NO_EXIT_HOOK], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "TOBIO_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "False"]
    assert "Exception ignored" not in done.stderr


UNCLOSED_EXIT = """
import os, tempfile, time
from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.models.module import models_of
kernel = Kernel(KernelConfig(modules=["models"]), database=f"duckdb:///{tempfile.mkdtemp()}/x.duckdb").start()
model = models_of(kernel).get("chat-default")
print(kernel.call(model.run([{"role": "user", "content": "Hi!"}], params={"max_tokens": 4}).wait()).status)
kernel.submit(model.run([{"role": "user", "content": "Tell me a long story."}], params={"max_tokens": 200}).wait())
time.sleep(1.0)  # the script ends mid-generation, never closing its kernel
"""


def test_a_script_that_never_closes_its_kernel_exits_cleanly_mid_generation(tmp_path: Path) -> None:
    """With no exit hook, the llama thread ends with the main thread: it stops the generation and frees
    the model before interpreter teardown (freeing it beside a running native call crashed the process)."""
    for _ in range(2):  # the crash it guards against did not happen every time
        done = subprocess.run([sys.executable, "-c", UNCLOSED_EXIT], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={"PYTHONPATH": str(ROOT), "TOBIO_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split() == ["completed"]


def test_the_adapter_is_pinned_to_the_version_pyproject_names() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in dependencies if re.match(r"llama-cpp-python\b", d)]
    assert pins == [f"llama-cpp-python=={PINNED_VERSION}"]
    assert version_mismatch(PINNED_VERSION) is None
    line = version_mismatch("0.3.99")
    assert line is not None and "0.3.99" in line and PINNED_VERSION in line and "\n" not in line


def test_another_installed_version_is_said_in_one_line(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import llama_cpp

    monkeypatch.setattr(llama_cpp, "__version__", "0.3.99")
    host = ModelHost(LocalConfig(n_ctx=512))
    try:
        with caplog.at_level(logging.WARNING, logger="tobio.providers.llama_adapter"):
            host.chat("smollm2")
    finally:
        host.close()
    said = [r.getMessage() for r in caplog.records if r.name == "tobio.providers.llama_adapter"]
    assert len(said) == 1 and "0.3.99" in said[0] and PINNED_VERSION in said[0]


# What only the adapter may touch: llama-cpp-python itself, and the private parts of its objects.
LLAMA_IMPORT = re.compile(r"^\s*(import llama_cpp|from llama_cpp\b)", re.MULTILINE)
LLAMA_INTERNAL = re.compile(r"\._(ctx|model|batch|stack|requires_eval|n_vocab)\b|\binput_ids\b|\.generate\s*=")


def test_llama_cpp_python_is_touched_only_by_the_adapter() -> None:
    offenders = []
    for path in sorted([*(ROOT / "tobio").rglob("*.py"), *(ROOT / "shell").rglob("*.py")]):
        if path.name == "llama_adapter.py":
            continue
        text = path.read_text()
        if LLAMA_IMPORT.search(text) or ("providers" in path.parts and LLAMA_INTERNAL.search(text)):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
