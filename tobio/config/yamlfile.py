"""YAML loading that remembers where each value came from.

Two loaders share one builder. `load_yaml` reads the user's own configuration: it expands ${ENV}
and follows `!include`. `load_data_yaml` reads data that may come from anyone (persona files,
imports): no expansion, no custom tags, plain JSON-like values. Both bound nesting, alias use and
file size, so a hostile file fails fast with one line.

pydantic reports errors by path (`agents.0.name`); the source map turns that path back into
`file:line` so the user is sent to the right place.

A file that parsed before and has not changed is served from tobio/config/yamlcache.py: its tree as
stored before expansion is built again here, so a start that changed nothing never imports PyYAML.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tobio.config import yamlcache
from tobio.config.files import read_text
from tobio.config.limits import MAX_DEPTH, MAX_YAML_ALIASES, MAX_YAML_BYTES, MAX_YAML_NODES
from tobio.errors import ConfigError
from tobio.secrets import is_secret_name, redact_text

if TYPE_CHECKING:
    import yaml

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


_STANDARD_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")
)


class _Builder:
    """Turns a composed YAML node tree into Python data plus a SourceMap.

    `trusted` (the user's config) expands ${VAR} and follows `!include`; untrusted data does neither
    and accepts only the tags JSON has. Aliases are shared nodes, so every node built is counted:
    a billion-laughs document stops at MAX_YAML_NODES instead of filling memory.
    """

    def __init__(self, file: Path, loader: yaml.SafeLoader, smap: SourceMap, seen: tuple[Path, ...], trusted: bool) -> None:
        self.file, self.loader, self.smap, self.seen, self.trusted = file, loader, smap, seen, trusted
        self.built = 0

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        import yaml

        self.built += 1
        if self.built > MAX_YAML_NODES:
            raise ConfigError(f"{_where(self.file, node)}: too many values (more than {MAX_YAML_NODES}, aliases expanded)")
        self.smap.places.setdefault(loc, _where(self.file, node))
        if node.tag == "!include" and self.trusted:
            return self._include(node, loc)
        if node.tag not in (_yaml_parts()[0] if self.trusted else _STANDARD_TAGS):
            where = "in data files" if not self.trusted else "here"
            raise ConfigError(f"{_where(self.file, node)}: tag {_short(node.tag)} is not allowed {where}")
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise ConfigError(f"{_where(self.file, key_node)}: a key must be a plain value, not a list or mapping")
                key = self._scalar(key_node, expand=False)
                if key == "<<":
                    raise ConfigError(f"{_where(self.file, key_node)}: YAML merge keys are not supported")
                if key in out:
                    raise ConfigError(f"{_where(self.file, key_node)}: duplicate key {_short(key)}")
                self.smap.keys[loc + (key,)] = _where(self.file, key_node)
                out[key] = self.build(value_node, loc + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, loc + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node, expand=self.trusted)

    def _scalar(self, node: yaml.Node, expand: bool) -> Any:
        import yaml

        where = _where(self.file, node)
        if not isinstance(node, yaml.ScalarNode):
            raise ConfigError(f"{where}: tag {_short(node.tag)} needs a plain value")
        try:
            value = self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError, TypeError):  # a date like 2026-02-30, an int past Python's digit limit
            raise ConfigError(f"{where}: malformed {_short(node.tag)} value") from None
        if not self.trusted and not isinstance(value, (str, int, float, bool, type(None))):
            raise ConfigError(f"{where}: tag {_short(node.tag)} is not allowed in data files")
        if isinstance(value, str) and expand:
            value = interpolate(value, where)
        return value

    def _include(self, node: yaml.Node, loc: Loc) -> Any:
        import yaml

        if not isinstance(node, yaml.ScalarNode):
            raise ConfigError(f"{_where(self.file, node)}: !include takes a file name")
        return _include_file(self.file, str(node.value), _where(self.file, node), self.smap, loc, self.seen)


def _include_file(file: Path, name: str, where: Where, smap: SourceMap, loc: Loc, seen: tuple[Path, ...]) -> Any:
    """Follow `!include name` written at `where` in `file`; the included file's places go into `smap` under `loc`."""
    name = interpolate(name, where)
    try:
        target = (file.parent / name).resolve()
    except (OSError, ValueError, RuntimeError):
        raise ConfigError(f"{where}: !include names no usable file") from None
    if target in seen:
        raise ConfigError(f"{where}: !include cycle through {target}")
    data, sub = load_yaml(target, _seen=seen)
    # Errors inside the included data should point into the included file.
    for key, place in sub.places.items():
        smap.places[loc + key] = place
    for key, place in sub.keys.items():
        smap.keys[loc + key] = place
    return data


def _record(node: yaml.Node, loader: yaml.SafeLoader, trusted: bool) -> Any:
    """The tree a successful build read, as JSON for the cache: [kind, line, column, payload] per node.

    Scalars are stored as constructed and before expansion (`s`), an include as its name as written (`i`),
    mappings as [line, column, key, value] rows (`m`: keys keep their type), sequences as lists (`q`).
    Raises _Uncacheable for values JSON cannot hold exactly (dates, bytes).
    """
    import yaml

    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    if trusted and node.tag == "!include":
        return ["i", line, column, str(node.value)]
    if isinstance(node, yaml.MappingNode):
        rows = []
        for key_node, value_node in node.value:
            key = _plain(loader.construct_object(key_node, deep=True))
            value = _record(value_node, loader, trusted)
            if isinstance(key, str) and value[0] == "s" and _literal_secret(key, value[3]):
                raise _Uncacheable  # a key written into the file itself stays there only, not in a copy
            rows.append([key_node.start_mark.line + 1, key_node.start_mark.column + 1, key, value])
        return ["m", line, column, rows]
    if isinstance(node, yaml.SequenceNode):
        return ["q", line, column, [_record(item, loader, trusted) for item in node.value]]
    value = _plain(loader.construct_object(node, deep=True))
    if isinstance(value, str) and redact_text(value) != value:
        raise _Uncacheable  # a token or a URL with credentials: never copied into the cache
    return ["s", line, column, value]


_REFERENCES_ONLY = re.compile(r"(\$\{[^}]*\})*")


def _literal_secret(key: str, value: Any) -> bool:
    """A secret-named key (api_key, token, password …) given a literal value, not only `${VAR}` references."""
    return is_secret_name(key) and isinstance(value, str) and _REFERENCES_ONLY.fullmatch(value) is None


class _Uncacheable(Exception):
    """A file whose tree is not stored: a value JSON would not give back as the same type, or a secret."""


def _plain(value: Any) -> Any:
    if value is None or type(value) in (str, int, float, bool):
        return value
    raise _Uncacheable


class _Replay:
    """Builds data and SourceMap from a cached tree exactly as _Builder does from the nodes it came from.

    The tree passed the builder's checks when it was stored; expansion and includes are done here.
    A malformed tree raises TypeError, ValueError, IndexError or KeyError, and the file is parsed instead.
    """

    def __init__(self, file: Path, smap: SourceMap, seen: tuple[Path, ...], trusted: bool) -> None:
        self.file, self.smap, self.seen, self.trusted = file, smap, seen, trusted

    def build(self, rec: list[Any], loc: Loc) -> Any:
        kind, line, column, payload = rec
        where = Where(self.file, int(line), int(column))
        self.smap.places.setdefault(loc, where)
        if kind == "s":
            _plain(payload)
            return interpolate(payload, where) if self.trusted and isinstance(payload, str) else payload
        if kind == "m":
            out: dict[Any, Any] = {}
            for key_line, key_column, key, value in payload:
                if type(key) not in (str, int, float, bool, type(None)) or key in out:
                    raise ValueError("bad key")
                self.smap.keys[loc + (key,)] = Where(self.file, int(key_line), int(key_column))
                out[key] = self.build(value, loc + (key,))
            return out
        if kind == "q":
            return [self.build(item, loc + (i,)) for i, item in enumerate(payload)]
        if kind == "i" and self.trusted and isinstance(payload, str):
            return _include_file(self.file, payload, where, self.smap, loc, self.seen)
        raise ValueError("bad node")


def _check_expansion(node: yaml.Node, file: Path) -> None:
    """Count the values `node` builds into, aliases expanded, before building any.

    Linear in the document: a node shared through aliases is counted once and its size reused.
    A node that contains itself (`&a [*a]`) is refused too.
    """
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        item, children_done = stack.pop()
        if id(item) in sizes:
            continue
        children = _children(item)
        if children_done or not children:
            open_.discard(id(item))
            total = 1 + sum(sizes[id(child)] for child in children)
            if total > MAX_YAML_NODES:
                raise ConfigError(f"{_where(file, node)}: too many values (more than {MAX_YAML_NODES}, aliases expanded)")
            sizes[id(item)] = total
            continue
        if id(item) in open_:
            raise ConfigError(f"{_where(file, item)}: an alias refers to the value that contains it")
        open_.add(id(item))
        stack.append((item, True))
        for child in children:
            if id(child) in open_:
                raise ConfigError(f"{_where(file, child)}: an alias refers to the value that contains it")
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _short(value: Any) -> str:
    """A tag or key for an error message: short, and never a whole value."""
    text = str(value).replace("tag:yaml.org,2002:", "!!")
    return repr(text if len(text) <= 40 else text[:37] + "...")


@cache
def _yaml_parts() -> tuple[frozenset[str], Any, Any]:
    """(tags the user's config may use, config loader, data loader): built on the first parse, so a start
    served from the cache never imports PyYAML."""
    import yaml

    class _Loader(yaml.SafeLoader):
        """SafeLoader that bounds nesting and alias use, and lets the `!include` tag through to the builder."""

        def __init__(self, stream: str, file: Path) -> None:
            super().__init__(stream)
            self.file = file
            self.depth = 0
            self.aliases = 0

        def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    raise ConfigError(f"{self._where()}: too many aliases (more than {MAX_YAML_ALIASES})")
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ConfigError(f"{self._where()}: nested more than {MAX_DEPTH} levels deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def _where(self) -> str:
            """file:line of the next event, for errors."""
            event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]  # types-PyYAML leaves Parser.peek_event unannotated
            mark = event.start_mark
            return f"{self.file}:{mark.line + 1}" if mark else str(self.file)

    def _include(loader: _Loader, node: yaml.ScalarNode) -> str:
        return loader.construct_scalar(node)

    _Loader.add_constructor("!include", _include)

    class _DataLoader(_Loader):
        """Data files: dates, `=` and `<<` stay text (JSON has none of them), so values survive a JSON round trip."""

        yaml_implicit_resolvers = {
            first: [(tag, regexp) for tag, regexp in resolvers if tag in _STANDARD_TAGS]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }

    # The user's config may also use YAML's other safe types (dates, !!binary, !!set …) and !include.
    config_tags = frozenset(tag for tag in yaml.SafeLoader.yaml_constructors if tag) | {"!include"}
    return config_tags, _Loader, _DataLoader


def load_yaml(path: str | os.PathLike[str], _seen: tuple[Path, ...] = ()) -> tuple[Any, SourceMap]:
    """Load one of the user's own config files: ${VAR} expanded, `!include` followed.

    Returns (data, source map). Errors are ConfigError naming file:line.
    """
    return _load(Path(path), trusted=True, seen=_seen)


def load_data_yaml(path: str | os.PathLike[str]) -> tuple[Any, SourceMap]:
    """Load a data file that may come from anyone: text stays as written, no tags, no includes."""
    return _load(Path(path), trusted=False, seen=())


def _load(file: Path, trusted: bool, seen: tuple[Path, ...]) -> tuple[Any, SourceMap]:
    key = yamlcache.key_for(file, trusted)
    if key is not None:
        hit, tree = yamlcache.lookup(key)
        if hit:
            smap = SourceMap(file)
            if tree is None:
                return {}, smap
            try:
                return _Replay(file, smap, seen + (Path(key.path),), trusted).build(tree, ()), smap
            except (TypeError, ValueError, IndexError, KeyError, _Uncacheable, RecursionError):
                pass  # a damaged entry: parse the file instead
    return _parse(file, trusted, seen, key)


def _parse(file: Path, trusted: bool, seen: tuple[Path, ...], key: yamlcache.Key | None) -> tuple[Any, SourceMap]:
    import yaml

    text = read_text(file, MAX_YAML_BYTES)
    smap = SourceMap(file)
    _, config_loader, data_loader = _yaml_parts()
    loader: Any = None
    try:
        loader = (config_loader if trusted else data_loader)(text, file)  # the reader refuses control characters here
        node = loader.get_single_node()
        if node is None:
            if key is not None:
                yamlcache.store(key, None)
            return {}, smap
        _check_expansion(node, file)
        try:
            me = file.resolve()
        except (OSError, RuntimeError):
            me = file
        data = _Builder(file, loader, smap, seen + (me,), trusted).build(node, ())
        if key is not None:
            try:
                yamlcache.store(key, _record(node, loader, trusted))
            except _Uncacheable:
                pass
        return data, smap
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{file}:{mark.line + 1}" if mark else str(file)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"{line}: malformed YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: malformed YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    except RecursionError:
        raise ConfigError(f"{file}: nested more than {MAX_DEPTH} levels deep") from None
    finally:
        if loader is not None:
            loader.dispose()
