"""A sentence-transformers BERT checkpoint (safetensors) written once as a GGUF that llama.cpp runs.

Embeddings then need neither PyTorch nor transformers: llama.cpp, already here for chat, runs BERT
encoders with mean pooling itself. The file is what llama.cpp's `convert_hf_to_gguf.py` writes for
`BertModel` (same tensor names through `gguf.TensorNameMap`, same hyperparameter keys, WordPiece vocab
in its "phantom space" form, special tokens through `gguf.SpecialVocab`), read here with plain numpy
instead of torch. Two keys of our own carry what sentence-transformers applies around the encoder:
`tobio.max_seq_length` (its truncation) and `tobio.normalize` (a Normalize module).

The GGUF is derived data: it is written to the user's cache dir under a name keyed by the source
files' contents, atomically, so a second start (or a second process racing the first) reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tobio.errors import ProviderSetupError

if TYPE_CHECKING:
    import numpy as np

CONVERTER_VERSION = 1  # bump when the written file changes, so caches are rebuilt
WEIGHTS = "model.safetensors"
Precision = Literal["f32", "f16"]
DEFAULT_PRECISION: Precision = "f16"  # cosine >= 0.99999 to float32 on LoCoMo's texts, half the file

# Architectures this writer handles: the encoder only (llama.cpp's BERT graph, absolute positions).
BERT_ARCHITECTURES = {"BertModel", "BertForMaskedLM"}
MAX_HEADER_BYTES = 100 << 20  # a safetensors header larger than this is not a model we wrote for
MAX_SEQ_KEY = "tobio.max_seq_length"
NORMALIZE_KEY = "tobio.normalize"


def cache_dir() -> Path:
    """Where converted models live: `models/` in Tobio's cache dir (`TOBIO_CACHE_DIR`, else ~/.cache/tobio)."""
    from tobio import paths

    return paths.cache_dir() / "models"


@dataclass(frozen=True)
class SentenceModel:
    """What a sentence-transformers directory says about its encoder and what wraps it."""

    directory: Path
    config: dict[str, Any]
    max_seq_length: int
    pooling: str  # "mean" or "cls"
    normalize: bool

    @property
    def name(self) -> str:
        """A readable stem for the cached file: the model's folder, or its package's when that is `model`."""
        parts = [p for p in self.directory.resolve().parts if p not in ("model", "models", "/")]
        return (parts[-1] if parts else "model").lower().replace("_", "-")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ProviderSetupError(f"cannot read {path}: {exc}") from None


def read_model(directory: str | os.PathLike[str]) -> SentenceModel:
    """The encoder's config and the sentence-transformers modules around it; a clear error if unsupported."""
    root = Path(directory).expanduser()
    config = _read_json(root / "config.json")
    if not isinstance(config, dict) or not (root / WEIGHTS).is_file():
        raise ProviderSetupError(f"{root} is not a sentence-transformers model folder (config.json and {WEIGHTS} needed)")
    architectures = set(config.get("architectures") or ["BertModel"])
    if config.get("model_type") != "bert" or not architectures & BERT_ARCHITECTURES:
        raise ProviderSetupError(f"{root}: only BERT encoders convert to GGUF here, not {config.get('model_type')!r}")
    if config.get("position_embedding_type", "absolute") != "absolute" or config.get("hidden_act", "gelu") != "gelu":
        raise ProviderSetupError(f"{root}: llama.cpp's BERT graph needs absolute positions and gelu")
    pooling, normalize, max_seq = "mean", False, int(config.get("max_position_embeddings", 512))
    modules = _read_json(root / "modules.json") or []
    for module in modules if isinstance(modules, list) else []:
        kind, path = str(module.get("type", "")), str(module.get("path", ""))
        if kind.endswith("Normalize"):
            normalize = True
        elif kind.endswith("Pooling"):
            settings = _read_json(root / path / "config.json") or {}
            if settings.get("pooling_mode_mean_tokens") or settings.get("pooling_mode") == "mean":
                pooling = "mean"
            elif settings.get("pooling_mode_cls_token") or settings.get("pooling_mode") == "cls":
                pooling = "cls"
            else:
                raise ProviderSetupError(f"{root}: only mean or CLS pooling is supported")
        elif kind and not kind.endswith("Transformer"):
            raise ProviderSetupError(f"{root}: the module {kind} has no llama.cpp counterpart")
    st_config = _read_json(root / "sentence_bert_config.json") or {}
    if st_config.get("max_seq_length"):
        max_seq = min(max_seq, int(st_config["max_seq_length"]))
    return SentenceModel(root, config, max_seq, pooling, normalize)


