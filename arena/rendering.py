"""Model output is untrusted text: rendered as markdown, then sanitised, never trusted as HTML."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

# html=False makes markdown-it escape any raw HTML in the text; nh3 is the second wall for what markdown makes.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table").enable("strikethrough")

_ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "code", "pre", "blockquote",
    "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "a", "img",
}
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"alt", "title"}, "ol": {"start"}, "th": {"style"}, "td": {"style"}, "code": {"class"}}


def render_markdown(text: str) -> str:
    html = _markdown.render(text)
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener noreferrer",
        filter_style_properties={"text-align"},
    )
