"""JSON from untrusted text (cards, chats, lorebooks, command arguments): one clear line for anything
that is not plain finite JSON. Nesting is bounded, and `NaN`, `Infinity` and numbers too large for a
float (`1e999`) are refused: Python's json accepts them, but they break comparisons and sorting later
(an entry `order` of NaN) or overflow an int conversion far from the file that held them."""

from __future__ import annotations

import json
import math
from typing import Any

from tobio.config.limits import MAX_DEPTH
from tobio.errors import ConfigError


def depth(value: Any) -> int:
    """How deeply lists and dicts nest in `value` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def check_depth(value: Any, source: str, limit: int = MAX_DEPTH) -> Any:
    """`value` itself, or a ConfigError when it nests deeper than `limit`."""
    if depth(value) > limit:
        raise ConfigError(f"{source}: nested more than {limit} levels deep")
    return value


class _NotFinite(ValueError):
    def __init__(self, literal: str) -> None:
        super().__init__(literal)
        self.literal = literal


def _constant(literal: str) -> Any:
    raise _NotFinite(literal)


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NotFinite(literal if len(literal) <= 24 else literal[:21] + "...")
    return value


def loads(text: str | bytes, source: str, limit: int = MAX_DEPTH) -> Any:
    """`json.loads` whose failures (syntax, depth, NaN/Infinity, huge numbers) are one ConfigError naming `source`."""
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float)
    except _NotFinite as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc.literal} is not a finite number)") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested more than {limit} levels deep") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, UnicodeDecodeError) as exc:  # e.g. an integer with more digits than Python allows
        raise ConfigError(f"{source}: not valid JSON ({type(exc).__name__})") from None
    return check_depth(value, source, limit)