def read_safetensors(path: Path) -> Iterator[tuple[str, np.ndarray[Any, Any]]]:
    """The tensors of a .safetensors file as read-only numpy views (memory-mapped; no torch needed)."""
    import numpy as np

    dtypes: dict[str, Any] = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64, "I32": np.int32}
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ProviderSetupError(f"{path} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise ProviderSetupError(f"{path} is not a safetensors file (header of {n} bytes)")
        try:
            header = json.loads(f.read(n))
        except ValueError as exc:
            raise ProviderSetupError(f"{path}: unreadable safetensors header ({exc})") from None
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            kind, shape, (begin, end) = info["dtype"], [int(d) for d in info["shape"]], info["data_offsets"]
            dtype = np.dtype(dtypes[kind])
        except (KeyError, TypeError, ValueError):
            raise ProviderSetupError(f"{path}: tensor {name!r} has an unsupported or malformed entry") from None
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not 0 <= begin <= end <= len(data) or end - begin != count * dtype.itemsize:
            raise ProviderSetupError(f"{path}: tensor {name!r} lies outside the file or has the wrong size")
        array = data[begin:end].view(dtype).reshape(shape)
        if kind == "BF16":  # the upper half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        yield name, array


def _vocab(model: SentenceModel) -> tuple[list[str], list[int]]:
    """Tokens by id and their gguf.TokenType, as convert_hf_to_gguf's get_vocab_base + BertModel.set_vocab."""
    import gguf

    tokenizer = _read_json(model.directory / "tokenizer.json") or {}
    vocab: dict[str, int] = dict((tokenizer.get("model") or {}).get("vocab") or {})
    if not vocab:
        try:
            lines = (model.directory / "vocab.txt").read_text(encoding="utf-8").splitlines()
        except OSError:
            raise ProviderSetupError(f"{model.directory}: no WordPiece vocabulary (tokenizer.json or vocab.txt)") from None
        vocab = {token: i for i, token in enumerate(lines)}
    added: dict[str, bool] = {}
    for entry in tokenizer.get("added_tokens") or []:
        if isinstance(entry, dict) and isinstance(entry.get("content"), str) and isinstance(entry.get("id"), int):
            added[entry["content"]] = bool(entry.get("special"))
            vocab.setdefault(entry["content"], entry["id"])
    n_vocab = int(model.config.get("vocab_size") or 0) or max(vocab.values()) + 1
    by_id = {i: t for t, i in vocab.items() if i >= 0}
    if max(by_id) >= n_vocab:
        raise ProviderSetupError(f"{model.directory}: token ids exceed vocab_size {n_vocab}")
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_vocab):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        kind = gguf.TokenType.NORMAL
        if token in added:
            kind = gguf.TokenType.CONTROL if added[token] else gguf.TokenType.USER_DEFINED
        # llama.cpp's WordPiece marks a word start with U+2581 instead of marking continuations with ##
        if kind != gguf.TokenType.CONTROL:
            token = token[2:] if token.startswith("##") else "\u2581" + token
        tokens.append(token)
        types.append(kind)
    return tokens, types


