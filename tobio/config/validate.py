"""pydantic validation whose errors read as `file:line: field 'x': what was expected`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tobio.config.yamlfile import SourceMap
from tobio.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _field_name(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def describe(exc: ValidationError, smap: SourceMap, model: type[BaseModel]) -> str:
    """One line per error, each naming file, line and field."""
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
            if "input" in err and kind not in ("model_type", "dict_type"):
                msg += f" (got {err['input']!r})"
            where = smap.where(loc)
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


def validate(model: type[M], data: Any, smap: SourceMap, **context: Any) -> M:
    """Validate `data` loaded from `smap.file`; `base_dir` in the context resolves relative paths."""
    context.setdefault("base_dir", Path(smap.file).parent)
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(describe(exc, smap, model)) from None
