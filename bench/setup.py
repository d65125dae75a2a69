"""What setting Tobio up costs a new user: install time, venv size, time to the first reply, embedding speed.

Prints one JSON object. The full run clones this repository twice into a temporary folder and runs
`./dev env` in each: the first with pip's cache off and an empty wheel cache (`install_s`: llama.cpp is
compiled), the second with the wheel the first built (`install_cached_s`). Then `./dev run` in the
second clone, in a pseudo-terminal, to the persona's greeting (`greeting_s`) and to the model's first
reply (`first_reply_s`). Both need the network (PyPI) and take minutes on 2 cores.

    python bench/setup.py            # the whole thing
    python bench/setup.py --quick    # seconds: venv_mb of this interpreter's venv, embed_texts_per_s
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEXTS = [
    "caroline: I went to the support group yesterday and it was so powerful.",
    "What did Melanie paint recently?",
    "melanie: I painted a lake at sunrise last week, it took me three mornings.",
    "Where did Caroline move from four years ago?",
]


def folder_mb(path: Path) -> float:
    """Disk use of a folder in MB (files counted once, symlinks not followed)."""
    total = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                pass
    return round(total / 1e6, 1)


def embed_texts_per_s(count: int) -> float:
    """Texts per second through the embedder Tobio uses, on `count` short texts (the model loaded first)."""
    from tobio.providers.embedder import load_embedder

    embedder = load_embedder("all-MiniLM-L6-v2")
    texts = [f"{TEXTS[i % len(TEXTS)]} ({i})" for i in range(count)]
    embedder.encode(texts[:8])  # warm-up: first-call allocations are not throughput
    began = time.perf_counter()
    embedder.encode(texts)
    rate = count / (time.perf_counter() - began)
    embedder.close()
    return round(rate, 1)


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed in {cwd}: {done.stderr.strip()[-2000:]}")
    return round(time.perf_counter() - began, 1)


def posted_reply(agent: str) -> str:
    """The line the shell's chat prints when `agent`'s reply is posted (the name may come in colour;
    drafts end in ▌ and are redrawn, so they never match)."""
    return agent + r"(?:\x1b\[[0-9;]*m)*: ([^▌\x1b\r\n]+)\r\n"


def first_reply(clone: Path, env: dict[str, str]) -> tuple[float, float]:
    """Seconds from `./dev run` to the greeting's prompt, and to the model's first reply."""
    import pexpect

    began = time.perf_counter()
    child = pexpect.spawn(str(clone / "dev"), ["run"], cwd=str(clone), env=env, encoding="utf-8", timeout=600,
                          dimensions=(40, 200))
    try:
        child.expect("chat:tobio> ")
        greeting = time.perf_counter() - began
        child.send("Hello! What is your name?\r")
        child.expect(posted_reply("tobio"))
        reply = time.perf_counter() - began
        child.sendcontrol("d")  # leaves the chat for the shell's prompt (not after a `:`, as in chat:tobio>)
        child.expect(r"(?<!:)tobio> ", timeout=60)
        child.sendcontrol("d")  # leaves the shell
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)
    return round(greeting, 1), round(reply, 1)


def full(runs_dir: Path) -> dict[str, float]:
    """Two clean clones: one with nothing cached, one reusing the built llama.cpp wheel."""
    wheels = runs_dir / "wheels"
    base = {**os.environ, "TOBIO_WHEEL_CACHE": str(wheels), "TOBIO_DATA_DIR": str(runs_dir / "data"),
            "TOBIO_CACHE_DIR": str(runs_dir / "cache")}
    for key in ("TOBIO_VENV", "VIRTUAL_ENV", "TOBIO_CONFIG", "TOBIO_DATABASE"):
        base.pop(key, None)
    results: dict[str, float] = {}
    for name, extra in (("install_s", {"PIP_NO_CACHE_DIR": "1"}), ("install_cached_s", {})):
        clone = runs_dir / name
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        results[name] = timed(["./dev", "env"], clone, {**base, **extra})
    clone = runs_dir / "install_cached_s"
    results["venv_mb"] = folder_mb(clone / ".venv")
    results["greeting_s"], results["first_reply_s"] = first_reply(clone, base)
    results["install_and_first_reply_s"] = round(results["install_s"] + results["first_reply_s"], 1)  # goal ≤ 180
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only venv_mb of this venv and embed_texts_per_s")
    parser.add_argument("--texts", type=int, default=256, help="texts for embed_texts_per_s")
    args = parser.parse_args()
    result: dict[str, float | str] = {}
    if not args.quick:
        with tempfile.TemporaryDirectory(prefix="tobio-setup-") as tmp:
            result.update(full(Path(tmp)))
    else:
        result["venv_mb"] = folder_mb(Path(sys.prefix))
    result["embed_texts_per_s"] = embed_texts_per_s(args.texts)
    result["cores"] = os.cpu_count() or 1
    print(json.dumps(result))


if __name__ == "__main__":
    main()
