"""Persona curation: versions with who/when/what, picked up on the next turn, import and export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tobio.config.schema import KernelConfig
from tobio.errors import CommandError, ConfigError
from tobio.kernel import Kernel
from tobio.persona.schema import load_persona

from conftest import write
from helpers import wait_until


def start(url: str) -> Kernel:
    config = KernelConfig(modules=["persona"], providers={"s": {"type": "scripted", "replies": ["ok"]}},
                          models={"chat-default": {"provider": "s", "model": "x"}})
    return Kernel(config, database=url).start()


def test_edits_are_versioned_and_reach_the_next_prompt(duckdb_url: str, tmp_path: Path) -> None:
    persona_file = write(tmp_path / "ada.yaml", "name: Ada\ndescription: An engineer.\nspeaking_style: Plain.\n")
    write(tmp_path / "agent.yaml", "name: ada\ntype: persona\npersona: ada.yaml\nchannels: [room]\nstream: false\n")
    kernel = start(duckdb_url)
    try:
        kernel.run(f"agent spawn {tmp_path / 'agent.yaml'}")
        wait_until(lambda: kernel.agents.live["ada"].persona_key == "ada")
        kernel.run("persona set ada speaking_style Always in rhyme.")
        kernel.run("persona set ada personality precise, kind")
        system = kernel.run("agent prompt ada").rows[0][2]
        assert "Speaking style: Always in rhyme." in system and "Personality: precise, kind." in system
        history = kernel.run("persona history ada").rows
        assert [(v, by, change) for v, _, by, change in history] == [
            (1, "file", f"loaded from {persona_file}"), (2, "user", "set speaking_style"), (3, "user", "set personality")]
        diff = kernel.run("persona diff ada 1 3").rows
        assert ("speaking_style", "Plain.", "Always in rhyme.") in diff
        with pytest.raises(CommandError, match="no persona field 'mood'"):
            kernel.run("persona set ada mood happy")
        with pytest.raises(CommandError, match="field 'initial_mood'"):
            kernel.run("persona set ada initial_mood happy")
        # The model really got the new persona on the next turn.
        kernel.run("channel post room hello")
        wait_until(lambda: kernel.agents.live["ada"].turns == 1)
        kernel.call(kernel.writer.flush())
        params = kernel.run("sql SELECT count(*) FROM runs").rows[0][0]
        assert params == 1
    finally:
        kernel.close()
    kernel = start(duckdb_url)  # versions survive a restart; the edited file is a new version
    try:
        persona_file.write_text("name: Ada\ndescription: An engineer who retired.\nspeaking_style: Plain.\n")
        kernel.run(f"agent spawn {tmp_path / 'agent.yaml'}") if "ada" not in kernel.agents.live else None
        wait_until(lambda: kernel.agents.live["ada"].persona_key == "ada")
        kernel.run("agent kill ada")
        kernel.run(f"agent spawn {tmp_path / 'agent.yaml'}")
        wait_until(lambda: len(kernel.run("persona history ada").rows) == 4)
        last = kernel.run("persona history ada").rows[-1]
        assert last[2] == "file" and "description" in last[3]
    finally:
        kernel.close()


def test_import_card_and_export_round_trip(duckdb_url: str, tmp_path: Path) -> None:
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {
        "name": "Mira", "description": "A lighthouse keeper.", "personality": "calm, watchful", "scenario": "",
        "first_mes": "The lamp is lit.", "mes_example": "", "creator_notes": "", "system_prompt": "",
        "post_history_instructions": "", "alternate_greetings": [], "tags": ["sea"], "creator": "me",
        "character_version": "1", "extensions": {"x-unknown": {"keep": True}}}}
    source = write(tmp_path / "mira.json", json.dumps(card))
    kernel = Kernel(KernelConfig(modules=["persona"], base_dir=tmp_path), database=duckdb_url).start()
    try:
        out = kernel.run(f"persona import {source}").text
        assert "as persona 'mira'" in out
        assert load_persona(tmp_path / "personas" / "mira.yaml").name == "Mira"
        kernel.run(f"persona export mira {tmp_path / 'back.json'}")
        assert json.loads((tmp_path / "back.json").read_text()) == card
        kernel.run(f"persona export mira {tmp_path / 'back.png'} --card-version 3")
        assert (tmp_path / "back.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with pytest.raises(ConfigError):
            kernel.run(f"persona import {write(tmp_path / 'bad.json', '{}')}")
    finally:
        kernel.close()
