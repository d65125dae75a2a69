"""A user who does not clone: Tobio's wheel carries the default configs, and an installed `tobio-shell`
run outside a checkout seeds the user's own copy of them and starts with the default persona."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from shell.testing import shell_env
from tobio.paths import find_config

ROOT = Path(__file__).resolve().parent.parent


def config_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.yaml"))}


def test_outside_a_checkout_the_front_ends_get_a_copy_of_the_default_configs(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config(None) is None  # a library kernel still runs on built-in defaults
    found = find_config(None, installed=True)
    assert found is not None and found.parent == tmp_path / "data" / "configs"  # the data dir (conftest)
    assert config_files(found.parent) == config_files(ROOT / "configs")
    (found.parent / "personas" / "tobio.yaml").write_text("name: Tobio\ndescription: edited by the user\n")
    assert find_config(None, installed=True) == found  # seeded once: the user's edits stay
    assert "edited by the user" in (found.parent / "personas" / "tobio.yaml").read_text()


@pytest.mark.slow
def test_the_wheel_carries_the_default_configs_and_its_shell_starts_the_persona(tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("tobio-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packaged = {n.removeprefix("tobio/default_configs/") for n in names if n.startswith("tobio/default_configs/")}
    assert packaged == set(config_files(ROOT / "configs"))

    elsewhere = tmp_path / "elsewhere"  # no ./configs here, no --config, no TOBIO_CONFIG
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-m", "shell.app", "--json", "-c", "agent ls"], cwd=elsewhere,
                          env={**shell_env(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    agents = {row["name"]: row["type"] for row in json.loads(done.stdout.strip().splitlines()[-1])}
    assert agents.get("tobio") == "persona"
    assert (tmp_path / "data" / "configs" / "personas" / "tobio.yaml").exists()
