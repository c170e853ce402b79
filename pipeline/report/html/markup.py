"""HTML escaping and table markup shared by the report.html modules; knows nothing of a report's content."""

from __future__ import annotations

from html import escape
from typing import Any


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def td(text: Any, cls: str = "", raw: bool = False) -> str:
    """One cell; `text` is escaped unless `raw` says it is already markup."""
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{text if raw else e(text)}</td>"


def table(header: list[str], rows: list[list[str]], table_id: str = "") -> str:
    """A table from already rendered `<td>` cells."""
    attr = f' id="{e(table_id)}"' if table_id else ""
    # <wbr> lets `reference_accuracy` wrap at its underscore, so a wide summary still fits the page.
    head = "<tr>" + "".join(f"<th>{e(title).replace('_', '_<wbr>')}</th>" for title in header) + "</tr>"
    body = "\n".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table{attr}>\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table>"
