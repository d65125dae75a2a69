"""Untrusted text is processed within a budget: lorebook scans, card macros, appraisal, scripted rules,
chat and CHARX imports. Each hostile shape costs bounded time and memory, and each bad value is one line
with nothing left behind."""

from __future__ import annotations

import asyncio
import io
import json
import random
import re
import struct
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tobio.config.jsondata import loads
from tobio.config.schema import KernelConfig
from tobio.emotion.appraise import LexiconAppraiser, _vader, pieces
from tobio.errors import CommandError, ConfigError, TobioError
from tobio.kernel import Kernel
from tobio.lore.engine import Engine, Settings
from tobio.lore.schema import parse_book
from tobio.patterns import PatternError, compile_pattern, nests_quantifiers
from tobio.persona.charx import read_charx, save_assets
from tobio.persona.stchat import MAX_SPEAKERS, looks_like, parse_time, read_chat
from tobio.turn.macros import MacroEnv, apply_macros

from conftest import write

UNCLOSED = ["{{//", "{{roll:", "{{random:", "{{pick", "{{pick:", "{{reverse:", "{", "{{", "{{{{}", "\n",
            "{{datetimeformat ", "{{datetimeformat  {{date}}", "{{time_UTC+", "{{char", "<USER", "{{trim}}\n",
            "\n\n\n{{x}}", "{{pick:a,b}}", "{{random::", "{{roll 9", "{{//}", "{{reverse:}", "[[[[", "{{datetimeformat [[[",
            "{{roll:999d999999+999999}}", "{{time_UTC+5}}", "{{time}}{{date}}", "{{random:" + "a," * 3000 + "b}}"]


def env(**kw: Any) -> MacroEnv:
    return MacroEnv(char="Mika", user="Ada", rng=random.Random(1), **kw)


# --- macros ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("unit", UNCLOSED)
def test_80_kb_of_any_unclosed_macro_renders_in_milliseconds(unit: str) -> None:
    text = unit * (80_000 // len(unit))
    started = time.perf_counter()
    out = apply_macros(text, env())
    took = time.perf_counter() - started
    assert took < 0.5, f"{unit!r}: {took:.2f} s"  # was 15 s for some; linear now (~10-30 ms)
    assert len(out) <= 4 * 1024 * 1024


def test_macro_time_grows_linearly() -> None:
    text = "".join(UNCLOSED)
    small, big = text * 100, text * 800

    def timed(value: str) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            apply_macros(value, env())
            best = min(best, time.perf_counter() - started)
        return best

    assert timed(big) < 8 * 3 * timed(small) + 0.05  # 8x the text: ~8x the time, never ~64x


def _reference(text: str, e: MacroEnv) -> str:
    """The regex implementation macros had before (quadratic on hostile input), for the deterministic macros."""
    legacy = {"user": e.user, "bot": e.char, "char": e.char, "charifnotgroup": e.group or e.char, "group": e.group or e.char}
    text = re.sub(r"<(USER|BOT|CHAR|CHARIFNOTGROUP|GROUP)>", lambda m: legacy[m.group(1).lower()], text, flags=re.I)
    if "{{" not in text:
        return text
    text = re.sub(r"\{\{newline\}\}", "\n", text, flags=re.I)
    text = re.sub(r"(?:\r?\n)*\{\{trim\}\}(?:\r?\n)*", "", text, flags=re.I)
    text = re.sub(r"\{\{noop\}\}", "", text, flags=re.I)
    lowered = {"user": e.user, "char": e.char, "group": e.group or e.char, "charifnotgroup": e.group or e.char,
               "groupnotmuted": e.group or e.char}
    text = re.sub(r"\{\{([A-Za-z_][\w]*)\}\}", lambda m: lowered.get(m.group(1).lower(), m.group(0)), text)
    text = re.sub(r"\{\{reverse:(.+?)\}\}", lambda m: m.group(1)[::-1], text, flags=re.I)
    return re.sub(r"\{\{//[\s\S]*?\}\}", "", text)


PIECES = st.sampled_from(["{{", "}}", "}", "{", "//", "reverse:", "trim", "newline", "noop", "char", "user", "<USER>",
                          "\n", "\r\n", "a", "b c", ":", "{{char}}", "{{trim}}", "{{//", "{{reverse:", "<bot>"])


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=30))
def test_linear_macros_give_what_the_regexes_gave(parts: list[str]) -> None:
    text = "".join(parts)
    assert apply_macros(text, env()) == _reference(text, env())


