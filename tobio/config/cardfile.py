"""Reading a Character Card file: JSON, or the base64 text chunk of a PNG (`ccv3` or `chara`).

Core, not persona: lorebooks come in card PNGs too, and each reader of untrusted files gets the same caps
(file size, chunk count, inflation, JSON depth).
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tobio.config import jsondata
from tobio.config.files import read_bytes
from tobio.config.limits import MAX_CARD_TEXT_BYTES, MAX_IMPORT_BYTES, MAX_PNG_CHUNKS, MAX_TOTAL_TEXT_BYTES
from tobio.errors import ConfigError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_CARD_KEYS = ("ccv3", "chara")  # in order of preference: V3 says to use `ccv3` when both are there


def png_chunks(blob: bytes, source: object) -> Iterator[tuple[bytes, bytes]]:
    """(type, body) of each chunk up to IEND; CRCs are not checked, as image viewers don't either.

    A generator, so a file of millions of empty chunks costs no memory; their number is capped anyway,
    and text chunks together may hold at most MAX_TOTAL_TEXT_BYTES, compressed or not.
    """
    if not blob.startswith(PNG_SIGNATURE):
        raise ConfigError(f"{source}: not a PNG file")
    pos, text, count = len(PNG_SIGNATURE), 0, 0
    while pos < len(blob):
        if pos + 12 > len(blob):
            raise ConfigError(f"{source}: truncated PNG")
        length, kind = struct.unpack_from(">I4s", blob, pos)
        if pos + 12 + length > len(blob):
            raise ConfigError(f"{source}: truncated PNG ({kind.decode('latin-1')} chunk)")
        count += 1
        if count > MAX_PNG_CHUNKS:
            raise ConfigError(f"{source}: too many PNG chunks (more than {MAX_PNG_CHUNKS})")
        if kind in _TEXT_CHUNKS:
            text += length
            if text > MAX_TOTAL_TEXT_BYTES:
                raise ConfigError(f"{source}: PNG text chunks too large (more than {MAX_TOTAL_TEXT_BYTES >> 20} MB)")
        yield kind, blob[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IEND":
            break


def is_card_chunk(kind: bytes, body: bytes) -> bool:
    return kind in _TEXT_CHUNKS and body.partition(b"\0")[0].decode("latin-1") in _CARD_KEYS


class _TooLarge(Exception):
    """A compressed chunk inflates past its cap."""


def _inflate(data: bytes, limit: int) -> bytes:
    """zlib data inflated to at most `limit` bytes: a small chunk cannot become gigabytes."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise _TooLarge
    return out


def _chunk_text(kind: bytes, body: bytes, limit: int = MAX_CARD_TEXT_BYTES) -> tuple[str, str]:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk, inflated to at most `limit` bytes."""
    keyword, _, rest = body.partition(b"\0")
    if kind == b"zTXt":
        rest = _inflate(rest[1:], limit)
    elif kind == b"iTXt":
        compressed, rest = rest[0], rest[2:].split(b"\0", 2)[2]  # skip method, language tag, translated keyword
        return keyword.decode("latin-1"), (_inflate(rest, limit) if compressed else rest).decode("utf-8")
    return keyword.decode("latin-1"), rest.decode("latin-1")


def _png_card_text(blob: bytes, source: object) -> tuple[str, str]:
    """(chunk keyword, base64 text) of the card in a PNG, preferring `ccv3` to `chara`."""
    texts: dict[str, str] = {}
    budget = MAX_TOTAL_TEXT_BYTES
    for kind, body in png_chunks(blob, source):
        if is_card_chunk(kind, body):
            try:
                keyword, text = _chunk_text(kind, body, min(MAX_CARD_TEXT_BYTES, budget))
            except _TooLarge:
                raise ConfigError(
                    f"{source}: {kind.decode()} chunk too large once decompressed "
                    f"(more than {min(MAX_CARD_TEXT_BYTES, budget) >> 20} MB)"
                ) from None
            except (zlib.error, IndexError, UnicodeDecodeError):
                raise ConfigError(f"{source}: corrupt {kind.decode()} chunk in PNG") from None
            budget -= len(text)
            texts.setdefault(keyword, text)
    for key in _CARD_KEYS:
        if key in texts:
            return key, texts[key]
    raise ConfigError(f"{source}: PNG holds no character card (no 'chara' or 'ccv3' text chunk)")


def read_card(path: str | Path) -> dict[str, Any]:
    """The raw card JSON of a .json file, or of a PNG's `ccv3` or `chara` chunk (size, depth and inflation capped)."""
    file = Path(path)
    blob = read_bytes(file, MAX_IMPORT_BYTES)
    what = "the file"
    if blob.startswith(PNG_SIGNATURE) or file.suffix.lower() == ".png":
        key, text = _png_card_text(blob, file)
        what = f"the '{key}' chunk"
        try:
            blob = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{file}: {what} is not valid base64") from None
    try:
        decoded = blob.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: {what} is not valid JSON (not UTF-8)") from None
    card = jsondata.loads(decoded, f"{file}: {what}")
    if not isinstance(card, dict):
        raise ConfigError(f"{file}: {what} holds a JSON {type(card).__name__}, not a Character Card object")
    return card
