"""Property-based fuzzing of the command parser, the YAML loaders and the card reader.

Whatever the input, the only exception allowed out is a TobioError (one clear line), and every call
returns within the hypothesis deadline: nothing hangs, nothing leaks a traceback.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tobio.commands import resolve, split_words
from tobio.config import load_data_yaml, load_yaml, validate
from tobio.config.schema import KernelConfig
from tobio.errors import CommandError, TobioError
from tobio.kernel import Kernel
from tobio.persona.cards import card_to_persona, read_card
from tobio.persona.schema import Persona

# TOBIO_FUZZ_EXAMPLES raises the budget for a longer local hunt; CI keeps it small.
FUZZ = settings(max_examples=int(os.environ.get("TOBIO_FUZZ_EXAMPLES", "200")), deadline=2000,
                suppress_health_check=[HealthCheck.too_slow])

SHELLISH = st.lists(st.sampled_from(list("ab -=\t\n\r'\"\\#$;|*0159.x") + ["--", "-n", "é", "\x00", "\x0b"]),
                    max_size=40).map("".join)
YAMLISH = st.lists(
    st.sampled_from(list("ab:-[]{}&*!|>'\"#%@`?,. \n\t0129") + [
        "\n  ", "- ", ": ", "&a ", "*a", "!include ", "!!binary ", "!!python/object:x ", "${HOME}", "<<: ",
        "!!set ", "!!omap ", "2026-02-30", "---\n", "...\n", "\x00", "\ufeff", "?", "~", ".inf", "0x1F"]),
    max_size=80).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30,
)
CARD_KEYS = ["name", "description", "personality", "scenario", "first_mes", "mes_example", "nickname", "extensions",
             "character_book", "tags", "alternate_greetings", "spec", "spec_version", "data"]


@pytest.fixture(scope="module")
def tree() -> Iterator[Any]:
    """The real command tree (built in Kernel.__init__; no start needed)."""
    kernel = Kernel(KernelConfig(modules=[]), database="duckdb:///:memory:")
    yield kernel.commands


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


# --- the command line ----------------------------------------------------------------------------


@FUZZ
@given(SHELLISH)
def test_split_words_is_shlex(text: str) -> None:
    try:
        expected: Any = shlex.split(text, comments=False, posix=True)
    except ValueError as exc:
        expected = f"bad quoting: {str(exc).lower()}"
    try:
        got: Any = split_words(text)
    except CommandError as exc:
        got = str(exc)
    assert got == expected


@FUZZ
@given(prefix=st.sampled_from(["", "agent ", "agent history x ", "sql ", "sql --limit ", "persona ", "persona show p ",
                               "persona import ", "persona export p ", "channel post c ", "log tail ", "help ",
                               "agent replay x --at ", "task cancel ", "mod "]),
       rest=SHELLISH)
def test_resolve_raises_only_tobio_errors(tree: Any, prefix: str, rest: str) -> None:
    try:
        resolve(tree, prefix + rest)
    except TobioError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(number=st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.text(alphabet="0123456789-+_.eE xn", max_size=30)))
def test_numeric_options_raise_only_tobio_errors(tree: Any, number: Any) -> None:
    for line in (f"agent history x -n {number}", f"sql --limit={number} SELECT 1", f"task cancel -- {number}"):
        try:
            invocation = resolve(tree, line)
        except TobioError:
            continue
        assert invocation is not None
        for value in invocation.kwargs.values():
            if isinstance(value, int) and not isinstance(value, bool):
                assert 0 <= value <= 2**31 - 1


# --- YAML -----------------------------------------------------------------------------------------


@FUZZ
@given(YAMLISH)
def test_yaml_loaders_raise_only_config_errors(scratch: Path, text: str) -> None:
    path = scratch / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    for loader in (load_yaml, load_data_yaml):
        try:
            data, smap = loader(path)
        except TobioError:
            continue
        for model in (KernelConfig, Persona):
            try:
                validate(model, data, smap)
            except TobioError:
                pass


@FUZZ
@given(JSON_VALUES)
@pytest.mark.slow
def test_data_yaml_round_trips_json_values(scratch: Path, value: Any) -> None:
    import yaml

    path = scratch / "value.yaml"
    path.write_text(yaml.safe_dump(value), encoding="utf-8")
    try:
        data, _ = load_data_yaml(path)
    except TobioError:
        return
    # data in, the same data out (compared as JSON text, where NaN equals NaN): no tag, alias or ${VAR} changed it
    assert json.dumps(data, sort_keys=True) == json.dumps(value, sort_keys=True)


# --- cards ----------------------------------------------------------------------------------------


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + b"".join(chunk(k, b) for k, b in chunks) + chunk(b"IEND", b"")


CARDS = st.one_of(
    JSON_VALUES,
    st.dictionaries(st.sampled_from(CARD_KEYS), JSON_VALUES, max_size=8),
    st.builds(lambda data, spec: {"spec": spec, "spec_version": "2.0", "data": data},
              st.dictionaries(st.sampled_from(CARD_KEYS), JSON_VALUES, max_size=8),
              st.sampled_from(["chara_card_v2", "chara_card_v3", "x"])),
)


@FUZZ
@given(CARDS)
@pytest.mark.slow
def test_card_to_persona_raises_only_config_errors(card: Any) -> None:
    try:
        persona = card_to_persona(card, "fuzz")
    except TobioError:
        return
    json.dumps(persona.model_dump(mode="json"), default=str)


@FUZZ
@given(blob=st.binary(max_size=200), kind=st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IHDR"]),
       keyword=st.sampled_from([b"chara", b"ccv3", b"other"]), compress=st.booleans(), card=CARDS)
@pytest.mark.slow
def test_read_card_raises_only_config_errors(scratch: Path, blob: bytes, kind: bytes, keyword: bytes, compress: bool,
                                             card: Any) -> None:
    encoded = base64.b64encode(json.dumps(card).encode())
    payload = zlib.compress(encoded) if compress else encoded
    bodies = {b"tEXt": keyword + b"\0" + encoded, b"zTXt": keyword + b"\0\0" + payload,
              b"iTXt": keyword + b"\0" + bytes([compress]) + b"\0\0\0" + payload, b"IHDR": blob}
    for content in (_png([(kind, bodies[kind])]), _png([(kind, blob)]), b"\x89PNG\r\n\x1a\n" + blob, blob):
        for name in ("fuzz.png", "fuzz.json"):
            path = scratch / name
            path.write_bytes(content)
            try:
                card_to_persona(read_card(path), name)
            except TobioError:
                pass
