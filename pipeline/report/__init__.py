"""The report registry: every file a run writes, as (filename, render) over the one report dict."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.artifacts import write_text_atomic
from pipeline.report import html, junit, markdown
from pipeline.report import json as json_report

Render = Callable[[dict[str, Any]], str]

# report.json goes last: its presence means every other file of the run is complete.
REPORTS: tuple[tuple[str, Render], ...] = (
    ("report.md", markdown.render),
    ("report.html", html.render),
    ("junit.xml", junit.render),
    ("report.json", json_report.render),
)
REPORT_FILES = tuple(filename for filename, _ in REPORTS)


def write_report(filename: str, report: dict[str, Any], out_dir: Path) -> Path:
    """One registered report file, written atomically."""
    render = dict(REPORTS)[filename]
    path = Path(out_dir) / filename
    write_text_atomic(path, render(report))
    return path


def write_reports(report: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_report(filename, report, out_dir) for filename, _ in REPORTS]
    _append_step_summary(out_dir / "report.md")
    return written


def _append_step_summary(markdown_path: Path) -> None:
    """On GitHub Actions, the job's summary page shows report.md: the reader needs no artifact download."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return
    with open(summary, "a", encoding="utf-8") as file:  # appended: other steps write there too
        file.write(markdown_path.read_text(encoding="utf-8") + "\n")
