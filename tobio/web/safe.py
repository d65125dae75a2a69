"""Chat text on the page: Markdown, with the HTML it renders to cleaned by Panel's own sanitizer (nh3).

An agent's reply is text a model wrote, and a model can be talked into writing `<img onerror=…>`.
Panel's Markdown pane hands raw HTML to the browser as is, so every chat message goes through here.
"""

from __future__ import annotations

import html
from typing import Any

import panel as pn
from panel.util import HTML_SANITIZER


class SafeMarkdown(pn.pane.Markdown):
    """Markdown without scripts, event handlers or javascript: links."""

    def _transform_object(self, obj: Any) -> dict[str, Any]:
        rendered = super()._transform_object(obj)
        cleaned = HTML_SANITIZER.clean(html.unescape(rendered["object"]))
        return {**rendered, "object": html.escape(cleaned)}


def render(value: Any) -> SafeMarkdown:
    """A ChatMessage renderer: every string shown in the chat becomes a SafeMarkdown pane."""
    return SafeMarkdown(value, hard_line_break=True)  # type: ignore[no-untyped-call]  # Panel's Markdown.__init__ is unannotated
