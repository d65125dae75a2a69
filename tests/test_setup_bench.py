"""bench/setup.py's quick mode runs in seconds and reports what the full run reports about this venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_mode_prints_venv_size_and_embedding_speed(tmp_path: Path) -> None:
    env = {**os.environ, "TOBIO_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "bench/setup.py", "--quick", "--texts", "16"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["venv_mb"] > 10 and result["embed_texts_per_s"] > 0 and result["cores"] >= 1
    assert list(tmp_path.rglob("*.gguf"))  # the embedding model was converted into the cache it was given
