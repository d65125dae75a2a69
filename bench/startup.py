"""Cold start of `tobio-shell -c "agent ls"` against `python -c "import sqlalchemy"`, measured together.

Each sample is a fresh process (cold interpreter, warm OS file cache); the commands alternate so
that machine load affects them alike. Prints one JSON object: medians in ms and their ratio, plus
`kernel_ms`, the same work through the kernel's API without the shell (what the shell adds is the
difference), and `first_ms` / `first_ratio`, the shell's very first start on a new data dir (it
creates the database and spawns the agents of configs/). `cpu_ratio` and `first_cpu_ratio` compare the
processes' CPU time (user + system, all threads) instead: on a machine others are loading, wall clock
mostly measures them, CPU time much less.

    python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str], cpu: list[float] | None = None) -> float:
    """Wall time of one run in ms (its CPU time appended to `cpu`); a failing run aborts the benchmark."""
    cpu_before = _children_cpu_s()
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    if cpu is not None:
        cpu.append((_children_cpu_s() - cpu_before) * 1000)
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
        tobio_ms: list[float] = []
        baseline_ms: list[float] = []
        kernel_ms: list[float] = []
        first_ms: list[float] = []
        tobio_cpu: list[float] = []
        baseline_cpu: list[float] = []
        first_cpu: list[float] = []
        for _ in range(args.runs):
            baseline_ms.append(timed(baseline, env, baseline_cpu))
            tobio_ms.append(timed(shell, env, tobio_cpu))
            kernel_ms.append(timed(kernel, env))
            with tempfile.TemporaryDirectory(prefix="tobio-bench-new-") as new:
                first_ms.append(timed(shell, {**env, "TOBIO_DATA_DIR": new}, first_cpu))
    tobio, base, first = statistics.median(tobio_ms), statistics.median(baseline_ms), statistics.median(first_ms)
    tobio_c, base_c, first_c = statistics.median(tobio_cpu), statistics.median(baseline_cpu), statistics.median(first_cpu)
    print(json.dumps({
        "tobio_ms": round(tobio, 1),
        "baseline_ms": round(base, 1),
        "ratio": round(tobio / base, 2),
        "target_ratio": 2.0,
        "first_ms": round(first, 1),
        "first_ratio": round(first / base, 2),
        "kernel_ms": round(statistics.median(kernel_ms), 1),
        "tobio_cpu_ms": round(tobio_c, 1),
        "baseline_cpu_ms": round(base_c, 1),
        "cpu_ratio": round(tobio_c / base_c, 2),
        "first_cpu_ratio": round(first_c / base_c, 2),
        "runs": args.runs,
        "command": f'tobio-shell -c "{COMMAND}"',
        "baseline": 'python -c "import sqlalchemy"',
    }))


if __name__ == "__main__":
    main()