def write_gguf(model: SentenceModel, out: Path, precision: Precision = DEFAULT_PRECISION) -> None:
    """Write `model` as a llama.cpp BERT GGUF at `out` (not atomic: see `cached_gguf`)."""
    import gguf
    import numpy as np

    hp = model.config
    n_layer = int(hp["num_hidden_layers"])
    ftype = gguf.LlamaFileType.ALL_F32 if precision == "f32" else gguf.LlamaFileType.MOSTLY_F16
    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_name(model.name)
    writer.add_block_count(n_layer)
    writer.add_context_length(int(hp["max_position_embeddings"]))
    writer.add_embedding_length(int(hp["hidden_size"]))
    writer.add_feed_forward_length(int(hp["intermediate_size"]))
    writer.add_head_count(int(hp["num_attention_heads"]))
    writer.add_layer_norm_eps(float(hp.get("layer_norm_eps", 1e-12)))
    writer.add_file_type(ftype)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN if model.pooling == "mean" else gguf.PoolingType.CLS)
    writer.add_uint32(MAX_SEQ_KEY, model.max_seq_length)
    writer.add_bool(NORMALIZE_KEY, model.normalize)

    tokens, types = _vocab(model)
    writer.add_token_type_count(int(hp.get("type_vocab_size", 1)))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")  # llama.cpp's WordPiece tokenizer has no pre-tokenizer variants
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # The special-token kinds this gguf version can write (CLS is written as BOS, as the converter does).
    kinds = [k for k in ("bos", "eos", "unk", "sep", "pad", "cls", "mask") if hasattr(writer, f"add_{k}_token_id")]
    gguf.SpecialVocab(model.directory, special_token_types=kinds, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)

    names = gguf.TensorNameMap(gguf.MODEL_ARCH.BERT, n_layer)
    keep_f32 = (gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.POS_EMBD], gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.TOKEN_TYPES])
    written = 0
    for name, array in read_safetensors(model.directory / WEIGHTS):
        name = name.removeprefix("bert.")
        if name.endswith(".gamma"):
            name = name[: -len(".gamma")] + ".weight"
        elif name.endswith(".beta"):
            name = name[: -len(".beta")] + ".bias"
        if name == "embeddings.position_ids" or name.startswith(("pooler.", "cls.")):
            continue  # not part of the encoder's output
        new_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ProviderSetupError(f"{model.directory}: no llama.cpp name for the tensor {name!r}")
        data = np.asarray(array, dtype=np.float32)
        if precision == "f16" and data.ndim > 1 and new_name.endswith(".weight") and not new_name.startswith(keep_f32):
            data = data.astype(np.float16)
        writer.add_tensor(new_name, data)
        written += 1
    if not written:
        raise ProviderSetupError(f"{model.directory}: {WEIGHTS} holds no tensors")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _fingerprint(model: SentenceModel, precision: Precision) -> str:
    """A key for the source files (configs, vocab, weights' header and size) and this writer's version."""
    digest = hashlib.blake2b(f"v{CONVERTER_VERSION} {precision}".encode(), digest_size=8)
    for relative in ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json",
                     "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "1_Pooling/config.json"):
        path = model.directory / relative
        digest.update(relative.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"-"))
    weights = model.directory / WEIGHTS
    with weights.open("rb") as f:
        head = f.read(8)
        digest.update(head + f.read(min(struct.unpack("<Q", head)[0], MAX_HEADER_BYTES)))
    digest.update(str(weights.stat().st_size).encode())
    return digest.hexdigest()


def cached_gguf(directory: str | os.PathLike[str], precision: Precision = DEFAULT_PRECISION) -> Path:
    """The GGUF for a sentence-transformers folder: from the cache, or written there first (atomically)."""
    model = read_model(directory)
    target = cache_dir() / f"{model.name}-{precision}-{_fingerprint(model, precision)}.gguf"
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return _write_atomically(model, target, precision)
    except PermissionError:
        # A read-only home still gets embeddings: the file goes to a temporary folder for this process.
        fallback = Path(tempfile.gettempdir()) / f"tobio-{os.getuid() if hasattr(os, 'getuid') else 0}" / target.name
        fallback.parent.mkdir(parents=True, exist_ok=True)
        return fallback if fallback.is_file() else _write_atomically(model, fallback, precision)


def _write_atomically(model: SentenceModel, target: Path, precision: Precision) -> Path:
    """Write next to `target` and rename: a reader never sees half a file, a racing writer's copy is equal."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        write_gguf(model, Path(tmp), precision)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
