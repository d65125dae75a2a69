"""The YAML parse cache gives back exactly what a parse gives, stores no expanded secret, and lets a start skip PyYAML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tobio.config import yamlcache, yamlfile
from tobio.config.yamlfile import SourceMap, load_data_yaml, load_yaml
from tobio.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
YAML_FILES = sorted(p for folder in ("configs", "tobio/default_configs", "tests") for ext in ("yaml", "yml")
                    for p in (ROOT / folder).rglob(f"*.{ext}"))
OLD = time.time() - 3600  # an mtime well outside the racy window


def old(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, (OLD, OLD))
    return path


def entries() -> list[Path]:
    folder = yamlcache.cache_dir()
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files actually parsed (cache misses), in order."""
    seen: list[Path] = []
    real = yamlfile._parse

    def counting(file: Path, *args: Any) -> Any:
        seen.append(file)
        return real(file, *args)

    monkeypatch.setattr(yamlfile, "_parse", counting)
    return seen


def outcome(load: Any, path: Path) -> tuple[str, Any, SourceMap | None]:
    try:
        data, smap = load(path)
    except ConfigError as exc:
        return "error", str(exc), None
    return "ok", data, smap


def locations(data: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield loc
    if isinstance(data, dict):
        for key, value in data.items():
            yield from locations(value, loc + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from locations(value, loc + (i,))


def assert_same(first: tuple[str, Any, SourceMap | None], second: tuple[str, Any, SourceMap | None]) -> None:
    assert first[0] == second[0]
    assert repr(first[1]) == repr(second[1])  # same types and key order too (1 vs 1.0 vs True), and NaN equals NaN
    if first[2] is not None and second[2] is not None:
        assert first[2].places == second[2].places and first[2].keys == second[2].keys
        for loc in locations(first[1]):
            assert str(first[2].where(loc)) == str(second[2].where(loc))
            assert str(first[2].where(loc, prefer_key=True)) == str(second[2].where(loc, prefer_key=True))


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
@pytest.mark.parametrize("load", [load_yaml, load_data_yaml], ids=["config", "data"])
def test_a_cached_load_equals_a_parse(path: Path, load: Any, parses: list[Path]) -> None:
    assert os.stat(path).st_mtime < time.time() - 2, "checkout files are older than the racy window"
    parsed = outcome(load, path)
    misses = len(parses)
    cached = outcome(load, path)
    assert_same(parsed, cached)
    if parsed[0] == "ok":
        assert misses >= 1 and len(parses) == misses, "the second load is served from the cache, includes too"


YAMLISH = st.text(alphabet="ab01 :-,[]{}&*!?|>#'\"\n.~$_xeE+<=%", max_size=120)
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
                       max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(YAMLISH, JSONISH.map(yaml.safe_dump)))
def test_any_text_loads_from_the_cache_as_it_parses(tmp_path: Path, text: str) -> None:
    path = old(tmp_path / f"fuzz{len(list(tmp_path.iterdir()))}.yaml", text)
    for load in (load_yaml, load_data_yaml):
        assert_same(outcome(load, path), outcome(load, path))


def test_a_file_with_every_kind_of_value_reads_back_the_same(tmp_path: Path, parses: list[Path]) -> None:
    path = old(tmp_path / "all.yaml", """\
# comment
top:
  ints: [1, -2, 0x1f, 0o17, 1_000]
  floats: [1.5, -0.0, .inf, -.inf, 1e3]
  bools: [true, no, on, False]
  nulls: [~, null, ]
  text: "a ${HOME_NOT_SET_X:-fallback} $$ b"
  block: |
    two
    lines
  keys: {7: one, 1.5: x, true: t, null: n, "2": two}
anchor: &a {k: [1, 2]}
again: *a
empty: {}
nothing: []
""")
    for load in (load_yaml, load_data_yaml):
        parses.clear()
        first = outcome(load, path)
        second = outcome(load, path)
        assert first[0] == "ok" and parses == [path], first
        assert_same(first, second)
    nan = old(tmp_path / "nan.yaml", "x: .nan\n")
    parses.clear()
    assert repr(load_yaml(nan)[0]) == repr(load_yaml(nan)[0]) == "{'x': nan}" and parses == [nan]


def test_no_expanded_secret_is_stored_and_expansion_happens_at_every_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parses: list[Path]
) -> None:
    secret = "sk-fake-4f8a1c9e0b7d"
    monkeypatch.setenv("TOBIO_TEST_FAKE_KEY", secret)
    monkeypatch.setenv("TOBIO_TEST_PART", "part")
    old(tmp_path / "part.yaml", "key: ${TOBIO_TEST_FAKE_KEY}\n")
    main = old(tmp_path / "main.yaml", "api_key: ${TOBIO_TEST_FAKE_KEY}\nsub: !include ${TOBIO_TEST_PART}.yaml\n")
    first = load_yaml(main)
    second = load_yaml(main)
    assert first[0] == second[0] == {"api_key": secret, "sub": {"key": secret}}
    assert len(parses) == 2 and len(entries()) == 2  # main and part, each parsed once
    for entry in entries():
        text = entry.read_text()
        assert secret not in text and "${TOBIO_TEST_FAKE_KEY}" in text
    monkeypatch.setenv("TOBIO_TEST_FAKE_KEY", "another")
    assert load_yaml(main)[0] == {"api_key": "another", "sub": {"key": "another"}}
    monkeypatch.delenv("TOBIO_TEST_FAKE_KEY")
    with pytest.raises(ConfigError, match=r"main.yaml:1: environment variable \$\{TOBIO_TEST_FAKE_KEY\} is not set"):
        load_yaml(main)
    assert len(parses) == 2


