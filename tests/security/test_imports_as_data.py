"""Imported persona files and cards are data: no ${VAR}, no tags, no echoed values, no stray writes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tobio.config import load_data_yaml, load_yaml
from tobio.config.schema import KernelConfig, load_kernel_config
from tobio.errors import CommandError, ConfigError, TobioError
from tobio.kernel import Kernel
from tobio.paths import data_dir, slug
from tobio.persona.schema import load_persona

SECRET = "sk-test-0123456789-very-secret"
CREDS = f"api_key: {SECRET}\nnested:\n  token: {SECRET}\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TOBIO_TEST_SECRET", SECRET)
    return SECRET


@pytest.fixture
def kernel(tmp_path: Path, duckdb_url: str) -> Iterator[Kernel]:
    config = KernelConfig(modules=["scripted", "persona"], base_dir=tmp_path / "conf")
    k = Kernel(config, database=duckdb_url).start()
    try:
        yield k
    finally:
        k.close()


def spawn_spy(kernel: Kernel, tmp_path: Path) -> None:
    """An agent `spy` allowed `persona` commands, as in the issue."""
    path = write(tmp_path / "spy.yaml", "name: spy\ntype: scripted\ncommands: [persona]\n")
    kernel.run(f"agent spawn {path}")


# --- the safe loader ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "name: ${TOBIO_TEST_SECRET}\n",
    "name: x\ndescription: 'key ${TOBIO_TEST_SECRET:-none}'\n",
    "name: x\ngoals: [\"${TOBIO_TEST_SECRET}\"]\n",
])
def test_persona_files_never_expand_env(tmp_path: Path, secret_env: str, text: str) -> None:
    persona = load_persona(write(tmp_path / "p.yaml", text))
    assert secret_env not in json.dumps(persona.model_dump(mode="json"))
    assert "${TOBIO_TEST_SECRET" in json.dumps(persona.model_dump(mode="json"))


@pytest.mark.parametrize("value", [
    "!include creds.yaml",
    "!include /etc/passwd",
    "!env TOBIO_TEST_SECRET",
    "!!python/object/apply:os.getcwd []",
    "!!binary c2VjcmV0",
    "!!set {a, b}",
    "!custom {a: 1}",
])
def test_persona_files_follow_no_tags(tmp_path: Path, secret_env: str, value: str) -> None:
    write(tmp_path / "creds.yaml", CREDS)
    path = write(tmp_path / "evil.yaml", f"name: Evil\nrelationships: {value}\n")
    with pytest.raises(ConfigError) as info:
        load_persona(path)
    message = str(info.value)
    assert secret_env not in message and "\n" not in message
    assert "tag" in message and "not allowed" in message and f"{path}:2" in message


def test_wrong_shape_errors_name_the_field_not_the_value(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", f"name: Evil\nrelationships:\n  bob: {{token: {SECRET}}}\ngoals: {SECRET}\n")
    with pytest.raises(ConfigError) as info:
        load_persona(path)
    assert "relationships" in str(info.value) and SECRET not in str(info.value)


def test_kernel_config_include_of_wrong_shape_does_not_print_the_included_values(tmp_path: Path) -> None:
    write(tmp_path / "creds.yaml", CREDS)
    path = write(tmp_path / "kernel.yaml", "channels: !include creds.yaml\nlog_level: LOUD\n")
    with pytest.raises(ConfigError) as info:
        load_kernel_config(path)
    assert SECRET not in str(info.value)
    assert "'LOUD'" in str(info.value)  # the user's own file still shows what was wrong


def test_users_own_config_keeps_env_and_include(tmp_path: Path, secret_env: str) -> None:
    write(tmp_path / "channels.yaml", "[lobby, '${TOBIO_TEST_SECRET}']\n")
    data, _ = load_yaml(write(tmp_path / "kernel.yaml", "channels: !include channels.yaml\n"))
    assert data == {"channels": ["lobby", secret_env]}
    data, _ = load_data_yaml(tmp_path / "channels.yaml")
    assert data == ["lobby", "${TOBIO_TEST_SECRET}"]


# --- persona import / export through the command tree ------------------------------------------


def test_import_keeps_env_references_as_text_everywhere(kernel: Kernel, tmp_path: Path, secret_env: str) -> None:
    source = write(tmp_path / "evil.yaml", "name: Evil\ndescription: 'my key is ${TOBIO_TEST_SECRET}'\n")
    kernel.run(f"persona import {source}")
    written = (tmp_path / "conf" / "personas" / "evil.yaml").read_text(encoding="utf-8")
    assert secret_env not in written and "${TOBIO_TEST_SECRET}" in written
    kernel.call(kernel.writer.flush())
    stored = kernel.run("sql SELECT CAST(data AS VARCHAR) FROM persona_versions").rows
    assert stored and all(secret_env not in row[0] for row in stored)
    assert load_persona(tmp_path / "conf" / "personas" / "evil.yaml").description == "my key is ${TOBIO_TEST_SECRET}"


def test_import_refuses_include_without_echoing(kernel: Kernel, tmp_path: Path) -> None:
    write(tmp_path / "creds.yaml", CREDS)
    source = write(tmp_path / "evil.yaml", "name: Evil\nrelationships: !include creds.yaml\n")
    with pytest.raises(ConfigError) as info:
        kernel.run(f"persona import {source}")
    assert SECRET not in str(info.value)
    assert not (tmp_path / "conf" / "personas" / "evil.yaml").exists()


@pytest.mark.parametrize("name", ["../../../../tmp/x", "/etc/evil", "..", "a/../../b", "bad name/../x", "CON:", "ünï cødé"])
def test_names_become_slugs_inside_personas(kernel: Kernel, tmp_path: Path, name: str) -> None:
    source = write(tmp_path / "card.json", json.dumps({"name": "Mira", "description": "keeper"}))
    out = kernel.run(f"persona import {source} --name '{name}'").text
    personas = tmp_path / "conf" / "personas"
    files = list(personas.iterdir())
    assert len(files) == 1 and files[0].parent == personas
    key = files[0].stem
    assert key == slug(name) and f"'{key}'" in out
    assert all(ch.isalnum() or ch in "-_" for ch in key)


@pytest.mark.parametrize("card_name", ["../../../../tmp/pwned", "..", "/etc/passwd", "a\0b"])
def test_card_names_become_slugs(kernel: Kernel, tmp_path: Path, card_name: str) -> None:
    source = write(tmp_path / "card.json", json.dumps({"name": card_name, "description": "x"}))
    kernel.run(f"persona import {source}")
    personas = tmp_path / "conf" / "personas"
    assert [p.parent for p in personas.iterdir()] == [personas]


def test_import_does_not_overwrite_without_force(kernel: Kernel, tmp_path: Path) -> None:
    source = write(tmp_path / "card.json", json.dumps({"name": "Mira", "description": "first"}))
    kernel.run(f"persona import {source}")
    write(source, json.dumps({"name": "Mira", "description": "second"}))
    with pytest.raises(CommandError, match="--force"):
        kernel.run(f"persona import {source}")
    assert "first" in (tmp_path / "conf" / "personas" / "mira.yaml").read_text()
    kernel.run(f"persona import {source} --force")
    assert "second" in (tmp_path / "conf" / "personas" / "mira.yaml").read_text()


def test_export_does_not_overwrite_without_force(kernel: Kernel, tmp_path: Path) -> None:
    kernel.run(f"persona import {write(tmp_path / 'card.json', json.dumps({'name': 'Mira'}))}")
    target = write(tmp_path / "precious.json", "do not touch")
    with pytest.raises(CommandError, match="--force"):
        kernel.run(f"persona export mira {target}")
    assert target.read_text() == "do not touch"
    kernel.run(f"persona export mira {target} --force")
    assert json.loads(target.read_text())["data"]["name"] == "Mira"


def test_force_replaces_a_symlink_instead_of_writing_through_it(kernel: Kernel, tmp_path: Path) -> None:
    victim = write(tmp_path / "victim.txt", "keep me")
    personas = tmp_path / "conf" / "personas"
    personas.mkdir(parents=True)
    (personas / "mira.yaml").symlink_to(victim)
    source = write(tmp_path / "card.json", json.dumps({"name": "Mira"}))
    with pytest.raises(CommandError, match="--force"):
        kernel.run(f"persona import {source}")
    kernel.run(f"persona import {source} --force")
    assert victim.read_text() == "keep me" and not (personas / "mira.yaml").is_symlink()


# --- an agent's path arguments stay inside the data dir ----------------------------------------


@pytest.mark.parametrize("line", [
    "persona import {card} --dir {outside}",
    "persona import {outside_card}",
    "persona import {link_card}",
    "persona export mira {outside}/stolen.json",
    "persona export mira {data}/../escape.json",
    "persona export mira {link_dir}/x.json",
    "persona export mira {data}/ok.png --image {outside_png}",
    "persona import {card} --force",
    "persona export mira {data}/card.json --force",
])
def test_agent_paths_stay_inside_the_data_dir(kernel: Kernel, tmp_path: Path, line: str) -> None:
    data = data_dir()
    outside = tmp_path / "outside"
    outside.mkdir()
    card = write(data / "card.json", json.dumps({"name": "Mira"}))
    outside_card = write(outside / "card.json", json.dumps({"name": "Mira"}))
    (data / "link.json").symlink_to(outside_card)
    (data / "linkdir").symlink_to(outside, target_is_directory=True)
    from tobio.persona.cards import placeholder_png

    (outside / "img.png").write_bytes(placeholder_png())
    kernel.run(f"persona import {card}")  # by the user: mira exists
    spawn_spy(kernel, tmp_path)
    before = sorted(p.name for p in outside.iterdir())
    text = line.format(card=card, outside=outside, outside_rel=str(outside).lstrip("/"), outside_card=outside_card,
                       link_card=data / "link.json", data=data, link_dir=data / "linkdir", outside_png=outside / "img.png")
    with pytest.raises(TobioError) as info:
        kernel.run(text, caller="spy")
    assert "spy" in str(info.value) or "inside" in str(info.value)
    assert sorted(p.name for p in outside.iterdir()) == before
    assert not (tmp_path / "escape.json").exists()


def test_agent_name_with_dots_lands_in_personas(kernel: Kernel, tmp_path: Path) -> None:
    spawn_spy(kernel, tmp_path)
    card = write(data_dir() / "card.json", json.dumps({"name": "Mira"}))
    out = kernel.run(f"persona import {card} --name ../../../../{str(tmp_path).lstrip('/')}/x", caller="spy").text
    personas = tmp_path / "conf" / "personas"
    assert [p.parent for p in personas.iterdir()] == [personas] and str(personas) in out
    assert not (tmp_path / "x.yaml").exists()


def test_agent_may_still_import_and_export_inside_the_data_dir(kernel: Kernel, tmp_path: Path) -> None:
    spawn_spy(kernel, tmp_path)
    card = write(data_dir() / "cards" / "mira.json", json.dumps({"name": "Mira"}))
    kernel.run(f"persona import {card}", caller="spy")
    kernel.run("persona export mira exports/mira.json", caller="spy")
    assert json.loads((data_dir() / "exports" / "mira.json").read_text())["data"]["name"] == "Mira"
    assert os.path.exists(tmp_path / "conf" / "personas" / "mira.yaml")
