"""`--model URL`: point the chat bundles at an OpenAI-compatible server with one flag.

Ollama, llama.cpp's server, vLLM, LM Studio and OpenAI all speak `/v1/chat/completions`. The flag
(or TOBIO_MODEL_URL) adds a provider named `server` and points every chat-like bundle (chat, json,
summarize, classify) at it; embeddings stay on the embedded model, since few servers offer them.
The key, if the server wants one, comes from TOBIO_MODEL_API_KEY or OPENAI_API_KEY: never a flag,
so it never lands in shell history or `ps`.
"""

from __future__ import annotations

import json
import os
import urllib.parse

from tobio.config.schema import KernelConfig
from tobio.errors import ConfigError

SERVER_PROVIDER = "server"
CHAT_PURPOSES = ("chat", "json", "summarize", "classify")
KEY_VARIABLES = ("TOBIO_MODEL_API_KEY", "OPENAI_API_KEY")


def parse_server_url(value: str) -> tuple[str, str | None]:
    """`http://host:port[/v1][#model]` -> (base URL ending in /v1 unless a path was given, model or None)."""
    raw, _, model = value.strip().partition("#")
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--model: expected an http(s) URL of an OpenAI-compatible server, such as "
                          f"http://127.0.0.1:11434/v1 (got {_safe(raw)!r})")
    if parts.username or parts.password or parts.query:
        raise ConfigError("--model: put no credentials or query in the URL; set TOBIO_MODEL_API_KEY instead")
    path = parts.path.rstrip("/") or "/v1"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", "")), (model.strip() or None)


def _safe(url: str) -> str:
    """The URL without anything that may be a secret (user info, query), for error messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))[:200]


def api_key_from_env() -> str | None:
    for name in KEY_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return None


def first_served_model(base_url: str, api_key: str | None, timeout_s: float = 5.0) -> str:
    """The first model id the server lists (`GET /models`): what `--model URL` uses when no #name is given."""
    import urllib.error
    import urllib.request  # here, not at the top: it brings http.client (~30 ms) to every start

    request = urllib.request.Request(f"{base_url}/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # http(s) checked above
            body = json.loads(response.read(1_000_000))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ConfigError(f"--model: cannot list the models of {base_url} ({reason}); "
                          "is the server running? Name one with URL#MODEL") from None
    models = body.get("data") if isinstance(body, dict) else None
    ids: list[str] = [m["id"] for m in models or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]
    if not ids:
        raise ConfigError(f"--model: {base_url} lists no models; name one with URL#MODEL")
    return ids[0]


def with_model_server(config: KernelConfig, value: str) -> KernelConfig:
    """A copy of `config` whose chat-like bundles run on the server at `value`."""
    base_url, model = parse_server_url(value)
    key = api_key_from_env()
    model = model or first_served_model(base_url, key)
    provider: dict[str, object] = {"type": "openai", "base_url": base_url,
                                   "description": "--model / TOBIO_MODEL_URL"}
    if key:
        provider["api_key"] = key
    models = {
        name: spec.model_copy(update={"provider": SERVER_PROVIDER, "model": model, "path": None})
        if spec.purpose in CHAT_PURPOSES else spec
        for name, spec in config.models.items()
    }
    return config.model_copy(update={"providers": {**config.providers, SERVER_PROVIDER: provider}, "models": models})


def kernel_config(config: str | None, model_url: str | None) -> KernelConfig | str | None:
    """What a front end hands to Kernel(): the config path found for it (the user's copy of the
    default configs when run outside a checkout), or, with `--model URL`, the loaded config pointed
    at that server (the one place both `tobio-shell` and `tobio web` do this)."""
    from tobio.paths import find_config

    path = find_config(config, installed=True)
    if not model_url:
        return str(path) if path else None
    from tobio.config.schema import load_kernel_config

    return with_model_server(load_kernel_config(path), model_url)
