"""What a command returns: text and/or a table, plus JSON-able data. Front ends choose how to show it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from tobio.errors import TobioError

if TYPE_CHECKING:
    from tobio.commands.tree import Group


def cell(value: Any) -> str:
    """A table cell as text, the same for every front end."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


@dataclass
class Result:
    """A command's structured output."""

    text: str | None = None
    columns: list[str] | None = None
    rows: list[tuple[Any, ...]] | None = None
    title: str | None = None
    note: str | None = None
    data: Any = None
    enter: Group | None = field(default=None, repr=False)

    @property
    def is_table(self) -> bool:
        return self.columns is not None

    def records(self) -> list[dict[str, Any]]:
        """Rows as dicts keyed by column."""
        return [dict(zip(self.columns or [], row)) for row in self.rows or []]

    def to_json(self) -> Any:
        """The machine-readable form printed by `--json`."""
        if self.data is not None:
            return _jsonable(self.data)
        if self.is_table:
            return _jsonable(self.records())
        return {"text": self.text}

    def to_plain(self) -> str:
        """Aligned plain text, for pipes, scripts and logs."""
        parts = []
        if self.title:
            parts.append(self.title)
        if self.text:
            parts.append(self.text)
        if self.is_table:
            columns = self.columns or []
            cells = [[cell(v) for v in row] for row in self.rows or []]
            widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

            def fmt(row: list[str]) -> str:
                return "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()

            parts.append("\n".join([fmt(columns)] + [fmt(r) for r in cells]))
        if self.note:
            parts.append(f"({self.note})")
        return "\n".join(parts)

    def to_pandas(self) -> Any:
        """Rows as a DataFrame (Jupyter), for those who have pandas: Tobio itself does not need it."""
        try:
            import pandas as pd
        except ImportError:
            raise TobioError("to_pandas() needs pandas, which Tobio does not install: pip install pandas") from None

        return pd.DataFrame.from_records(self.rows or [], columns=self.columns)

    def _repr_html_(self) -> str:
        import html  # notebooks only: html.entities is ~1 ms a start for every one-shot command

        parts = []
        if self.title:
            parts.append(f"<b>{html.escape(self.title)}</b>")
        if self.text:
            parts.append(f"<pre>{html.escape(self.text)}</pre>")
        if self.is_table:
            head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns or [])
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>" for row in self.rows or []
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        if self.note:
            parts.append(f"<i>{html.escape(self.note)}</i>")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.to_plain()


def table(columns: list[str], rows: list[tuple[Any, ...]] | list[list[Any]], **kw: Any) -> Result:
    """Shorthand for a tabular result."""
    return Result(columns=list(columns), rows=[tuple(r) for r in rows], **kw)
