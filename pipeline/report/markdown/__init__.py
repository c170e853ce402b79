"""report.md: the table a person reads in a CI log or a job summary; `render` is the registered writer."""

from typing import Any

from pipeline.core.text import printable
from pipeline.report.markdown import page


def render(report: dict[str, Any]) -> str:
    """The page with every control character of a model's names, paths and messages escaped (core.text)."""
    return printable(page.render(report))


__all__ = ["render"]
