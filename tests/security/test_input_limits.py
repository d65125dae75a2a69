"""Limits on every input: YAML aliases and depth, PNG inflation, JSON depth, file and line sizes,
numeric arguments, times and URLs. Each bad input is one clear line, fast."""

from __future__ import annotations

import base64
import os
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tobio.config import load_data_yaml, load_yaml
from tobio.config.database_url import check_database_url
from tobio.config.limits import MAX_IMPORT_BYTES, MAX_LINE_CHARS, MAX_YAML_BYTES
from tobio.config.schema import KernelConfig, load_kernel_config
from tobio.errors import CommandError, ConfigError, TobioError
from tobio.kernel import Kernel
from tobio.persona.cards import read_card
from tobio.replay import parse_time

_LOLS = ",".join(['"lol"'] * 9)
ALIAS_BOMB = "".join(  # nine levels of nine: 9**9 (387 million) values from 342 bytes
    f"{name}: &{name} [{','.join([f'*{prev}'] * 9) if prev else _LOLS}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi")
)
LOADERS = [load_yaml, load_data_yaml]


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def one_line_error(call: Callable[[], Any], kind: type[TobioError] = TobioError, seconds: float = 2.0) -> str:
    """The error `call` raises: of `kind`, a single short line, within `seconds`."""
    start = time.perf_counter()
    with pytest.raises(kind) as info:
        call()
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message[:500]
    assert elapsed < seconds, f"took {elapsed:.2f}s"
    return message


def png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\0" * 5))
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(chunk(k, b) for k, b in chunks) + chunk(b"IEND", b"")


# --- YAML -------------------------------------------------------------------------------------


def test_the_alias_bomb_is_342_bytes() -> None:
    assert len(ALIAS_BOMB) == 342


@pytest.mark.parametrize("loader", LOADERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("text", [
    ALIAS_BOMB,
    "a: &a [*a]\n",
    "a: &a {b: *a}\n",
    "base: &x [" + ", ".join(["y"] * 600) + "]\n" + "".join(f"k{i}: *x\n" for i in range(400)),
    "[" * 900 + "]" * 900,
    "".join("  " * i + "a:\n" for i in range(900)),
    "".join("  " * i + "- \n" for i in range(900)),
    "? [a, b]\n: c\n",
    "? {a: 1}\n: c\n",
    "n: " + "9" * 5000 + "\n",
    "x: !!python/object/apply:os.system ['true']\n",
    "x: \x00\n",
])
def test_hostile_yaml_is_one_line(tmp_path: Path, loader: Callable[..., Any], text: str) -> None:
    path = write(tmp_path / "k.yaml", text)
    assert str(path) in one_line_error(lambda: loader(path), ConfigError)


@pytest.mark.parametrize("loader", LOADERS, ids=lambda f: f.__name__)
def test_big_and_special_files_are_refused(tmp_path: Path, loader: Callable[..., Any]) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as handle:
        handle.truncate(MAX_YAML_BYTES + 1)  # sparse: costs no disk
    assert "too large" in one_line_error(lambda: loader(big), ConfigError)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening a FIFO for reading would wait for a writer forever
    assert "not a regular file" in one_line_error(lambda: loader(fifo), ConfigError)
    assert "not a regular file" in one_line_error(lambda: loader("/dev/zero"), ConfigError)


def test_invalid_dates_in_config_are_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "k.yaml", "d: 2026-02-30\n")
    one_line_error(lambda: load_yaml(path), ConfigError)
    assert load_data_yaml(path)[0] == {"d": "2026-02-30"}  # data has no dates: text stays text


def test_include_of_a_device_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "kernel.yaml", "channels: !include /dev/zero\n")
    one_line_error(lambda: load_yaml(path), ConfigError)


@pytest.mark.parametrize("text", [b"channels: [caf\xe9]\n", b"\xff\xfe\x00c\x00h\x00", b"log_level: INFO\n# \x80\n"])
def test_non_utf8_kernel_yaml_names_the_file(tmp_path: Path, text: bytes) -> None:
    path = write(tmp_path / "kernel.yaml", text)
    message = one_line_error(lambda: load_kernel_config(path), ConfigError)
    assert str(path) in message and "UTF-8" in message


# --- cards: PNG inflation, JSON depth, size --------------------------------------------------


def _card_json(depth: int = 0) -> bytes:
    nested = "[" * depth + '"x"' + "]" * depth
    return ('{"name": "Deep", "description": ' + nested + "}").encode()


