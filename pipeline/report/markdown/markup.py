"""Markdown escaping and table markup for report.md; knows nothing of a report's content."""

from __future__ import annotations

import re
from typing import Any

from pipeline.core.text import one_line, printable

_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")  # `<script`, `</b`, `<!--`; leaves `<=` alone


def cell(value: Any) -> str:
    """Text safe inside a table cell: no pipes, no line breaks, nothing a renderer takes for a tag, no control
    character (the batch's summary.md is made of cells, outside report.md's own escaping)."""
    text = _TAG_START.sub("&lt;", printable(value).replace("\\", "\\\\").replace("|", "\\|"))
    return text.replace("\n", "<br>")


def code(value: Any) -> str:
    """Inline code on one line: a newline in a tensor name or path would end it and start Markdown of its own."""
    text = one_line(value)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(cell(title) for title in header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def longest_backtick_run(text: str) -> int:
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return longest
