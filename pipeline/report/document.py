"""The report dict (report.json, schema_version 1) that every format renders; built by `run` and `compare`."""

from __future__ import annotations

import platform
from datetime import datetime
from typing import Any

from pipeline import __version__
from pipeline.core.cpu import cpu_info
from pipeline.core.toolchain import package_versions

SCHEMA_VERSION = 1


def exit_code_of(outputs: list[dict[str, Any]]) -> int:
    """3 when any output could not be produced or run, else 1 when any gate failed, else 0."""
    statuses = {output["status"] for output in outputs}
    return 3 if "error" in statuses else 1 if "failed" in statuses else 0


def settle_verdict(report: dict[str, Any]) -> dict[str, Any]:
    """Set `passed` and `exit_code` from the outputs' statuses: the one place the exit code is decided."""
    code = exit_code_of(report.get("outputs") or [])
    report["passed"], report["exit_code"] = code == 0, code
    return report


def build_report(
    recipe: dict[str, Any],
    source: dict[str, Any],
    data: dict[str, Any],
    outputs: list[dict[str, Any]],
    started: datetime,
    seconds: float,
) -> dict[str, Any]:
    """The report without its verdict, from output entries written once every gate was in (a baseline's and a
    rebuild's too): `settle_verdict` then sets `passed` and `exit_code` from their statuses."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "edgeport", "version": __version__},
        "recipe": recipe,
        "passed": None,
        "exit_code": None,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "source": source,
        "environment": environment(),
        "data": data,
        "outputs": outputs,
    }


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "packages": package_versions(),
    }