@pytest.mark.slow
@pytest.mark.parametrize("kind", [b"zTXt", b"iTXt"])
def test_compressed_chunk_bomb_is_capped(tmp_path: Path, kind: bytes) -> None:
    bomb = zlib.compress(b"A" * (200 * 1024 * 1024), 9)  # ~200 KB that inflates to 200 MB
    body = b"chara\0\0" + bomb if kind == b"zTXt" else b"chara\0\1\0\0\0" + bomb
    path = write(tmp_path / "bomb.png", png([(kind, body)]))
    tracemalloc.start()
    try:
        message = one_line_error(lambda: read_card(path), ConfigError)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "too large" in message
    assert peak < 40 * 1024 * 1024, f"peak {peak >> 20} MB"


def test_total_text_chunks_are_capped(tmp_path: Path) -> None:
    filler = [(b"tEXt", b"comment\0" + b"x" * (1024 * 1024))] * 20
    path = write(tmp_path / "many.png", png([*filler, (b"tEXt", b"chara\0" + base64.b64encode(_card_json()))]))
    assert "too large" in one_line_error(lambda: read_card(path), ConfigError)


@pytest.mark.parametrize("depth", [100, 900, 5000, 100_000])
@pytest.mark.parametrize("container", ["json", "png"])
def test_deep_json_is_one_line(tmp_path: Path, depth: int, container: str) -> None:
    blob = _card_json(depth)
    if container == "png":
        path = write(tmp_path / "deep.png", png([(b"tEXt", b"chara\0" + base64.b64encode(blob))]))
    else:
        path = write(tmp_path / "deep.json", blob)
    from tobio.persona.cards import import_card

    assert "levels deep" in one_line_error(lambda: import_card(path), ConfigError)


@pytest.mark.slow
def test_millions_of_tiny_chunks_are_refused(tmp_path: Path) -> None:
    empty = struct.pack(">I", 0) + b"tIME" + struct.pack(">I", zlib.crc32(b"tIME"))
    path = write(tmp_path / "chunks.png", b"\x89PNG\r\n\x1a\n" + empty * 2_000_000)
    tracemalloc.start()
    try:
        assert "too many" in one_line_error(lambda: read_card(path), ConfigError, seconds=5.0)  # tracemalloc is slow
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 60 * 1024 * 1024, f"peak {peak >> 20} MB"


