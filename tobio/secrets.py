"""Redaction of secrets wherever values are stored or shown: params, URLs, log lines, errors.

Keys belong in provider `api_key:` (a SecretStr read from the environment), but users also put them
in headers, params and URLs. Anything named like a credential, any `Authorization`-style value and any
credential inside a URL is replaced before it reaches the database, a table or a log line.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

REDACTED = "***"
_SAYS_NOTHING = frozenset({"", "set", "not set", REDACTED})  # what describe() shows in place of a key
# Words that make a name hold a credential: api_key, X-Api-Key, Authorization, access_token, password, ...
# Whole words only, so max_tokens and prompt_tokens (counts) stay visible.
SECRET_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "pwd", "authorization", "auth",
                          "cookie", "credential", "credentials", "session", "bearer", "signature"})
# Compiled on first use (re's cache), as a plain command's start never uses it: ~1.3 M instructions a pattern.
_WORD = r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])"
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE)
_KEYLIKE = re.compile(r"\b(sk|pk|rk|ghp|gho|ghs|xox[abpr]|hf|AKIA)[-_][A-Za-z0-9_-]{12,}|\bsk-[A-Za-z0-9]{16,}")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a key, header or parameter name suggests a credential."""
    return any(word.lower() in SECRET_WORDS for word in re.findall(_WORD, name))


def redact_url(url: str) -> str:
    """The URL with its password, and the values of credential-named query parameters, replaced."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None or (parts.username and "@" in netloc):
            host = netloc.rpartition("@")[2]
            netloc = f"{REDACTED}@{host}"
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in query):
            query_text = "&".join(f"{k}={REDACTED if is_secret_name(k) else v}" for k, v in query)
        else:
            query_text = parts.query
        if netloc == parts.netloc and query_text == parts.query:
            return url  # nothing secret: as written (urlunsplit would turn duckdb:///x into duckdb:/x)
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query_text, parts.fragment))
    except ValueError:  # not a URL after all (a bad port, say): keep the scheme only
        return url.split("://", 1)[0] + "://" + REDACTED


def redact_text(text: str) -> str:
    """Free text (a log line, an error) with bearer tokens, key-like strings and URL credentials hidden."""
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _KEYLIKE.sub(REDACTED, text)


_SECRET_FLAG = r"(--?([A-Za-z0-9][\w-]*))(=|\s+)('[^']*'|\"[^\"]*\"|\S+)"
_SECRET_ASSIGN = r"\b([A-Za-z_][\w-]*)(\s*[:=]\s*)('[^']*'|\"[^\"]*\"|[^\s,;&]+)"


def redact_command(line: str) -> str:
    """A command line with the values of credential-named flags and assignments (`--api-key X`,
    `--token=X`, `password: X`, `OPENAI_API_KEY=X`) hidden, then `redact_text`: what a shell history
    or a transcript may keep of a line someone typed."""
    line = re.sub(_SECRET_FLAG, lambda m: f"{m.group(1)}{m.group(3)}{REDACTED}" if is_secret_name(m.group(2)) else m.group(0), line)
    line = re.sub(_SECRET_ASSIGN, lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}" if is_secret_name(m.group(1)) else m.group(0), line)
    return redact_text(line)


def _says_nothing(value: Any) -> bool:
    return value is None or isinstance(value, bool) or (isinstance(value, str) and value in _SAYS_NOTHING)


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of a JSON-like value in which credential-named entries and credential-looking strings are hidden."""
    if _depth > 32:
        return REDACTED  # deeper than any real config: do not recurse without bound
    if isinstance(value, Mapping):
        return {k: (REDACTED if isinstance(k, str) and is_secret_name(k) and not _says_nothing(v)
                    else redact(v, _depth + 1)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, _depth + 1) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value
