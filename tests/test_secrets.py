"""Secrets outside `api_key` are never stored or shown: headers in params, keys in URLs, log lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.models.module import models_of
from tobio.secrets import is_secret_name, redact, redact_text, redact_url

KEY = "sk-live-abcdefghijklmnopqrstuvwxyz0123"


@pytest.mark.parametrize("name", ["api_key", "X-Api-Key", "Authorization", "access_token", "apiKey", "password",
                                  "OPENAI_API_KEY", "cookie", "client_secret"])
def test_credential_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["max_tokens", "prompt_tokens", "top_k", "keywords", "temperature", "stop", "seed"])
def test_ordinary_names_stay_visible(name: str) -> None:
    assert not is_secret_name(name)


def test_nested_params_urls_and_text() -> None:
    params = {"temperature": 0.3, "max_tokens": 64,
              "extra_headers": {"Authorization": f"Bearer {KEY}", "X-Trace": "ok"},
              "extra_body": {"options": [{"token": KEY}]}}
    shown = json.dumps(redact(params))
    assert KEY not in shown and '"max_tokens": 64' in shown and '"X-Trace": "ok"' in shown
    assert KEY not in redact_url(f"https://user:{KEY}@api.example.com/v1?api_key={KEY}&model=x")
    assert "model=x" in redact_url(f"https://api.example.com/v1?api_key={KEY}&model=x")
    assert KEY not in redact_text(f"401 from https://api.example.com/v1?key={KEY}: Authorization: Bearer {KEY}")


def kernel_with_secrets(tmp_path: Path) -> Kernel:
    config = KernelConfig.model_validate({
        "modules": ["models"],
        "providers": {"remote": {"type": "openai", "base_url": f"http://user:{KEY}@127.0.0.1:9/v1?api_key={KEY}"}},
        "models": {"chat-remote": {"provider": "remote", "model": "m", "purpose": "chat",
                                   "params": {"extra_headers": {"Authorization": f"Bearer {KEY}"}, "max_tokens": 8}}},
    })
    return Kernel(config, database=f"duckdb:///{tmp_path / 'secrets.duckdb'}").start()


def test_commands_never_show_a_key(tmp_path: Path) -> None:
    with kernel_with_secrets(tmp_path) as kernel:
        for line in ("model ls", "model show chat-remote", "provider ls"):
            shown = kernel.run(line).to_plain()
            assert KEY not in shown, f"`{line}` showed the key:\n{shown}"
        assert "max_tokens" in kernel.run("model ls").to_plain()


@pytest.mark.slow
def test_a_failed_run_stores_no_key(tmp_path: Path) -> None:
    """The run fails (nothing listens on port 9); its params, error and the logs keep no key."""
    with kernel_with_secrets(tmp_path) as kernel:
        model = models_of(kernel).get("chat-remote")

        async def attempt() -> None:
            run = model.run([{"role": "user", "content": "hi"}])
            try:
                await run.wait()
            except Exception:  # the failure itself is expected
                pass

        kernel.call(attempt())
        kernel.call(kernel.flush())
        dump = kernel.run("sql SELECT * FROM runs;").to_plain() + kernel.run("sql SELECT * FROM logs;").to_plain()
        assert "chat-remote" in dump
        assert KEY not in dump


@pytest.mark.parametrize("text", ["expected e.g. duckdb:///path/tobio.duckdb", "see http://127.0.0.1:5006/ now",
                                  "sqlite:////tmp/x.db"])
def test_text_without_secrets_is_left_as_written(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(("typed", "kept"), [
    ("model add x --api-key abc123def", "model add x --api-key ***"),
    ("tobio-shell --token=xyz789 chat", "tobio-shell --token=*** chat"),
    ("sql SELECT 1 -- password: hunter2", "sql SELECT 1 -- password: ***"),
    ("run --model http://me:pw@host/v1 hi", "run --model http://***@host/v1 hi"),
    ("OPENAI_API_KEY=sk-abcdefghijklmnopqrstuv ./dev run", "OPENAI_API_KEY=*** ./dev run"),
    ("persona set tobio goals 'find the key to the shed'", "persona set tobio goals 'find the key to the shed'"),
    ("model test m --max-tokens 9 max_tokens=5", "model test m --max-tokens 9 max_tokens=5"),
])
def test_the_shell_history_file_keeps_no_secret(tmp_path: Path, typed: str, kept: str) -> None:
    from shell.history import RedactingFileHistory

    path = tmp_path / "history"
    RedactingFileHistory(str(path)).store_string(typed)
    assert kept in path.read_text()
    assert list(RedactingFileHistory(str(path)).load_history_strings()) == [kept]