def test_card_file_size_is_capped(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with open(path, "wb") as handle:
        handle.truncate(MAX_IMPORT_BYTES + 1)
    assert "too large" in one_line_error(lambda: read_card(path), ConfigError)


# --- command lines and numeric arguments -------------------------------------------------------


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    base = tmp_path_factory.mktemp("limits")
    k = Kernel(KernelConfig(modules=["scripted", "persona"], base_dir=base),
               database=f"duckdb:///{base / 'limits.duckdb'}").start()
    persona = write(base / "p.yaml", "name: Nia\n")
    k.run(f"persona import {persona} --name nia")
    try:
        yield k
    finally:
        k.close()


@pytest.mark.parametrize(("line", "expected"), [
    ("agent history X -n -5", "at least 0"),
    ("agent history X --last=-5", "at least 0"),
    ("sql --limit -1 SELECT 1", "at least 0"),
    ("sql --limit=-1 SELECT 1", "at least 0"),
    (f"sql --limit {10**30} SELECT 1", "at most"),
    (f"agent history X -n {10**30}", "at most"),
    (f"log tail -n {'9' * 5000}", "too long"),
    ("persona show nia --version -3", "at least 0"),
    ("persona diff nia -1 2", "at least 0"),
    ("task cancel -7", "at least 0"),
])
def test_numeric_arguments_are_bounded(kernel: Kernel, line: str, expected: str) -> None:
    from tobio.commands import resolve

    assert expected in one_line_error(lambda: resolve(kernel.commands, line), CommandError)


@pytest.mark.parametrize(("line", "expected"), [
    ("sleep nan", "finite"), ("sleep inf", "finite"), ("sleep -- -1e309", "finite"),
    ("mood -- -2", "at least -1"), ("mood 1.5", "at most 1"), ("count -- -1", "at least 0"),
])
def test_bounds_are_declared_on_the_arg(line: str, expected: str) -> None:
    from tobio.commands import Arg, Group, resolve

    root = Group(name="")
    root.command("sleep", Arg("seconds", type=float))(lambda ctx, seconds: None)
    root.command("mood", Arg("value", type=float, min=-1, max=1))(lambda ctx, value: None)
    root.command("count", Arg("n", type=int))(lambda ctx, n: None)
    assert expected in one_line_error(lambda: resolve(root, line), CommandError)
    assert resolve(root, "mood -- -0.5").kwargs == {"value": -0.5}  # type: ignore[union-attr]


def test_sql_limit_with_equals_parses(kernel: Kernel) -> None:
    result = kernel.run("sql --limit=2 SELECT * FROM range(5)")
    assert len(result.rows) == 2
    assert len(kernel.run("sql --limit 3 SELECT * FROM range(5)").rows) == 3


@pytest.mark.slow
def test_a_long_line_parses_in_linear_time(kernel: Kernel) -> None:
    from tobio.commands import resolve

    for line in ('persona set nia description "' + "y" * 800_000 + '"', "persona set nia description " + "y" * 800_000,
                 "persona set nia description " + "ab " * 300_000):
        start = time.perf_counter()
        resolve(kernel.commands, line)
        assert time.perf_counter() - start < 2.0  # shlex took 8.7 s for 800 KB


@pytest.mark.parametrize("line", [
    "channel post lobby " + "x" * (MAX_LINE_CHARS + 1),
    'channel post lobby "' + "x" * 5_000_000 + '"',
    "sql SELECT '" + "x" * 5_000_000 + "'",
])
def test_an_oversized_line_is_one_line(kernel: Kernel, line: str) -> None:
    assert "too long" in one_line_error(lambda: kernel.run(line), CommandError, seconds=1.0)


def test_many_option_words_do_not_stall_argparse(kernel: Kernel) -> None:
    from tobio.commands import resolve

    message = one_line_error(lambda: resolve(kernel.commands, "agent history X " + "-x " * 20_000), CommandError)
    assert "too many options" in message


def test_argparse_errors_stay_short(kernel: Kernel) -> None:
    from tobio.commands import resolve

    one_line_error(lambda: resolve(kernel.commands, "agent history X " + "-y " * 60), CommandError)
    one_line_error(lambda: resolve(kernel.commands, "agent history X -n " + "z" * 100_000), CommandError)


def test_aresolve_parses_long_lines_off_the_loop(kernel: Kernel) -> None:
    import asyncio
    import threading

    from tobio.commands import parse

    seen: list[str] = []
    original = parse.resolve

    def spy(root: Any, line: str) -> Any:
        seen.append(threading.current_thread().name)
        return original(root, line)

    async def both() -> None:
        await parse.aresolve(kernel.commands, "persona set nia description " + "y" * 100_000)
        await parse.aresolve(kernel.commands, "persona ls")

    parse.resolve = spy  # type: ignore[assignment]
    try:
        asyncio.run(both())
    finally:
        parse.resolve = original  # type: ignore[assignment]
    assert seen[0] != threading.current_thread().name and seen[1] == threading.current_thread().name


# --- times, URLs, scripts ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["-99999999999d", "-" + "9" * 30 + "s", "-1e400d", "0001-01-01T00:00:00+14:00",
                                  "9999-12-31T23:59:59-14:00", "-99999999999999999999m", "x" * 10_000])
def test_bad_times_are_one_line(text: str) -> None:
    one_line_error(lambda: parse_time(text), CommandError)


def test_replay_with_a_time_before_year_one(kernel: Kernel, tmp_path: Path) -> None:
    agent = write(tmp_path / "echo.yaml", "name: echo1\ntype: scripted\n")
    kernel.run(f"agent spawn {agent}")
    message = one_line_error(lambda: kernel.run("agent replay echo1 --at=-99999999999d"), CommandError)
    assert "OverflowError" not in message


@pytest.mark.parametrize("url", ["foo://", "garbage", "://", "duckdb:////nonexistent/dir/x.duckdb",
                                 "postgresql+nodriver://u@h/d", "sqlite:////dev/null/x.db", "duckdb:///" + "/" * 3])
def test_bad_database_urls_are_one_line(tmp_path: Path, url: str) -> None:
    one_line_error(lambda: check_database_url(url, "--database"), ConfigError)
    path = write(tmp_path / "kernel.yaml", f"database: '{url}'\n")
    message = one_line_error(lambda: load_kernel_config(path), ConfigError)
    assert f"{path}:1" in message


def test_good_database_urls_pass(tmp_path: Path) -> None:
    for url in (f"duckdb:///{tmp_path / 'a.duckdb'}", f"sqlite:///{tmp_path / 'new' / 'b.sqlite'}", "duckdb:///:memory:"):
        assert check_database_url(url) == url


def test_non_utf8_script_is_one_line(tmp_path: Path) -> None:
    from shell.script import logical_lines, read_script

    path = write(tmp_path / "bad.tsh", b"agent ls\n# caf\xe9\n")
    message = one_line_error(lambda: read_script(str(path)), CommandError)
    assert str(path) in message and "UTF-8" in message

    def stdin() -> Iterator[str]:
        yield "agent ls\n"
        raise UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid continuation byte")

    assert "UTF-8" in one_line_error(lambda: list(logical_lines(stdin(), "<stdin>")), CommandError)