def test_macro_semantics_kept() -> None:
    assert apply_macros("{{reverse:{{char}}}}", env()) == "akiM"
    assert apply_macros("{{random::x::y}}", env()) in ("x", "y")
    assert apply_macros("{{pick::x}}", env()) == "x"
    assert apply_macros("{{random::}}", env()) == ":"
    assert apply_macros("[{{roll:banana}}]", env()) == "[]"
    once = apply_macros("{{pick:a,b,c,d}}", env(seed="s"))
    assert all(apply_macros("{{pick:a,b,c,d}}", env(seed="s")) == once for _ in range(5))


# --- lorebook scans -------------------------------------------------------------------------------

HOSTILE_KEYS = ["/(a|aa)+$/", "/(a|a?)+b/", "/^(aa|a)*c$/", "/(a|ab|aa)+z/", "/(.*a){25}x/"]


def _lag_while(coro: Any) -> tuple[Any, float, float]:
    """Run `coro` next to a 5 ms sleeper: (its result, the loop's worst lag, seconds taken)."""
    async def go() -> tuple[Any, float, float]:
        worst, done = 0.0, False

        async def probe() -> None:
            nonlocal worst
            loop = asyncio.get_running_loop()
            while not done:
                asked = loop.time()
                await asyncio.sleep(0.005)
                worst = max(worst, loop.time() - asked - 0.005)

        task = asyncio.create_task(probe())
        started = time.perf_counter()
        result = await coro
        took = time.perf_counter() - started
        done = True
        await task
        return result, worst, took

    return asyncio.run(go())


def test_a_catastrophic_lorebook_costs_one_budget_off_the_loop() -> None:
    keys = [k.replace("$/", f"{i}$/") for i in range(40) for k in HOSTILE_KEYS]  # all distinct patterns
    entries = [{"keys": keys[:50], "secondary_keys": keys[50:100], "selective": True, "content": "@@additional_keys "
                + ",".join(keys[100:]) + "\nX"} for _ in range(30)]
    entries.append({"keys": [], "constant": True, "content": "always here"})
    book = parse_book("evil", {"entries": entries})
    settings = Settings(scan_budget_s=0.2)
    activation, lag, took = _lag_while(Engine([book], settings).run(["a" * 50_000 + "!"] * 3, chat_length=3))
    assert took < 1.5, took  # one budget for everything: keys, secondary keys, decorator keys, every pass
    assert lag < 0.1, lag  # and the loop went on meanwhile (the goal; ~15 ms here on a loaded machine)
    assert activation.budget_spent
    assert [f.entry.content for f in activation.fired] == ["always here"]  # constant entries still fire
    assert any("budget" in reason for _, reason in activation.skipped)


def test_many_plain_keys_share_the_budget_too() -> None:
    entries = [{"keys": [f"word{i}-{j}" for j in range(200)], "content": f"E{i}"} for i in range(2000)]
    book = parse_book("big", {"entries": entries})
    activation, _, took = _lag_while(Engine([book], Settings(scan_budget_s=0.1, max_searches=50_000)).run(
        ["lorem ipsum " * 5000], chat_length=1))
    assert took < 2.0, took
    assert activation.budget_spent


def test_an_ordinary_book_is_not_cut_short() -> None:
    entries = [{"keys": ["dragon", "/wyrms?/i"], "content": "Dragons."}, {"keys": ["castle"], "content": "Castles."}]
    activation = asyncio.run(Engine([parse_book("ok", {"entries": entries})], Settings()).run(
        ["The WYRM flew over the castle"], chat_length=1))
    assert sorted(f.entry.content for f in activation.fired) == ["Castles.", "Dragons."]
    assert not activation.budget_spent


@pytest.mark.parametrize("pattern", ["(a+)+", "(a*)*$", r"(\w+\s?)*x", "(?:x|\\1){2,}", "((a+))+", "(.*a){20}",
                                     "(a+?)+", r"([a-z]+\d*)+!"])
def test_patterns_that_nest_repetition_are_refused_in_one_line(pattern: str) -> None:
    assert nests_quantifiers(pattern)
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("pattern", ["dragon", "(dragon|wyrm)s?", r"\bcat(s)?\b", "[(a+)]+", "(a+)?", "a{2,3}b+",
                                     r"(\(x\))", "^/path/"])
def test_ordinary_patterns_are_kept(pattern: str) -> None:
    assert not nests_quantifiers(pattern)
    compile_pattern(pattern)


def test_without_the_regex_package_every_backtracking_shape_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import tobio.patterns as patterns

    monkeypatch.setattr(patterns, "_regex", None)
    patterns._compile.cache_clear()
    try:
        for pattern in ("(a|aa)+$", "(a+)+", r"(x)\1"):
            with pytest.raises(PatternError):
                compile_pattern(pattern)
        assert compile_pattern("(dragon|wyrm)s?").search("wyrms")
    finally:
        patterns._compile.cache_clear()


