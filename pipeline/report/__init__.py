"""The report registry: every format a run writes, rendered from the one report dict."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.report import html, junit, markdown
from pipeline.report import json as json_report

Writer = Callable[[dict[str, Any], Path], Path]

# report.json goes last: its presence means every other file of the run is complete.
REPORTS: dict[str, Writer] = {
    "markdown": markdown.write,
    "html": html.write,
    "junit": junit.write,
    "json": json_report.write,
}
REPORT_FILES = ("report.json", "report.md", "report.html", "junit.xml")


def write_reports(report: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [writer(report, out_dir) for writer in REPORTS.values()]
    _append_step_summary(out_dir / "report.md")
    return written


def _append_step_summary(markdown_path: Path) -> None:
    """On GitHub Actions, the job's summary page shows report.md: the reader needs no artifact download."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return
    with open(summary, "a", encoding="utf-8") as file:  # appended: other steps write there too
        file.write(markdown_path.read_text(encoding="utf-8") + "\n")
