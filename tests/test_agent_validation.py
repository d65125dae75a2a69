"""What cannot run is refused before anything is spawned or written, with one line (issue 14, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tobio.config.schema import KernelConfig
from tobio.errors import TobioError
from tobio.kernel import Kernel

from conftest import make_kernel, write

ECHO = "name: {name}\ntype: scripted\nchannels: [talk]\n"


def one_line(exc: pytest.ExceptionInfo[TobioError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def agent_names(kernel: Kernel) -> list[str]:
    return [r[0] for r in kernel.run("sql SELECT name FROM agents ORDER BY name").rows]


@pytest.mark.parametrize("bad", ["bad name/../x", "../x", "a/b", "-x", "x" * 65])
def test_spawn_name_override_follows_the_name_rule(bad: str, duckdb_url: str, tmp_path: Path) -> None:
    kernel = make_kernel(duckdb_url)
    try:
        path = write(tmp_path / "echo.yaml", ECHO.format(name="echo"))
        with pytest.raises(TobioError) as err:
            kernel.run(f"agent spawn {path} --name='{bad}'")
        assert "bad agent name" in one_line(err)
        assert agent_names(kernel) == [] and not kernel.agents.live
        kernel.run(f"agent spawn {path} --name echo.2")  # a good override still works
        assert list(kernel.agents.live) == ["echo.2"]
    finally:
        kernel.close()


def test_persona_with_a_missing_model_bundle_is_refused(duckdb_url: str, tmp_path: Path) -> None:
    config = KernelConfig(modules=["scripted", "models", "persona"],
                          providers={"s": {"type": "scripted"}}, models={"chat-default": {"provider": "s", "model": "x"}})
    kernel = Kernel(config, database=duckdb_url).start()
    try:
        write(tmp_path / "p.yaml", "name: P\n")
        path = write(tmp_path / "ghost.yaml", "name: ghost\ntype: persona\npersona: p.yaml\nmodel: no-such-model\n")
        with pytest.raises(TobioError) as err:
            kernel.run(f"agent spawn {path}")
        assert "no model bundle named 'no-such-model'" in one_line(err)
        assert agent_names(kernel) == []
    finally:
        kernel.close()


def test_two_agent_files_with_one_name_are_refused_naming_both(duckdb_url: str, tmp_path: Path) -> None:
    first = write(tmp_path / "a" / "echo.yaml", ECHO.format(name="echo"))
    second = write(tmp_path / "b" / "also-echo.yaml", ECHO.format(name="echo"))
    with pytest.raises(TobioError) as err:
        Kernel(KernelConfig(modules=["scripted"], agents=[str(first), str(second)]), database=duckdb_url).start()
    text = one_line(err)
    assert str(first) in text and str(second) in text


def test_scene_with_an_unknown_opening_speaker_spawns_nobody(duckdb_url: str, tmp_path: Path) -> None:
    config = KernelConfig(modules=["scripted", "models", "persona", "scenes"],
                          providers={"s": {"type": "scripted"}}, models={"chat-default": {"provider": "s", "model": "x"}})
    kernel = Kernel(config, database=duckdb_url).start()
    try:
        write(tmp_path / "p.yaml", "name: P\n")
        for name in ("ann", "bob"):
            write(tmp_path / f"{name}.yaml", f"name: {name}\ntype: persona\npersona: p.yaml\n")
        scene = write(tmp_path / "scene.yaml", "name: tea\nchannel: parlour\nagents: [ann.yaml, bob.yaml]\n"
                      "opening: {text: 'Hello.', speaker: zed}\nturns: 2\n")
        with pytest.raises(TobioError) as err:
            kernel.run(f"scene run {scene}")
        assert "opening speaker 'zed'" in one_line(err)
        assert agent_names(kernel) == [] and not kernel.agents.live
    finally:
        kernel.close()


@pytest.mark.parametrize("bad", ["has space", "a/b", "../up", "", "x" * 129, "tab\there", "nul\x00", "-lead", "é"])
def test_channel_names_are_checked_wherever_a_channel_is_made(bad: str, duckdb_url: str, tmp_path: Path) -> None:
    kernel = make_kernel(duckdb_url)
    try:
        path = write(tmp_path / "echo.yaml", ECHO.format(name="echo"))
        kernel.run(f"agent spawn {path}")
        for line in (f"channel post {bad!r} hello", f"channel sub echo {bad!r}"):
            with pytest.raises(TobioError) as err:
                kernel.run(line)
            assert "channel" in one_line(err) or bad in ("", "-lead")  # these read as a missing argument
        known = [r[0] for r in kernel.run("sql SELECT name FROM channels").rows]
        assert bad not in known
        kernel.run("channel post dm.ada.echo-2 hello")  # the usual shapes still work
    finally:
        kernel.close()


def test_unknown_settings_section_is_an_error(duckdb_url: str) -> None:
    config = KernelConfig(modules=["scripted"], settings={"emotoin": {"half_life_s": 10}})
    with pytest.raises(TobioError) as err:
        Kernel(config, database=duckdb_url).start()
    assert "settings.emotoin" in one_line(err) and "emotion" in str(err.value)
