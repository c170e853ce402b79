"""report.html: one self-contained page (inline CSS and SVG, no scripts); `render` is the registered writer."""

from typing import Any

from pipeline.core.text import printable
from pipeline.report.html import page


def render(report: dict[str, Any]) -> str:
    """The page with every control character of a model's names, paths and messages escaped (core.text): HTML
    escaping alone leaves ESC and NUL raw, and a page saved as text or piped to a terminal shows them."""
    return printable(page.render(report))


__all__ = ["render"]
