"""The shell's cache of code that dataclasses and typing compile from text: same behaviour, no recompiling."""

from __future__ import annotations

import importlib.util
import marshal
import os
import subprocess
import sys
from pathlib import Path

from shell.codecache import CodeCache

ROOT = Path(__file__).resolve().parent.parent

SOURCE = "def __create_fn__():\n def f(x):\n  return x + 1\n return f"


def test_a_saved_cache_gives_back_the_same_code_without_compiling(tmp_path: Path) -> None:
    path = tmp_path / "generated.marshal"
    first = CodeCache(path)
    code = first.compile(SOURCE, "exec")
    assert first.added == 1
    first.save()
    again = CodeCache(path)
    cached = again.compile(SOURCE, "exec")
    assert again.added == 0 and cached is not code
    assert cached.co_code == code.co_code and cached.co_consts[0].co_code == code.co_consts[0].co_code
    ns: dict[str, object] = {}
    exec(cached, {}, ns)
    assert ns["__create_fn__"]()(41) == 42  # type: ignore[operator]


def test_a_cache_from_another_interpreter_or_damaged_is_ignored(tmp_path: Path) -> None:
    other = tmp_path / "other.marshal"
    other.write_bytes(b"\x00\x00\r\n" + marshal.dumps({("exec", SOURCE): compile("x = 1", "<string>", "exec")}))
    damaged = tmp_path / "damaged.marshal"
    damaged.write_bytes(importlib.util.MAGIC_NUMBER + b"\xff\x00garbage")
    for path in (other, damaged):
        cache = CodeCache(path)
        assert cache.codes == {}
        ns: dict[str, object] = {}
        exec(cache.compile(SOURCE, "exec"), {}, ns)  # compiled afresh from the text, not the stale code
        assert ns["__create_fn__"]()(1) == 2  # type: ignore[operator]


def test_a_syntax_error_is_raised_as_without_the_cache(tmp_path: Path) -> None:
    cache = CodeCache(None)
    try:
        cache.compile("1 +", "eval")
    except SyntaxError:
        pass
    else:
        raise AssertionError("a syntax error was swallowed")
    assert cache.codes == {}


PROBE = """
import dataclasses, sys, typing
from shell import codecache
cache = codecache.install()
@dataclasses.dataclass(frozen=True, order=True)
class Point:
    x: int
    y: "list[int]" = dataclasses.field(default_factory=list)
p = Point(1, [2])
try:
    p.x = 3
except dataclasses.FrozenInstanceError:
    frozen = True
hints = typing.get_type_hints(Point)
print(repr(p), p == Point(1, [2]), p < Point(2), frozen, hints["y"], len(cache.codes) > 0, cache.added)
"""


def run_probe(prefix: Path, *flags: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run([sys.executable, *flags, "-X", f"pycache_prefix={prefix}", "-c", PROBE], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_dataclasses_and_forward_refs_work_the_same_and_the_second_run_compiles_nothing(tmp_path: Path) -> None:
    first = run_probe(tmp_path)
    assert first.startswith("Point(x=1, y=[2]) True True True list[int] True ")
    assert int(first.rsplit(" ", 1)[1]) > 0  # the first run compiled the class's methods and saved them
    assert list(tmp_path.rglob("generated.*.marshal"))
    second = run_probe(tmp_path)
    assert second.rsplit(" ", 1)[0] == first.rsplit(" ", 1)[0]
    assert second.endswith(" 0")  # all read back from the file


def test_nothing_is_written_when_bytecode_is_not(tmp_path: Path) -> None:
    out = run_probe(tmp_path, "-B")
    assert out.startswith("Point(x=1, y=[2]) True True True list[int] ")
    assert not list(tmp_path.rglob("generated.*"))


REGEXES = [
    (r"(?P<word>\w+)\s+(?P=word)", 0), (r"^(a|b)*?c$", 0), (r"[^.!?\n]+[.!?]*", 0), (r"\bmy name(?:'s| is)\s+([A-Za-z][\w'-]*)", 0),
    (r"(?i:call me)\s+([A-Z]\w*)", 0), (r"ünï(?=x)", 2), (r"(?x) a  b # comment", 0), (r"(\d+)-(?P<rest>.*)", 8 | 16),
]


def test_regexes_from_the_cache_match_as_freshly_compiled_ones(tmp_path: Path) -> None:
    import re

    path = tmp_path / "generated.marshal"
    compiler = re._compiler  # type: ignore[attr-defined]
    original = compiler.compile
    texts = ["hello hello world", "ababc", "Hi. My name is Ada! call me Bob", "ünïx", "ab", "12-rest", "My Name Is"]
    try:
        for attempt in ("fresh", "from the file"):
            cache = CodeCache(path)
            from shell import codecache

            codecache._route_regexes(cache)
            for pattern, flags in REGEXES:
                ours, theirs = compiler.compile(pattern, flags), original(pattern, flags)
                assert (ours.pattern, ours.flags, ours.groups, ours.groupindex) == (theirs.pattern, theirs.flags, theirs.groups, theirs.groupindex)
                for text in texts:
                    a, b = ours.search(text), theirs.search(text)
                    assert (a and (a.span(), a.groups())) == (b and (b.span(), b.groups())), (attempt, pattern, text)
            assert cache.added == (len(REGEXES) if attempt == "fresh" else 0)
            cache.save()
            compiler.compile = original
    finally:
        compiler.compile = original


def test_a_rewritten_file_keeps_only_what_the_run_used(tmp_path: Path) -> None:
    path = tmp_path / "generated.marshal"
    old = CodeCache(path)
    old.compile("def gone(): pass", "exec")
    old.save()
    run = CodeCache(path)
    for n in range(20):  # enough new text to be worth a rewrite
        run.compile(f"x = {n}", "exec")
    run.save()
    assert set(CodeCache(path).codes) == {("exec", f"x = {n}") for n in range(20)}
