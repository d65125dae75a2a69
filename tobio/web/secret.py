"""The cookie secret that signs the web page's login cookie: made once, kept in the data dir, owner-only.

Kept rather than made per run so a login survives a restart of `tobio web`; kept in a file of its own
(mode 0600) so the database, the logs and the config never hold it.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from pathlib import Path

from tobio.errors import TobioError
from tobio.paths import data_dir

log = logging.getLogger(__name__)

SECRET_FILE = "web_cookie_secret"
MIN_LENGTH = 32  # characters of token_urlsafe output; anything shorter was not written by us


def cookie_secret(directory: Path | None = None) -> str:
    """The data dir's cookie secret, created on first use; replaced if others could read it."""
    path = (directory or data_dir()) / SECRET_FILE
    try:
        secret = _read(path)
    except FileNotFoundError:
        return _create(path, replace=False)
    except OSError as exc:
        raise TobioError(f"cannot read the web cookie secret {path}: {exc.strerror}") from None
    if secret is None:
        log.warning("web cookie secret %s was readable by others or malformed; made a new one (logins reset)", path)
        return _create(path, replace=True)
    return secret


def _read(path: Path) -> str | None:
    """The secret, or None when the file is unsafe (group/other bits) or not one of ours."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, encoding="ascii", errors="replace") as file:
        if os.name == "posix" and os.fstat(file.fileno()).st_mode & 0o077:
            return None
        secret = file.read(4096).strip()
    if len(secret) < MIN_LENGTH or not secret.isprintable() or " " in secret:
        return None
    return secret


def _create(path: Path, replace: bool) -> str:
    """Write a new secret atomically: a 0600 temp file, then link (never clobbers a racing writer) or replace."""
    secret = secrets.token_urlsafe(48)
    fd, tmp = tempfile.mkstemp(prefix=".web_cookie_secret.", dir=path.parent)  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(secret + "\n")
        if replace:
            os.replace(tmp, path)
            return secret
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process made it first: use theirs
            found = _read(path)
            if found is None:
                raise TobioError(f"the web cookie secret {path} is unsafe; delete it and start again") from None
            return found
        except OSError:  # no hard links on this file system
            os.replace(tmp, path)
        return secret
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
