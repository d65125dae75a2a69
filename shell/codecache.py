"""Compiled code for what dataclasses and typing generate at import time, cached like bytecode.

On Python 3.11 and 3.12 every `@dataclass` compiles each method it adds from source text (`__init__`,
`__repr__`, `__eq__`, ...), one `exec` at a time, and every string annotation that typing turns into
a ForwardRef compiles too. A one-shot `tobio-shell -c "agent ls"` creates ~480 such methods (half of
them pydantic's own, at its import) and ~1,100 ForwardRefs: measured, 13% of the instructions of the
whole command, more than any single library's import. The text is the same from one run to the
next, so its compiled code is kept in a file next to the shell's bytecode and read back in one go.

Only the two modules' own `exec`/`compile` are routed here (a module global shadows the builtin), and
compiling the same text with the same flags gives the same code object, so nothing else changes. The
cache file follows the bytecode rules: not written under PYTHONDONTWRITEBYTECODE, in
`sys.pycache_prefix` when set, tagged with the interpreter's magic number, and bounded in size.
"""

from __future__ import annotations

import atexit
import builtins
import dataclasses
import importlib.util
import marshal
import os
import sys
import typing
from pathlib import Path
from types import CodeType
from typing import Any

MAX_ENTRIES = 8192  # a run adds ~1,600; a bigger cache means something keeps making new text
_FLAGS = 0  # neither dataclasses.py nor typing.py has `from __future__` imports: their compiles use none


class CodeCache:
    """Source text (and mode) -> code object, loaded from and saved to one marshal file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.codes: dict[tuple[str, str], CodeType] = {}
        self.added = 0
        if path is not None:
            self.codes = _read(path)

    def compile(self, source: str, mode: str) -> CodeType:
        key = (mode, source)
        code = self.codes.get(key)
        if code is None:
            code = builtins.compile(source, "<string>", mode, _FLAGS, True)
            if len(self.codes) < MAX_ENTRIES:
                self.codes[key] = code
                self.added += 1
        return code

    def save(self) -> None:
        """Write the file if this run compiled anything new (atomically: runs may end together)."""
        if self.path is None or not self.added:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            temp.write_bytes(importlib.util.MAGIC_NUMBER + marshal.dumps(self.codes))
            os.replace(temp, self.path)
            self.added = 0
        except (OSError, ValueError):  # a read-only install, or a value marshal cannot write
            pass


def _read(path: Path) -> dict[tuple[str, str], CodeType]:
    """The cached codes, or none when the file is missing, from another interpreter, or damaged."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    magic = importlib.util.MAGIC_NUMBER
    if not data.startswith(magic):
        return {}
    try:
        codes = marshal.loads(data[len(magic):])
    except (EOFError, ValueError, TypeError):
        return {}
    return codes if isinstance(codes, dict) else {}


def cache_path() -> Path | None:
    """Where the file goes: beside this package's bytecode, or None when bytecode is not written."""
    if sys.dont_write_bytecode:
        return None
    name = f"generated.{sys.implementation.cache_tag}.marshal"
    here = Path(__file__).resolve().parent
    if sys.pycache_prefix:  # as importlib places bytecode there: the source's path under the prefix
        return Path(sys.pycache_prefix) / here.relative_to(here.anchor) / name
    return here / "__pycache__" / name


_installed: CodeCache | None = None


def install() -> CodeCache:
    """Route dataclasses' `exec` and typing's `compile` of source text through the cache (once)."""
    global _installed
    if _installed is not None:
        return _installed
    cache = CodeCache(cache_path())

    def cached_exec(source: Any, globals: dict[str, Any] | None = None, locals: Any = None, /) -> None:
        code = cache.compile(source, "exec") if isinstance(source, str) else source
        builtins.exec(code, globals, locals)

    def cached_compile(source: Any, filename: Any, mode: str, flags: int = 0, dont_inherit: bool = False,
                       optimize: int = -1, **kwargs: Any) -> Any:
        if isinstance(source, str) and filename == "<string>" and flags == 0 and optimize == -1 and not kwargs:
            return cache.compile(source, mode)
        return builtins.compile(source, filename, mode, flags, dont_inherit, optimize, **kwargs)

    dataclasses.exec = cached_exec  # type: ignore[attr-defined]
    typing.compile = cached_compile  # type: ignore[attr-defined]
    atexit.register(cache.save)
    _installed = cache
    return cache
