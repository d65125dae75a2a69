"""JSON from untrusted text (cards, command arguments) with a nesting bound, so depth is one clear line."""

from __future__ import annotations

import json
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


def loads(text: str | bytes, source: str, limit: int = MAX_DEPTH) -> Any:
    """`json.loads` whose failures (syntax, depth, huge numbers) are one ConfigError naming `source`."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ConfigError(f"{source}: nested more than {limit} levels deep") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, UnicodeDecodeError) as exc:  # e.g. an integer with more digits than Python allows
        raise ConfigError(f"{source}: not valid JSON ({type(exc).__name__})") from None
    return check_depth(value, source, limit)
