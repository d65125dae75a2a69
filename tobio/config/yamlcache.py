"""A parse cache for YAML files, so a start that reads the same unchanged configs imports no PyYAML.

An entry holds a file's composed tree *before* ${VAR} expansion and before `!include` is followed:
each value as the builder constructed it (a string as written) with its line and column. Expansion and
includes happen again at every load, so no secret from the environment is ever written here. Entries
are JSON, keyed by the file's resolved path, inode, size and mtime; anything unreadable or mismatched
is ignored and the file parsed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from tobio import paths

FORMAT = 1  # bump when the stored tree or the checks a stored tree has passed change
MAX_CACHED_FILE_BYTES = 256 * 1024  # a config is a few KB; bigger files are parsed every time
MAX_ENTRY_BYTES = 2 * 1024 * 1024  # aliases expanded, an entry can outgrow its file
RACY_NS = 2_000_000_000  # an mtime this close to now may hide a same-size edit in the same granule


def cache_dir() -> Path:
    """`cache/yaml` in the data dir when `TOBIO_DATA_DIR` is set (tests, portable installs), else `yaml/` in
    Tobio's cache dir (`TOBIO_CACHE_DIR`, else ~/.cache/tobio), beside the converted models."""
    override = os.environ.get("TOBIO_DATA_DIR")
    if override:
        return Path(override) / "cache" / "yaml"
    return paths.cache_dir() / "yaml"


class Key:
    """What an entry must match: the file as stat'ed before it is read."""

    def __init__(self, path: str, trusted: bool, st: os.stat_result) -> None:
        self.path, self.trusted = path, trusted
        self.fields = {"format": FORMAT, "path": path, "trusted": trusted, "mtime_ns": st.st_mtime_ns,
                       "size": st.st_size, "ino": st.st_ino, "dev": st.st_dev}
        self.mtime_ns = st.st_mtime_ns

    def entry_file(self) -> Path:
        digest = hashlib.sha256(f"{FORMAT}\0{int(self.trusted)}\0{self.path}".encode("utf-8", "surrogatepass"))
        return cache_dir() / f"{digest.hexdigest()[:40]}.json"


def key_for(file: Path, trusted: bool) -> Key | None:
    """The cache key of a readable regular file small enough to cache, else None (then the file is just parsed)."""
    try:
        st = os.stat(file)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_CACHED_FILE_BYTES or not os.access(file, os.R_OK):
            return None
        return Key(str(file.resolve()), trusted, st)
    except (OSError, ValueError, RuntimeError):
        return None


def lookup(key: Key) -> tuple[bool, Any]:
    """(True, tree) when a matching entry exists; (False, None) on any miss, corrupt or unreadable entry."""
    try:
        with open(key.entry_file(), "rb") as handle:
            blob = handle.read(MAX_ENTRY_BYTES + 1)
        if len(blob) > MAX_ENTRY_BYTES:
            return False, None
        entry = json.loads(blob)
        if not isinstance(entry, dict) or "tree" not in entry:
            return False, None
        if any(entry.get(name) != value or type(entry.get(name)) is not type(value) for name, value in key.fields.items()):
            return False, None
        return True, entry["tree"]
    except (OSError, ValueError, RecursionError):
        return False, None


def store(key: Key, tree: Any) -> None:
    """Write an entry atomically; silently nothing when the folder is read-only or the file was just edited."""
    if abs(time.time_ns() - key.mtime_ns) < RACY_NS:
        return
    try:
        blob = json.dumps({**key.fields, "tree": tree}, separators=(",", ":")).encode()
    except (ValueError, TypeError, RecursionError):  # an int past str()'s digit limit
        return
    if len(blob) > MAX_ENTRY_BYTES:
        return
    target = key.entry_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
        try:
            with open(fd, "wb") as handle:
                handle.write(blob)
            os.replace(temp, target)
        except BaseException:
            os.unlink(temp)
            raise
    except OSError:
        return