def test_lorebook_numbers_that_overflow_are_clamped_not_tracebacks() -> None:
    raw = {"entries": {"0": {"uid": 0, "key": ["x"], "content": "@@depth 1e999\n@@scan_depth -1e999\nA",
                             "order": 1e308, "depth": 10**400, "probability": "nan", "sticky": "inf"}}}
    entry = parse_book("b", raw).entries[0]
    assert entry.scan_depth is None and entry.depth == 4 and entry.probability == 100 and entry.sticky == 0
    assert entry.order == 1e9  # clamped to MAX_NUMBER
    with pytest.raises(ConfigError) as caught:
        loads('{"entries": {"0": {"key": ["x"], "order": Infinity}}}', "book.json")
    assert "finite" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "1e999", '{"x": [1, 2, -1e400]}'])
def test_json_that_is_not_finite_is_one_line(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        loads(text, "data.json")
    assert str(caught.value).startswith("data.json: not valid JSON") and "\n" not in str(caught.value)


# --- appraisal and scripted rules -----------------------------------------------------------------

def test_appraisal_of_a_long_message_is_bounded() -> None:
    appraiser = LexiconAppraiser()
    appraiser.score("warm up", "incoming")
    text = "I love this! What a terrible, awful day. " * 1500  # 60 KB
    started = time.perf_counter()
    appraiser.score(text + " x", "incoming")
    assert time.perf_counter() - started < 0.3  # was seconds (VADER is quadratic in the words)
    assert sum(map(len, pieces(text))) <= 6 * 480
    short = "You are wonderful, thank you!"
    affect = appraiser.score(short, "incoming")
    assert affect.pleasure == pytest.approx(_vader().polarity_scores(short)["compound"] * 0.35)  # short texts as before


def test_scripted_rules_are_bounded_and_fill_only_sender_and_text(duckdb_url: str, tmp_path: Path) -> None:
    kernel = Kernel(KernelConfig(modules=["scripted"]), database=duckdb_url).start()
    try:
        bad = "name: bad\ntype: scripted\nrules: [{match: '(a+)+$', reply: x}]\n"
        with pytest.raises(TobioError) as caught:
            kernel.run(f"agent spawn {write(tmp_path / 'bad.yaml', bad)}")
        assert "backtracking" in str(caught.value)
        ok = ("name: slow\ntype: scripted\nrules: [{match: '(a|aa)+$', reply: 'rule'}]\n"
              "replies: ['{text.__class__} {sender} {{x}} {text:>99999}']\n")
        kernel.run(f"agent spawn {write(tmp_path / 'ok.yaml', ok)}")
        agent = kernel.agents.live["slow"]
        started = time.perf_counter()
        reply = agent.reply_for("a" * 50_000 + "b", "ada")
        assert time.perf_counter() - started < 0.5
        assert reply == "{text.__class__} ada {x} {text:>99999}"  # no attribute access, no padding to gigabytes
    finally:
        kernel.close()


# --- chat imports ---------------------------------------------------------------------------------

def _chat(tmp_path: Path, lines: list[dict[str, Any]], name: str = "chat.jsonl") -> Path:
    return write(tmp_path / name, "".join(json.dumps(line) + "\n" for line in lines))


def test_a_chat_of_hundreds_of_speakers_is_one_line(tmp_path: Path) -> None:
    lines = [{"name": f"u{i}", "is_user": True, "mes": "hi", "send_date": 1_700_000_000_000} for i in range(500)]
    with pytest.raises(ConfigError) as caught:
        read_chat(_chat(tmp_path, lines))
    assert f"at most {MAX_SPEAKERS}" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", 10**30, -10**30, "1e999",
                                   "９９９９", "x" * 100_000, "June 99, 2023 2:20pm", [1], {"a": 1}, 1.5e300, "-1",
                                   "2023-02-30T00:00:00", True, "²"])
def test_odd_send_dates_are_no_time_not_a_traceback(value: Any) -> None:
    started = time.perf_counter()
    when = parse_time(value)
    assert when is None or 1970 <= when.year <= 2200
    assert time.perf_counter() - started < 0.1


