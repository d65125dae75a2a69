"""What the embedded runtime needs from the CPU, checked before llama.cpp is imported.

Tobio builds llama.cpp for a portable x86-64 baseline (AVX2, FMA, F16C; see `./dev`). On an older CPU
that library would die with "Illegal instruction" somewhere inside a model call; we say so up front.
"""

from __future__ import annotations

import platform
from pathlib import Path

from tobio.errors import ProviderSetupError

REQUIRED_X86_FLAGS = ("avx", "avx2", "fma", "f16c")


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first processor in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def missing_cpu_features(machine: str | None = None, cpuinfo: str | None = None) -> list[str]:
    """The baseline features this x86-64 CPU lacks (empty when it has them all, or when we cannot tell)."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return []
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return []  # not Linux: nothing to read, so trust the build
    flags = cpu_flags(cpuinfo)
    if not flags:
        return []
    return [f for f in REQUIRED_X86_FLAGS if f not in flags]


def require_cpu_baseline() -> None:
    """Raise a one-line error when the embedded model cannot run on this CPU."""
    missing = missing_cpu_features()
    if missing:
        raise ProviderSetupError(
            f"this CPU lacks {', '.join(m.upper() for m in missing)}, which the embedded model's llama.cpp build "
            "needs (x86-64 with AVX2); use a model server instead: --model http://HOST:PORT/v1"
        )
