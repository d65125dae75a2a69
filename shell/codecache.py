"""Compiled code for what dataclasses, typing and re make at import time, cached like bytecode.

On Python 3.11 and 3.12 every `@dataclass` compiles each method it adds from source text (`__init__`,
`__repr__`, `__eq__`, ...), one `exec` at a time, and every string annotation that typing turns into
a ForwardRef compiles too. A one-shot `tobio-shell -c "agent ls"` creates ~480 such methods (half of
them pydantic's own, at its import) and ~1,100 ForwardRefs: measured, 13% of the instructions of the
whole command, more than any single library's import. The text is the same from one run to the
next, so its compiled code is kept in a file next to the shell's bytecode and read back in one go.
Regular expressions compiled at import (~200, in Python code: 5% of the command) keep what their
compiler hands to `_sre.compile`, which validates it again, in the same file.

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
import re
import sys
import typing
from pathlib import Path
from types import CodeType
from typing import Any

_sre: Any = importlib.import_module("_sre")  # the regex engine (no stubs): its compile and MAGIC

MAX_ENTRIES = 8192  # a run adds ~1,000; a bigger cache means something keeps making new text
# New entries worth rewriting the file for. A few change every run: tokenize builds patterns from sets of
# string prefixes, in hash order. A new Tobio or library version brings hundreds.
SAVE_AFTER = 16
_FLAGS = 0  # neither dataclasses.py nor typing.py has `from __future__` imports: their compiles use none


class CodeCache:
    """Source text (and mode) -> code object, loaded from and saved to one marshal file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.codes: dict[tuple[str, Any], Any] = {}
        self.added = 0
        self.used: set[tuple[str, Any]] = set()  # what this run asked for: all the file keeps when rewritten
        self.found = False  # whether the file was there and read
        if path is not None:
            self.codes = _read(path)
            self.found = bool(self.codes)

    def _keep(self, key: tuple[str, Any], value: Any) -> None:
        self.used.add(key)
        if len(self.codes) < MAX_ENTRIES:
            self.codes[key] = value
            self.added += 1

    def compile(self, source: str, mode: str) -> CodeType:
        key = (mode, source)
        code = self.codes.get(key)
        if not isinstance(code, CodeType):
            code = builtins.compile(source, "<string>", mode, _FLAGS, True)
            self._keep(key, code)
        else:
            self.used.add(key)
        return code

    def regex(self, pattern: str | bytes, flags: int, arguments: Any) -> Any:
        """A compiled pattern from the `_sre.compile` arguments kept for it, made by `arguments` if none are."""
        key = ("re", (pattern, flags))
        kept = self.codes.get(key)
        if kept is None:
            kept = arguments(pattern, flags)
            self._keep(key, kept)
        else:
            self.used.add(key)
        return _sre.compile(pattern, *kept)  # checks the code again: a bad entry raises, never crashes

    def save(self) -> None:
        """Write what this run used, if there was no file or this run compiled enough that is new (atomically:
        runs may end together). Entries of older versions of the code, and text that changes every run,
        leave the file then."""
        if self.path is None or not self.added or (self.found and self.added < SAVE_AFTER):
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            kept = {key: self.codes[key] for key in self.used if key in self.codes}
            temp.write_bytes(_magic() + marshal.dumps(kept))
            os.replace(temp, self.path)
            self.added, self.found = 0, True
        except (OSError, ValueError):  # a read-only install, or a value marshal cannot write
            pass


def _read(path: Path) -> dict[tuple[str, Any], Any]:
    """The cached codes, or none when the file is missing, from another interpreter, or damaged."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    magic = _magic()
    if not data.startswith(magic):
        return {}
    try:
        codes = marshal.loads(data[len(magic):])
    except (EOFError, ValueError, TypeError):
        return {}
    return codes if isinstance(codes, dict) else {}


def _magic() -> bytes:
    """The bytecode's magic number and the regex engine's: either changing makes the file stale."""
    return importlib.util.MAGIC_NUMBER + int(_sre.MAGIC).to_bytes(4, "little")


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
    """Route dataclasses' `exec`, typing's `compile` of source text and re's compiler through the cache (once)."""
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
    _route_regexes(cache)
    atexit.register(cache.save)
    _installed = cache
    return cache


def _route_regexes(cache: CodeCache) -> None:
    """re's compiler (3.11+: `re._compiler.compile`) through the cache; left alone where it differs."""
    compiler = getattr(re, "_compiler", None) if (3, 11) <= sys.version_info < (3, 14) else None  # as read there
    original = getattr(compiler, "compile", None)
    code = getattr(compiler, "_code", None)
    parse = getattr(getattr(compiler, "_parser", None), "parse", None)
    if compiler is None or original is None or code is None or parse is None:
        return

    def arguments(pattern: str | bytes, flags: int) -> tuple[Any, ...]:
        """What `re._compiler.compile` passes to `_sre.compile` after the pattern (its last lines)."""
        parsed = parse(pattern, flags)
        groupindex = parsed.state.groupdict
        indexgroup: list[str | None] = [None] * parsed.state.groups
        for name, index in groupindex.items():
            indexgroup[index] = name
        # Plain ints: the compiler's opcodes are an int subclass, which marshal cannot write.
        return (int(flags | parsed.state.flags), [int(c) for c in code(parsed, flags)], int(parsed.state.groups - 1),
                {str(k): int(v) for k, v in groupindex.items()}, tuple(indexgroup))

    def cached(pattern: Any, flags: int = 0) -> Any:
        if isinstance(pattern, str | bytes) and type(flags) is int and not flags & re.DEBUG:
            return cache.regex(pattern, flags, arguments)
        return original(pattern, flags)

    compiler.compile = cached
