"""Configuration files: clear errors naming file, line and field; env interpolation; includes; paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tobio.config import load_kernel_config, load_yaml
from tobio.errors import ConfigError
from tobio.kernel import Kernel
from tobio.paths import find_config

from conftest import write


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "kernel.yaml", "modules: [scripted\nchannels: [lobby]\n")
    with pytest.raises(ConfigError) as err:
        load_kernel_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:")
    assert "malformed YAML" in message
    assert "\n" not in message


def test_unknown_field_names_file_line_field_and_expected(tmp_path: Path) -> None:
    path = write(tmp_path / "kernel.yaml", "modules: []\n\nmodulez: [x]\n")
    with pytest.raises(ConfigError) as err:
        load_kernel_config(path)
    message = str(err.value)
    assert f"{path}:3:" in message
    assert "'modulez'" in message
    assert "expected one of: database, modules" in message
    assert "base_dir" not in message


def test_wrong_type_points_at_the_value(tmp_path: Path) -> None:
    path = write(tmp_path / "kernel.yaml", "models:\n  chat:\n    provider: local\n    purpose: chatting\n")
    with pytest.raises(ConfigError) as err:
        load_kernel_config(path)
    assert f"{path}:4: field 'models.chat.purpose'" in str(err.value)


def test_env_interpolation_with_default_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOBIO_TEST_DB", "sqlite:///x.db")
    path = write(tmp_path / "kernel.yaml", "database: ${TOBIO_TEST_DB}\nchannels: ['${NOT_SET_ANYWHERE:-lobby}']\n")
    config = load_kernel_config(path)
    assert config.database == "sqlite:///x.db"
    assert config.channels == ["lobby"]
    path = write(tmp_path / "bad.yaml", "database: ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:1: environment variable \$\{NOT_SET_ANYWHERE\} is not set"):
        load_kernel_config(path)


def test_include_is_relative_to_the_including_file(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "models.yaml", "chat:\n  provider: openai\n  model: gpt\n  purpose: chat\n")
    path = write(tmp_path / "conf" / "kernel.yaml", "models: !include models.yaml\n")
    config = load_kernel_config(path)
    assert config.models["chat"].model == "gpt"


def test_error_inside_include_points_into_included_file(tmp_path: Path) -> None:
    models = write(tmp_path / "models.yaml", "chat:\n  provider: openai\n  temperature: 2\n")
    path = write(tmp_path / "kernel.yaml", "models: !include models.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_kernel_config(path)
    assert f"{models}:3:" in str(err.value)
    assert "'models.chat.temperature'" in str(err.value)


def test_include_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "x: !include b.yaml\n")
    write(tmp_path / "b.yaml", "y: !include a.yaml\n")
    with pytest.raises(ConfigError, match="!include cycle"):
        load_yaml(tmp_path / "a.yaml")


def test_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "kernel.yaml", "modules: []\nmodules: [scripted]\n")
    with pytest.raises(ConfigError, match=r"kernel.yaml:2: duplicate key 'modules'"):
        load_kernel_config(path)


def test_agent_globs_relative_to_kernel_file(tmp_path: Path) -> None:
    write(tmp_path / "c" / "agents" / "a.yaml", "name: a\ntype: scripted\n")
    write(tmp_path / "c" / "agents" / "b.yaml", "name: b\ntype: scripted\n")
    path = write(tmp_path / "c" / "kernel.yaml", "agents: [agents/*.yaml]\n")
    assert [p.name for p in load_kernel_config(path).agent_files()] == ["a.yaml", "b.yaml"]


def test_agent_file_errors_and_frozen_config(tmp_path: Path, duckdb_url: str) -> None:
    from tobio.config.schema import KernelConfig

    kernel = Kernel(KernelConfig(modules=["scripted"]), database=duckdb_url).start()
    try:
        bad = write(tmp_path / "bob.yaml", "name: bob\ntype: scripted\nreplys: [hi]\n")
        with pytest.raises(ConfigError) as err:
            kernel.agents.load_config(bad)
        assert f"{bad}:3: field 'replys': unknown field (expected one of: name, type" in str(err.value)
        unknown = write(tmp_path / "eve.yaml", "name: eve\ntype: telepath\n")
        with pytest.raises(Exception, match=r"eve.yaml:2: unknown agent type 'telepath'"):
            kernel.agents.load_config(unknown)
        good = kernel.agents.load_config(write(tmp_path / "ann.yaml", "name: ann\ntype: scripted\nreplies: [hi]\n"))
        with pytest.raises(ValidationError):
            good.name = "other"  # type: ignore[misc]
    finally:
        kernel.close()


def test_config_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write(tmp_path / "a" / "kernel.yaml", "{}\n")
    from_env = write(tmp_path / "b" / "kernel.yaml", "{}\n")
    monkeypatch.chdir(tmp_path)
    assert find_config(None) is None
    monkeypatch.setenv("TOBIO_CONFIG", str(from_env.parent))
    assert find_config(None) == from_env
    assert find_config(explicit) == explicit
