"""Getting a validated object out of a model that was asked for JSON.

Order of defence: constrained decoding when the provider has it; then parse leniently (code fences,
prose around the object, trailing commas); then ask the `json` model to repair the text against the
schema, up to N times; then a clear error that keeps the raw text for inspection.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tobio.errors import TobioError

M = TypeVar("M", bound=BaseModel)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


class JSONRepairError(TobioError):
    """The model's output could not be turned into a valid object; `raw` keeps every attempt."""

    def __init__(self, message: str, raw: list[str]) -> None:
        super().__init__(message)
        self.raw = raw


def _candidates(text: str) -> list[str]:
    out = [text.strip()]
    out += [m.strip() for m in _FENCE.findall(text)]
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start >= 0:
        end = max(text.rfind("}"), text.rfind("]"))
        if end > start:
            out.append(text[start : end + 1])
    return out + [_TRAILING_COMMA.sub(r"\1", c) for c in out]


def parse_json(text: str) -> Any:
    """The first JSON value found in `text`, tolerating fences, surrounding prose and trailing commas."""
    for candidate in _candidates(text):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise ValueError("no JSON value found")


def validate_text(text: str, schema: type[M]) -> tuple[M | None, str]:
    """(object, "") when `text` holds a valid object; (None, what is wrong) otherwise."""
    try:
        data = parse_json(text)
    except ValueError as exc:
        return None, str(exc)
    try:
        return schema.model_validate(data), ""
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors(include_url=False))
        return None, problems


def repair_prompt(text: str, problem: str, schema: type[BaseModel]) -> list[dict[str, str]]:
    """Messages asking the json model to fix `text` so that it matches `schema`."""
    return [
        {"role": "system", "content": "You fix broken JSON. Reply with one JSON object only, no prose."},
        {
            "role": "user",
            "content": (
                f"JSON schema:\n{json.dumps(schema.model_json_schema())}\n\n"
                f"Broken output:\n{text}\n\nProblem: {problem}\n\nThe corrected JSON object:"
            ),
        },
    ]
