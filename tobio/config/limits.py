"""Bounds on everything read from files and command lines, so hostile input fails fast with one line.

The numbers are generous for real use (a persona file is a few KB, a card PNG a few MB) and small
enough that the worst input costs milliseconds and a few MB of memory, never a hang.
"""

from __future__ import annotations

MAX_YAML_BYTES = 4 * 1024 * 1024  # a kernel config, agent or persona file
MAX_IMPORT_BYTES = 32 * 1024 * 1024  # a Character Card: a portrait PNG with the card inside
MAX_CARD_TEXT_BYTES = 8 * 1024 * 1024  # one decompressed tEXt/zTXt/iTXt chunk
MAX_TOTAL_TEXT_BYTES = 16 * 1024 * 1024  # all of a PNG's text chunks together, decompressed
MAX_DEPTH = 64  # nesting of YAML and JSON data (cards, persona files, JSON arguments)
MAX_YAML_ALIASES = 256  # `*alias` references in one YAML document
MAX_YAML_NODES = 200_000  # values built from one YAML document, aliases expanded
MAX_LINE_CHARS = 1024 * 1024  # one command line
THREAD_PARSE_CHARS = 64 * 1024  # longer lines are parsed off the kernel's loop
INT_MAX = 2**31 - 1  # default upper bound of an integer command argument
MAX_OPTION_WORDS = 64  # words that look like options in one command line (argparse is quadratic in them)
MAX_PNG_CHUNKS = 20_000  # chunks in one PNG (real images have a few, or a few thousand IDAT pieces)
