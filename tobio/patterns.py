"""Regular expressions from untrusted text (lorebook keys, scripted rules), bounded by construction.

A pattern is refused when it is long or repeats a group that itself repeats (`(a+)+`, the shape of
exponential backtracking); each search has a timeout, runs with the GIL released (the `regex`
package's `concurrent`), and a pattern that once ran out of time is never run again in this process,
so a hostile pattern costs its timeout once. Without `regex` (it is not always installed) there is no
timeout: the static refusal is then all that stands, so repeated alternatives (`(a|aa)+`) and
backreferences are refused too.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from types import ModuleType
from typing import Any

MAX_PATTERN = 1000  # characters in one pattern
_POISONED_MAX = 4096
_poisoned: set[tuple[str, int]] = set()
_lock = threading.Lock()
_NEEDS_REGEX = re.compile(r"\\[1-9]|\(\?P=")  # backreferences: refused without `regex`
# What `regex` may read otherwise than `re` does: set operations and POSIX classes in a set, a brace that
# is not a repeat count (`regex`'s fuzzy matching: `a{e<=1}`).
_READ_OTHERWISE = re.compile(r"\[\[|--|&&|~~|\|\||\[:|\{(?!\d+(?:,\d*)?\})")


class PatternError(ValueError):
    """Why a pattern is refused, in one line."""


_NOT_YET: Any = object()
_regex: ModuleType | None = _NOT_YET  # the `regex` package, or None where it is not installed


def _lib() -> ModuleType | None:
    """`regex`, imported when a pattern is first compiled or searched (~8 ms: not at every start)."""
    global _regex
    if _regex is _NOT_YET:
        try:
            import regex
        except ImportError:  # pragma: no cover - depends on the environment
            _regex = None
        else:
            _regex = regex
    return _regex


def nests_quantifiers(pattern: str, alternation: bool = False) -> bool:
    """Whether a group holding a repetition (or a backreference) is itself repeated, like `(a+)+`,
    `(\\w*\\s)*`, `(?:x|\\1){2,}`: the shape of exponential backtracking. One pass over the pattern."""
    stack: list[bool] = []  # per open group: does it hold a repetition?
    closed = False  # the item just read is a group that holds one
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 < n and pattern[i + 1].isdigit() and stack:
                stack[-1] = True  # a backreference counts as a repetition
            i, closed = i + 2, False
            continue
        if c == "[":  # a character class is one item
            j = i + 1
            j += pattern[j:j + 1] == "^"
            j += pattern[j:j + 1] == "]"
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i, closed = j + 1, False
            continue
        brace = re.match(r"\{\d*,?\d*\}", pattern[i:i + 24]) if c == "{" else None
        if c in "*+" or brace is not None:
            if closed:
                return True
            if stack:
                stack[-1] = True
            i += len(brace.group(0)) if brace is not None else 1
            while i < n and pattern[i] in "?+":  # lazy or possessive forms of the same repetition
                i += 1
            continue
        if c == "|" and alternation and stack:
            stack[-1] = True  # `(a|aa)+`: overlapping alternatives backtrack as badly
        if c == "(":
            stack.append(False)
            closed = False
        elif c == ")":
            closed = stack.pop() if stack else False
            if closed and stack:
                stack[-1] = True
        elif c != "?" or not closed:
            closed = False
        i += 1
    return False


def check_pattern(pattern: str, ignore_case: bool = False) -> None:
    """PatternError when `compile_pattern` would refuse `pattern`, for a config's validation. A plain pattern
    (none of the shapes refused without `regex`, nothing `regex` reads otherwise) that the standard library's
    `re` compiles, `regex` compiles too: only the others are compiled with it, so a start that validates
    agents' rules does not import it."""
    if len(pattern) > MAX_PATTERN or nests_quantifiers(pattern) or _NEEDS_REGEX.search(pattern) \
            or _READ_OTHERWISE.search(pattern) or nests_quantifiers(pattern, alternation=True):
        compile_pattern(pattern, ignore_case)
        return
    try:
        re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except Exception:  # re.error, ValueError (flags), OverflowError (counts): whatever it is, regex decides
        compile_pattern(pattern, ignore_case)  # regex's own answer (it accepts more than re) and message


def compile_pattern(pattern: str, ignore_case: bool = False, multiline: bool = False, dotall: bool = False) -> Any:
    """The compiled pattern, or PatternError saying in one line why it is refused (checked once per pattern)."""
    if len(pattern) > MAX_PATTERN:
        raise PatternError(f"pattern longer than {MAX_PATTERN} characters")
    compiled = _compile(pattern, ignore_case, multiline, dotall)
    if isinstance(compiled, str):
        raise PatternError(compiled)
    return compiled


@lru_cache(maxsize=4096)
def _compile(pattern: str, ignore_case: bool, multiline: bool, dotall: bool) -> Any:
    """The compiled pattern, or why it is refused."""
    shown = pattern if len(pattern) <= 60 else pattern[:57] + "..."
    if nests_quantifiers(pattern):
        return f"pattern {shown!r} repeats a group that repeats (catastrophic backtracking)"
    if _lib() is None and (_NEEDS_REGEX.search(pattern) or nests_quantifiers(pattern, alternation=True)):
        return f"pattern {shown!r} repeats alternatives or backreferences (refused without the `regex` package)"
    lib: Any = _lib() or re
    flags = (lib.IGNORECASE if ignore_case else 0) | (lib.MULTILINE if multiline else 0) | (lib.DOTALL if dotall else 0)
    try:
        return lib.compile(pattern, flags)
    except Exception as exc:  # the message is what the caller shows
        return f"pattern {shown!r} is not a valid regular expression ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})"


def search(compiled: Any, text: str, timeout: float, poison: bool = True) -> bool:
    """Whether `compiled` matches in `text`, giving up (False) after `timeout` seconds. With `poison`
    (give it only when `timeout` is a search's full allowance, not the scraps of a spent budget), a
    pattern that runs out of time is never run again."""
    if _lib() is None:
        return compiled.search(text) is not None
    ident = (compiled.pattern, int(compiled.flags))
    if ident in _poisoned:
        return False
    try:
        return compiled.search(text, timeout=max(timeout, 1e-4), concurrent=True) is not None
    except TimeoutError:
        if not poison:
            return False
        with _lock:
            if len(_poisoned) >= _POISONED_MAX:
                _poisoned.clear()
            _poisoned.add(ident)
        return False
