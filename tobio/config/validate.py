"""pydantic validation whose errors read as `file:line: field 'x': what was expected`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tobio.config.yamlfile import SourceMap
from tobio.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
# Compiled on first use (re's cache), as a plain command's start never uses it: ~1.3 M instructions a pattern.
_SECRET = r"(?i)key|token|secret|pass|auth|cred|url|database|dsn"


def _field_name(loc: tuple[Any, ...]) -> str:
    name = ".".join(str(part) for part in loc) or "(top level)"
    return name if len(name) <= 80 else name[:77] + "..."


def _shown(value: Any) -> str:
    """A wrong value as the error shows it: short, since it may be long or come from an included file."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe(exc: ValidationError, smap: SourceMap, model: type[BaseModel], echo_values: bool = True) -> str:
    """One line per error, each naming file, line and field; values only when `echo_values` (own config)."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            allowed = ", ".join(n for n, f in owner.model_fields.items() if not f.exclude) if owner else "see the docs"
            msg = f"unknown field (expected one of: {allowed})"
            where = smap.where(loc, prefer_key=True)
        elif kind == "missing":
            msg = "field required"
            where = smap.where(loc[:-1])
        else:
            msg = err["msg"]
            where = smap.where(loc)
            # A value is echoed only where the user wrote it: not from data files, not from an
            # `!include`d file (it may be a credentials file), never for a secret-looking field.
            if (echo_values and "input" in err and kind not in ("model_type", "dict_type")
                    and Path(where.file) == Path(smap.file) and not re.search(_SECRET, _field_name(loc))):
                msg += f" (got {_shown(err['input'])})"
        lines.append(f"{where}: field '{_field_name(loc)}': {msg}")
    return "\n".join(lines)


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Walk the model's fields along `loc` to find the nested model whose fields were wrong."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        annotation = fields[part].annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                current = candidate
                break
            for inner in getattr(candidate, "__args__", ()):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    current = inner
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def validate(model: type[M], data: Any, smap: SourceMap, *, echo_values: bool = True, **context: Any) -> M:
    """Validate `data` loaded from `smap.file`; `base_dir` in the context resolves relative paths.

    Data files pass `echo_values=False`: their errors name the field, never what it held.
    """
    context.setdefault("base_dir", Path(smap.file).parent)
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(describe(exc, smap, model, echo_values)) from None
