"""Where Tobio keeps its files: the user data dir (platformdirs) and config discovery."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "tobio"


def data_dir() -> Path:
    """The user data dir; `TOBIO_DATA_DIR` overrides it (tests point it at a temp dir)."""
    override = os.environ.get("TOBIO_DATA_DIR")
    if override:
        path = Path(override)
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Files Tobio can always rebuild (converted models, YAML parses): `TOBIO_CACHE_DIR`, else the user cache
    dir (e.g. ~/.cache/tobio). Not created here: each user makes its own subfolder when it writes."""
    override = os.environ.get("TOBIO_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP_NAME, appauthor=False))


def default_database_url() -> str:
    """DuckDB file in the user data dir: the default when the config names no database."""
    return f"duckdb:///{data_dir() / 'tobio.duckdb'}"


def find_config(explicit: str | os.PathLike[str] | None = None, installed: bool = False) -> Path | None:
    """The kernel config to use: `--config`, then `TOBIO_CONFIG`, then ./configs/kernel.yaml; with
    `installed` (the front ends), then the user's own copy of the default configs (`user_configs`).

    Returns None when nothing is found; the kernel then runs on built-in defaults.
    """
    for candidate in (explicit, os.environ.get("TOBIO_CONFIG")):
        if candidate:
            path = Path(candidate).expanduser()
            if path.is_dir():
                path = path / "kernel.yaml"
            return path
    local = Path.cwd() / "configs" / "kernel.yaml"
    if local.exists():
        return local
    return user_configs() / "kernel.yaml" if installed else None


def user_configs() -> Path:
    """`configs/` in the user data dir, copied once from the defaults packaged with Tobio.

    A `pip install`ed tobio-shell has no checkout to read ./configs from; the copy gives it the default
    persona and models, and a folder the user may edit where imported personas are written too (inside
    the data dir, never inside the installed package).
    """
    import shutil

    target = data_dir() / "configs"
    if not (target / "kernel.yaml").exists():
        packaged = Path(__file__).resolve().parent / "default_configs"
        shutil.copytree(packaged, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))
    return target


def slug(name: str, fallback: str = "persona", max_length: int = 64) -> str:
    """A safe file stem and key: lower-case ASCII letters, digits, `-` and `_`; never `..` or a path."""
    import re
    import unicodedata

    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^a-z0-9_-]+", "-", ascii_name.lower()).strip("-_")[:max_length].strip("-_")
    return text or fallback


def within(path: str | os.PathLike[str], *roots: str | os.PathLike[str]) -> Path | None:
    """`path` resolved (symlinks followed) when it lies inside one of `roots`, else None."""
    try:
        target = Path(path).expanduser().resolve()
        bases = [Path(root).expanduser().resolve() for root in roots]
    except (OSError, RuntimeError, ValueError):
        return None
    return target if any(target == base or target.is_relative_to(base) for base in bases) else None


def write_file(path: str | os.PathLike[str], data: bytes, *, force: bool = False) -> Path:
    """Write `data` to `path` atomically; an existing file (or symlink) is replaced only with `force`.

    The bytes go to a temporary file in the same folder that then replaces `path`, so a symlink at
    `path` is replaced, never written through, and a reader never sees half a file.
    """
    import tempfile

    from tobio.errors import CommandError

    target = Path(path)
    if (target.exists() or target.is_symlink()) and not force:
        raise CommandError(f"{target} already exists (add --force to overwrite it)")
    if target.is_dir():
        raise CommandError(f"{target} is a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise CommandError(f"cannot write {target} ({exc.strerror or type(exc).__name__})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, 0o644)  # mkstemp makes 0600; a persona file or card is an ordinary file
        if force:
            os.replace(temp, target)
        else:
            try:
                os.link(temp, target)  # fails if anything appeared there meanwhile: no check-then-write race
            except FileExistsError:
                raise CommandError(f"{target} already exists (add --force to overwrite it)") from None
            except OSError:  # a filesystem without hard links
                if target.exists() or target.is_symlink():
                    raise CommandError(f"{target} already exists (add --force to overwrite it)") from None
                os.replace(temp, target)
    except OSError as exc:
        raise CommandError(f"cannot write {target} ({exc.strerror or type(exc).__name__})") from None
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return target
