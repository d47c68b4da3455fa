"""MkDocs hooks (``hooks:`` in mkdocs.yml, MkDocs >= 1.4): pages generated from the code.

A page holding the marker line ``<!-- config-reference -->`` gets the config reference built
from minmax.config's dataclasses and comments in its place, so the site's reference is always
the code's, never a copy to keep in step by hand.
"""

from __future__ import annotations

import re
from typing import Any

from minmax import config_reference

CONFIG_MARKER = re.compile(r"^[ \t]*<!-- config-reference -->[ \t]*$", re.MULTILINE)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """The page's Markdown with each marker line replaced by the generated reference."""
    if not CONFIG_MARKER.search(markdown):
        return markdown
    reference = config_reference.markdown().rstrip("\n")
    return CONFIG_MARKER.sub(lambda _: reference, markdown)
