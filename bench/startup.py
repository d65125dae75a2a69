"""Cold start of `tobio-shell -c "agent ls"` against `python -c "import sqlalchemy"`, measured together.

Each sample is a fresh process (cold interpreter, warm OS file cache); the commands alternate so
that machine load affects them alike. Prints one JSON object: medians in ms and their ratio, plus
`kernel_ms`, the same work through the kernel's API without the shell (what the shell adds is the
difference), and `first_ms` / `first_ratio`, the shell's very first start on a new data dir (it
creates the database and spawns the agents of configs/).

    python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "agent ls"
KERNEL_ONLY = (
    "from tobio.kernel import Kernel\n"
    f"k = Kernel(None).start()\nprint(k.run({COMMAND!r}).to_plain())\nk.close()\n"
)


def shell_argv() -> list[str]:
    """The installed console script next to this interpreter, else the module's main()."""
    script = Path(sys.executable).parent / "tobio-shell"
    if script.exists():
        return [sys.executable, str(script), "-c", COMMAND]
    return [sys.executable, "-c", "import sys; from shell.app import main; sys.exit(main())", "-c", COMMAND]


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one run in ms; a failing run aborts the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="samples of each command")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tobio-bench-") as data:
        env = {**os.environ, "TOBIO_DATA_DIR": data, "TOBIO_LOAD_PLUGINS": ""}
        env.pop("TOBIO_CONFIG", None)
        env.pop("TOBIO_DATABASE", None)
        # A user's second start finds bytecode cached; some sandboxes set this, which would make
        # every sample recompile Tobio's own sources (~100 ms) and measure that instead.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        shell, baseline = shell_argv(), [sys.executable, "-c", "import sqlalchemy"]
        kernel = [sys.executable, "-c", KERNEL_ONLY]
        for argv in (shell, baseline, kernel):
            timed(argv, env)  # creates the database and warms the file cache, like any second start
        tobio_ms, baseline_ms, kernel_ms, first_ms = [], [], [], []
        for _ in range(args.runs):
            baseline_ms.append(timed(baseline, env))
            tobio_ms.append(timed(shell, env))
            kernel_ms.append(timed(kernel, env))
            with tempfile.TemporaryDirectory(prefix="tobio-bench-new-") as new:
                first_ms.append(timed(shell, {**env, "TOBIO_DATA_DIR": new}))
    tobio, base, first = statistics.median(tobio_ms), statistics.median(baseline_ms), statistics.median(first_ms)
    print(json.dumps({
        "tobio_ms": round(tobio, 1),
        "baseline_ms": round(base, 1),
        "ratio": round(tobio / base, 2),
        "target_ratio": 2.0,
        "first_ms": round(first, 1),
        "first_ratio": round(first / base, 2),
        "kernel_ms": round(statistics.median(kernel_ms), 1),
        "runs": args.runs,
        "command": f'tobio-shell -c "{COMMAND}"',
        "baseline": 'python -c "import sqlalchemy"',
    }))


if __name__ == "__main__":
    main()
