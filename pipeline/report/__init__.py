"""The report registry: every file a run writes, as (filename, render) over the one report dict, and their
writing, all or nothing: a run that cannot write one of them leaves none (a lone report.md saying PASSED would
pass for a finished run)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.artifacts import ordinary_mode, write_text_atomic
from pipeline.core.leftovers import partial_pattern, partial_prefix, sweep
from pipeline.errors import EdgeportError, first_line
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


class ReportWriteError(EdgeportError):
    """The reports could not be written (a full disk, a read-only folder); none was left behind."""

    exit_code = 3


def write_reports(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Every report file, or none: each is rendered, then written under a temporary name, and only then are they
    renamed into place (report.json last). A failure removes what it had written; ReportWriteError says why."""
    texts = {filename: render(report).encode("utf-8") for filename, render in REPORTS}
    staged: dict[str, str] = {}
    placed: list[Path] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for filename, data in texts.items():
            staged[filename] = _staged(out_dir / filename, data)
        for filename, tmp in staged.items():
            os.replace(tmp, out_dir / filename)
            placed.append(out_dir / filename)
    except BaseException as error:  # Ctrl-C or SIGTERM between two renames too: no half set of reports
        for path in [*placed, *map(Path, staged.values())]:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        if not isinstance(error, OSError):
            raise
        reason = first_line(error)
        raise ReportWriteError(f"could not write the reports to {out_dir}: {reason}; no report was written") from None
    _append_step_summary(out_dir / "report.md")
    return placed


def _staged(path: Path, data: bytes) -> str:
    """`data` in a new file beside `path` (named after it and this process, for core.leftovers), synced; its name."""
    sweep(path.parent, partial_pattern(path.name))  # what a run killed while writing left
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=partial_prefix(path.name), suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), ordinary_mode())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _append_step_summary(markdown_path: Path) -> None:
    """On GitHub Actions, the job's summary page shows report.md: the reader needs no artifact download."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return
    with open(summary, "a", encoding="utf-8") as file:  # appended: other steps write there too
        file.write(markdown_path.read_text(encoding="utf-8") + "\n")
