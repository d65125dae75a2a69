"""YAML loading that remembers where each value came from, expands ${ENV} and follows !include.

pydantic reports errors by path (`agents.0.name`); the source map turns that path back into
`file:line` so the user is sent to the right place.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tobio.errors import ConfigError

Loc = tuple[str | int, ...]
_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Where:
    """A place in a file, 1-based as editors show it."""

    file: Path
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class SourceMap:
    """Maps a value's path inside the loaded data to where it was written."""

    file: Path
    places: dict[Loc, Where] = field(default_factory=dict)
    keys: dict[Loc, Where] = field(default_factory=dict)

    def sub(self, prefix: Loc) -> SourceMap:
        """The map of a nested value, so it can be validated on its own and still point at its lines."""
        n = len(prefix)
        out = SourceMap(self.file)
        out.places = {k[n:]: v for k, v in self.places.items() if k[:n] == prefix}
        out.keys = {k[n:]: v for k, v in self.keys.items() if k[:n] == prefix}
        if () not in out.places:
            out.places[()] = self.where(prefix)
        return out

    def where(self, loc: Loc, prefer_key: bool = False) -> Where:
        """The closest known place for `loc`, walking up to its parents."""
        loc = tuple(loc)
        while True:
            table = (self.keys, self.places) if prefer_key else (self.places, self.keys)
            for places in table:
                if loc in places:
                    return places[loc]
            if not loc:
                return Where(self.file, 1, 1)
            loc = loc[:-1]


def _where(file: Path, node: yaml.Node) -> Where:
    return Where(file, node.start_mark.line + 1, node.start_mark.column + 1)


def interpolate(text: str, where: Where) -> str:
    """Expand ${VAR} and ${VAR:-default}; `$$` is a literal dollar sign."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(
                    f"{where}: environment variable ${{{name}}} is not set "
                    f"(set it, or write ${{{name}:-default}})"
                )
            return default
        return value

    return _ENV.sub(sub, text)


class _Builder:
    """Turns a composed YAML node tree into Python data plus a SourceMap."""

    def __init__(self, file: Path, loader: yaml.SafeLoader, smap: SourceMap, seen: tuple[Path, ...]) -> None:
        self.file, self.loader, self.smap, self.seen = file, loader, smap, seen

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.smap.places.setdefault(loc, _where(self.file, node))
        if node.tag == "!include":
            return self._include(node, loc)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if key == "<<":
                    raise ConfigError(f"{_where(self.file, key_node)}: YAML merge keys are not supported")
                if key in out:
                    raise ConfigError(f"{_where(self.file, key_node)}: duplicate key {key!r}")
                self.smap.keys[loc + (key,)] = _where(self.file, key_node)
                out[key] = self.build(value_node, loc + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, loc + (i,)) for i, item in enumerate(node.value)]
        value = self.loader.construct_object(node, deep=True)
        if isinstance(value, str):
            value = interpolate(value, _where(self.file, node))
        return value

    def _include(self, node: yaml.Node, loc: Loc) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise ConfigError(f"{_where(self.file, node)}: !include takes a file name")
        target = (self.file.parent / interpolate(str(node.value), _where(self.file, node))).resolve()
        if target in self.seen:
            raise ConfigError(f"{_where(self.file, node)}: !include cycle through {target}")
        data, sub = load_yaml(target, _seen=self.seen)
        # Errors inside the included data should point into the included file.
        for key, where in sub.places.items():
            self.smap.places[loc + key] = where
        for key, where in sub.keys.items():
            self.smap.keys[loc + key] = where
        return data


class _Loader(yaml.SafeLoader):
    """SafeLoader that lets the `!include` tag through to the builder."""


_Loader.add_constructor("!include", lambda loader, node: loader.construct_scalar(node))


def load_yaml(path: str | os.PathLike[str], _seen: tuple[Path, ...] = ()) -> tuple[Any, SourceMap]:
    """Load one YAML file; returns (data, source map). Errors are ConfigError naming file:line."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    smap = SourceMap(file)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, smap
        return _Builder(file, loader, smap, _seen + (file.resolve(),)).build(node, ()), smap
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{file}:{mark.line + 1}" if mark else str(file)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"{line}: malformed YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: malformed YAML: {exc}") from None
    finally:
        loader.dispose()