def test_look_alikes_of_the_local_user_do_not_become_the_user(duckdb_url: str, tmp_path: Path) -> None:
    assert {looks_like(n) for n in ("User", "ｕｓｅｒ", "user\u200b", " USER ", "u\u00adser")} == {"user"}
    kernel = Kernel(KernelConfig(modules=["persona", "lore"], base_dir=tmp_path), database=duckdb_url).start()
    try:
        kernel.run("sql SELECT 1")
        people = [{"name": n, "is_user": True, "mes": f"I am {n!r}", "send_date": 1_700_000_000_000 + i}
                  for i, n in enumerate(["User", "ｕｓｅｒ", "user\u200b"])]
        done = kernel.run(f"transcript import {_chat(tmp_path, people)} --channel st.look")
        assert "not as the local user" in done.text
        senders = {row[0] for row in kernel.run("sql SELECT a.name FROM messages m JOIN agents a ON a.id = m.agent_id "
                                                "WHERE m.channel = 'st.look'").rows}
        assert "user" not in senders and senders <= {"st-user", "st-user-200b"} | {s for s in senders if s.startswith("st-")}
        # a character named like the local user is refused, and nothing of that import is written
        before = kernel.run("sql SELECT count(*) FROM agents").rows[0][0]
        lines = [{"name": "Newcomer", "is_user": True, "mes": "hi", "send_date": 1_700_000_000_000},
                 {"name": "ｕｓｅｒ", "is_user": False, "mes": "I am the user now", "send_date": 1_700_000_000_001}]
        with pytest.raises(CommandError) as caught:
            kernel.run(f"transcript import {_chat(tmp_path, lines, 'fake.jsonl')} --channel st.fake")
        assert "only looks like" in str(caught.value)
        assert kernel.run("sql SELECT count(*) FROM agents").rows[0][0] == before
        assert kernel.run("sql SELECT count(*) FROM messages WHERE channel = 'st.fake'").rows[0][0] == 0
    finally:
        kernel.close()


# --- CHARX ----------------------------------------------------------------------------------------

CARD = json.dumps({"spec": "chara_card_v3", "spec_version": "3.0", "data": {"name": "Zip"}}).encode()


def _charx(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    return buffer.getvalue()


def wbytes(path: Path, blob: bytes) -> Path:
    path.write_bytes(blob)
    return path


def _one_line(path: Path, expect: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_charx(path)
    assert expect in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


def test_corrupt_charx_files_are_one_line(tmp_path: Path) -> None:
    good = _charx({"card.json": CARD, "assets/a.txt": b"hello world " * 100})
    bad_crc = bytearray(good)
    at = bad_crc.index(b"PK\x01\x02")  # the central directory's CRC of the first member: 16 bytes in
    crc_at = good.index(b"PK\x03\x04") + 14
    bad_crc[crc_at:crc_at + 4] = b"\0\0\0\0"
    bad_crc[at + 16:at + 20] = b"\0\0\0\0"
    _one_line(wbytes(tmp_path / "crc.charx", bytes(bad_crc)), "corrupt")
    method = bytearray(_charx({"card.json": CARD}, zipfile.ZIP_STORED))
    local, central = method.index(b"PK\x03\x04"), method.index(b"PK\x01\x02")
    method[local + 8:local + 10] = struct.pack("<H", 99)
    method[central + 10:central + 12] = struct.pack("<H", 99)
    _one_line(wbytes(tmp_path / "method.charx", bytes(method)), "compression method")
    _one_line(wbytes(tmp_path / "clash.charx", _charx({"card.json": CARD, "a": b"x", "a/b": b"y"})), "both a file and a folder")
    _one_line(wbytes(tmp_path / "nan.charx", _charx({"card.json": b'{"spec": NaN}'})), "finite")
    (tmp_path / "trunc.charx").write_bytes(good[: len(good) // 2])
    _one_line(tmp_path / "trunc.charx", "zip")


def test_a_charx_bomb_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    chunk = bytes(range(256)) * 4096  # 1 MB, compresses far better than pictures do
    bomb = wbytes(tmp_path / "bomb.charx", _charx({"card.json": CARD, **{f"assets/{i}.bin": chunk for i in range(300)}}))
    started = time.perf_counter()
    _one_line(bomb, "may unpack to at most")
    assert time.perf_counter() - started < 0.5  # refused from the directory, nothing inflated


def test_assets_are_written_all_or_nothing(tmp_path: Path) -> None:
    first = save_assets("zip", {"assets/a.txt": b"one"}, root=tmp_path)
    assert (first / "assets" / "a.txt").read_bytes() == b"one"
    with pytest.raises(ConfigError):
        save_assets("zip", {"assets/b.txt": b"two", "x/../../escape": b"no"}, root=tmp_path)
    assert (first / "assets" / "a.txt").read_bytes() == b"one" and not (first / "assets" / "b.txt").exists()
    assert sorted(p.name for p in (tmp_path / "charx").iterdir()) == ["zip"]  # no staging dir left behind
    save_assets("zip", {"assets/c.txt": b"three"}, root=tmp_path)
    assert sorted(p.name for p in (first / "assets").iterdir()) == ["c.txt"]  # replaced, not merged
