"""The one way commands and imports write files: confined, bounded, never over the kernel's own files.

- never the database file or its sidecars (WAL, journal), for anyone: nothing a command exports is a
  database;
- an agent writes only inside the data directory (symlinks resolved), never over an existing file
  (`--force` is the person's), never into the folders the kernel reads configuration from, and at
  most `MAX_WRITE_BYTES` per write and `MAX_AGENT_BYTES` in all per kernel;
- the person may overwrite with `--force`, except the kernel config and the agent files it loads;
- an import bounds what it writes in all with a `WriteBudget`.
The bytes go through `paths.write_file` (atomic, a symlink at the target replaced, never followed).
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from tobio.errors import CommandError
from tobio.paths import data_dir, within, write_file
from tobio.principal import Principal

if TYPE_CHECKING:
    from tobio.kernel import Kernel

MAX_WRITE_BYTES = 32 * 1024 * 1024  # one file an agent writes (a CHARX with its pictures fits)
MAX_AGENT_BYTES = 128 * 1024 * 1024  # everything one agent writes while this kernel runs
MAX_IMPORT_BYTES = 64 * 1024 * 1024  # everything one import writes (files and assets together)
_DB_SUFFIXES = ("", ".wal", "-wal", "-shm", "-journal", ".tmp", ".lock")
_written: weakref.WeakKeyDictionary[Kernel, dict[str, int]] = weakref.WeakKeyDictionary()


class WriteBudget:
    """Bytes one operation (an import) may still write; `spend` refuses with one line past the limit."""

    def __init__(self, limit: int = MAX_IMPORT_BYTES, what: str = "this import") -> None:
        self.limit, self.left, self.what = limit, limit, what

    def spend(self, size: int) -> None:
        if size > self.left:
            raise CommandError(f"{self.what} would write more than {self.limit // (1024 * 1024)} MB; stopped")
        self.left -= size


def database_files(kernel: Kernel) -> list[Path]:
    """The database file and the sidecar files its engine keeps next to it (for a file database)."""
    url = kernel.database_url
    for prefix in ("duckdb:///", "sqlite:///"):
        if url.startswith(prefix):
            path = Path(url[len(prefix):].split("?", 1)[0]).expanduser()
            return [path.with_name(path.name + suffix) for suffix in _DB_SUFFIXES]
    return []


def config_files(kernel: Kernel) -> list[Path]:
    """Files the kernel reads its configuration from: kernel.yaml and the agent files it spawns."""
    files = [Path(kernel.config_path)] if kernel.config_path else []
    try:
        files += kernel.config.agent_files()
    except (OSError, ValueError):
        pass
    return files


def config_dirs(kernel: Kernel) -> list[Path]:
    """Folders the kernel loads configuration from: those of its agent files and the usual ones under
    the config's folder (agents/, personas/, scenes/)."""
    if not kernel.config_path:
        return []
    base = Path(kernel.config.base_dir)
    return [base / "agents", base / "personas", base / "scenes"] + [f.parent for f in config_files(kernel)[1:]]


def _is_config(kernel: Kernel, path: Path) -> bool:
    if any(within(path, folder) is not None for folder in config_dirs(kernel)):
        return True
    base = Path(kernel.config.base_dir)
    at_top = kernel.config_path is not None and _resolved(path.parent) == _resolved(base)
    return (at_top and path.suffix.lower() in (".yaml", ".yml")) or _same(path, config_files(kernel))


def is_private(kernel: Kernel, path: Path) -> bool:
    """The kernel's own files, which no agent reads or writes: the database and its sidecars, the
    configuration it started from, and secrets (the web page's cookie secret, any owner-only file)."""
    from tobio.web.secret import SECRET_FILE

    if _same(path, database_files(kernel) + config_files(kernel) + [data_dir() / SECRET_FILE]):
        return True
    try:
        return path.is_file() and not path.stat().st_mode & 0o044  # readable by its owner alone: a secret
    except OSError:
        return False


def _same(path: Path, others: list[Path]) -> bool:
    resolved = _resolved(path)
    return any(resolved == _resolved(other) for other in others)


def _resolved(path: Path) -> Path:
    try:
        return Path(os.path.realpath(path.expanduser()))
    except (OSError, ValueError):
        return path


def check_target(kernel: Kernel, caller: Principal, path: str | os.PathLike[str], *, force: bool = False,
                 inside: tuple[Path, ...] = ()) -> Path:
    """Where `caller` may write `path`, resolved; raises CommandError with one line otherwise.

    `inside`: folders the command itself chose for this write (persona import's personas/), allowed to
    an agent as well as the data directory, for new files only."""
    target = Path(path).expanduser()
    if "\0" in str(target):
        raise CommandError("not a valid path")
    if _same(target, database_files(kernel)):
        raise CommandError(f"{target} is the kernel's database; nothing is exported over it")
    if caller.privileged:
        if force and _same(target, config_files(kernel)):
            raise CommandError(f"{target} is the kernel's configuration; edit it by hand")
        return target
    who = f"agent '{caller.name}'"
    if force:
        raise CommandError(f"{who} may not overwrite files (--force is for a person)")
    root = data_dir()
    resolved = within(target if target.is_absolute() else root / target, root, *inside)
    if resolved is None:
        raise CommandError(f"{who} may only write files inside the data directory ({root})")
    if is_private(kernel, resolved):
        raise CommandError(f"{who} may not write the kernel's own files ({resolved.name})")
    if not any(within(resolved, extra) for extra in inside) and _is_config(kernel, resolved):
        raise CommandError(f"{who} may not write the kernel's configuration ({resolved.name})")
    return resolved


def write_confined(kernel: Kernel, caller: Principal, path: str | os.PathLike[str], data: bytes, *,
                   force: bool = False, inside: tuple[Path, ...] = (), budget: WriteBudget | None = None) -> Path:
    """Write `data` to `path` for `caller` under the rules above; returns where it went."""
    target = check_target(kernel, caller, path, force=force, inside=inside)
    if budget is not None:
        budget.spend(len(data))
    if not caller.privileged:
        if len(data) > MAX_WRITE_BYTES:
            raise CommandError(f"agent '{caller.name}' may write at most {MAX_WRITE_BYTES // (1024 * 1024)} MB per file")
        spent = _written.setdefault(kernel, {})
        if spent.get(caller.name, 0) + len(data) > MAX_AGENT_BYTES:
            raise CommandError(f"agent '{caller.name}' has written its {MAX_AGENT_BYTES // (1024 * 1024)} MB for this run")
        spent[caller.name] = spent.get(caller.name, 0) + len(data)
    return write_file(target, data, force=force and caller.privileged)