@pytest.mark.parametrize("text", [
    "providers:\n  remote: {type: openai, api_key: plain-literal-4f8a1c9e}\n",  # a secret-named key, written as is
    "note: call it with sk-abcdefghijklmnop4f8a1c9e\n",  # a key-like token anywhere
    "database: postgresql://bob:plain-literal-4f8a1c9e@db.example/x\n",  # a URL with credentials
])
def test_a_secret_written_into_the_file_is_never_copied_into_the_cache(text: str, tmp_path: Path, parses: list[Path]) -> None:
    path = old(tmp_path / "literal.yaml", text)
    assert_same(outcome(load_yaml, path), outcome(load_yaml, path))
    assert_same(outcome(load_data_yaml, path), outcome(load_data_yaml, path))
    assert len(parses) == 4 and entries() == []  # parsed each time: the file stays the only place it is written
    assert "4f8a1c9e" in path.read_text()


def test_an_include_cycle_is_still_refused_from_the_cache(tmp_path: Path) -> None:
    a = old(tmp_path / "a.yaml", "b: !include b.yaml\n")
    old(tmp_path / "b.yaml", "x: 1\n")
    assert load_yaml(a)[0] == {"b": {"x": 1}}
    old(tmp_path / "b.yaml", "a: !include a.yaml\n")  # a.yaml's entry is reused; the cycle is found following it
    for _ in range(2):
        with pytest.raises(ConfigError, match="!include cycle through"):
            load_yaml(a)


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = old(tmp_path / "c.yaml", "name: first\n")
    assert load_yaml(path)[0] == {"name": "first"}
    old(path, "name: second\n")
    os.utime(path, (OLD + 1, OLD + 1))
    assert load_yaml(path)[0] == {"name": "second"}


def test_a_file_edited_just_now_is_not_cached(tmp_path: Path, parses: list[Path]) -> None:
    path = tmp_path / "new.yaml"
    path.write_text("a: 1\n")
    assert load_yaml(path)[0] == load_yaml(path)[0] == {"a": 1}
    assert len(parses) == 2 and entries() == []


def test_malformed_yaml_fails_alike_and_is_never_cached(tmp_path: Path, parses: list[Path]) -> None:
    for name, text in {"bad.yaml": "a: [1, 2\n", "tag.yaml": "a: !!python/object x\n", "dup.yaml": "a: 1\na: 2\n",
                       "merge.yaml": "b: &b {x: 1}\nc: {<<: *b}\n"}.items():
        path = old(tmp_path / name, text)
        errors = [outcome(load, path) for load in (load_yaml, load_yaml, load_data_yaml, load_data_yaml)]
        assert errors[0][0] == "error" and errors[0] == errors[1] and errors[2] == errors[3], errors
    assert len(parses) == 16 and entries() == []


def test_a_date_is_not_cached_but_loads_the_same(tmp_path: Path, parses: list[Path]) -> None:
    path = old(tmp_path / "d.yaml", "when: 2026-01-02\n")
    assert_same(outcome(load_yaml, path), outcome(load_yaml, path))
    assert len(parses) == 2 and entries() == []


@pytest.mark.parametrize("damage", [b"", b"{not json", b"[]", b'{"tree": 1}', b"\xff\xfe",
                                    "keep-key-bad-tree", "keep-key-unhashable-key"])
def test_a_damaged_entry_is_ignored_and_the_file_parsed(tmp_path: Path, damage: Any, parses: list[Path]) -> None:
    path = old(tmp_path / "e.yaml", "a: {b: [1, two]}\n")
    expected = outcome(load_yaml, path)
    [entry] = entries()
    if isinstance(damage, str):
        stored = json.loads(entry.read_text())
        stored["tree"] = ["x", 1, 1, None] if damage == "keep-key-bad-tree" else ["m", 1, 1, [[1, 1, [1], ["s", 1, 1, 2]]]]
        damage = json.dumps(stored).encode()
    entry.write_bytes(damage)
    assert_same(expected, outcome(load_yaml, path))
    assert len(parses) == 2
    assert_same(expected, outcome(load_yaml, path))  # the parse wrote a good entry again
    assert len(parses) == 2


def test_an_unwritable_cache_folder_does_not_break_a_load(tmp_path: Path, parses: list[Path]) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "cache").write_text("a file where the cache folder would go")
    path = old(tmp_path / "f.yaml", "a: 1\n")
    assert load_yaml(path)[0] == load_yaml(path)[0] == {"a": 1}
    assert len(parses) == 2


def test_the_cache_lives_in_the_data_dir(tmp_path: Path) -> None:
    old(tmp_path / "g.yaml", "a: 1\n")
    load_yaml(tmp_path / "g.yaml")
    assert [p.parent for p in entries()] == [tmp_path / "data" / "cache" / "yaml"]
    assert [p for p in (tmp_path / "data" / "cache" / "yaml").iterdir() if p.suffix != ".json"] == []  # no temp left


PROBE = """
import sys
sys.argv = ["tobio-shell", "-c", "agent ls"]
from shell.app import main
code = main()
print("yaml" in sys.modules, code)
"""


@pytest.mark.slow
def test_a_second_one_shot_start_imports_no_yaml(tmp_path: Path) -> None:
    env = {**os.environ, "TOBIO_DATA_DIR": str(tmp_path), "TOBIO_LOAD_PLUGINS": ""}
    env.pop("TOBIO_CONFIG", None)
    env.pop("TOBIO_DATABASE", None)
    results = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "tobio" in done.stdout
        results.append(done.stdout.strip().splitlines()[-1])
    assert results == ["True 0", "False 0"]

