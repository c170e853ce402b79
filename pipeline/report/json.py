"""report.json: the machine-readable record of a run (schema_version 1); the other formats render it, and
`--baseline` and `verify` read it back.

A report.json read back is the user's input, and may be an attacker's: `read_report` checks the shape of every
field those commands read (types, names free of control characters, numbers a float can hold) and refuses the
file with exit 2 naming the field, before any work. Fields they do not read are not checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.stored import regular_file_problem
from pipeline.core.text import is_one_line, one_line
from pipeline.errors import EdgeportError

MAX_BYTES = 256 << 20  # a report of thousands of outputs is a few MiB; more is no report, and would fill memory
_NAME_CHARS = 1000


def render(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, allow_nan=False) + "\n"


def read_report(path: Path, given_as: str) -> dict[str, Any]:
    """An earlier run's report.json, or EdgeportError (exit 2) naming the file and the option that gave it
    (`--baseline`, `--report`), and the field at fault; cheap enough to call before a run."""
    problem = regular_file_problem(path)
    if problem is not None:  # a FIFO would block the read, a device never end
        raise EdgeportError(f"{given_as} {path} is {problem}; expected a report.json")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise EdgeportError(f"{given_as} {path}: {size} bytes is too large for a report.json (at most {MAX_BYTES})")
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeportError(f"{given_as} {path}: no such file") from None
    # ValueError: an integer of more digits than Python parses; RecursionError: arrays nested thousands deep.
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        reason = "nested too deep" if isinstance(error, RecursionError) else str(error)[:300]
        raise EdgeportError(f"{given_as} {path}: not a readable report.json ({reason})") from None
    if not isinstance(report, dict) or not isinstance(report.get("outputs"), list):
        raise EdgeportError(f"{given_as} {path}: not an edgeport report.json (no 'outputs' list)")
    fault = report_fault(report)
    if fault is not None:
        raise EdgeportError(f"{given_as} {path}: not an edgeport report.json: {fault}")
    return report


class _Fault(Exception):
    """Where a report read back departs from what `verify` and `--baseline` read, and how."""


def report_fault(report: dict[str, Any]) -> str | None:
    """`outputs[2].parity.metrics.max_abs is a list, expected a number`: the first field `verify` or `--baseline`
    would read that has the wrong shape; None when every one has the right one."""
    try:
        _section(report, "recipe", {"name": _name})
        _section(report, "source", {"sha256": _name})
        _field(report, "started", _name, "")
        for index, output in enumerate(report["outputs"]):
            _output(output, f"outputs[{index}]")
    except _Fault as fault:
        return str(fault)
    return None


def _output(output: Any, where: str) -> None:
    if not isinstance(output, dict):
        raise _Fault(f"{where} is {_kind(output)}, expected an object")
    _field(output, "name", _name, where, required=True)
    for key in ("status", "sha256"):
        _field(output, key, _name, where)
    _field(output, "error", _text, where)
    provenance = _section(output, "provenance", {}, where)
    for key in provenance:
        _field(provenance, key, _scalar, f"{where}.provenance")
    parity = _section(output, "parity", {"metrics": _object, "gates": _list}, where)
    metrics = parity.get("metrics") or {}
    for metric in metrics:
        _field(metrics, metric, _number, f"{where}.parity.metrics")
    for number, gate in enumerate(parity.get("gates") or []):
        at = f"{where}.parity.gates[{number}]"
        if not isinstance(gate, dict):
            raise _Fault(f"{at} is {_kind(gate)}, expected an object")
        for key, check in (("metric", _name), ("op", _name), ("value", _number), ("threshold", _number)):
            _field(gate, key, check, at)


def _section(parent: dict[str, Any], key: str, fields: dict[str, Callable[[Any], str | None]], where: str = "") -> Any:
    """An optional object and the fields of it that are read; {} when absent."""
    value = parent.get(key)
    if value is None:
        return {}
    at = f"{where}.{key}" if where else key
    if not isinstance(value, dict):
        raise _Fault(f"{at} is {_kind(value)}, expected an object")
    for name, check in fields.items():
        _field(value, name, check, at)
    return value


def _field(
    parent: dict[str, Any], key: str, check: Callable[[Any], str | None], where: str, required: bool = False
) -> None:
    at = f"{where}.{key}" if where else key
    if key not in parent or parent[key] is None:
        if required:
            raise _Fault(f"{at} is missing")
        return
    problem = check(parent[key])
    if problem is not None:
        raise _Fault(f"{_shown(at)} {problem}")


def _name(value: Any) -> str | None:
    """A name or hash the commands print and match on: one short line of printable text."""
    if not isinstance(value, str):
        return f"is {_kind(value)}, expected a string"
    if len(value) > _NAME_CHARS:
        return f"is {len(value)} characters long, expected at most {_NAME_CHARS}"
    return None if is_one_line(value) else "holds control characters"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) else f"is {_kind(value)}, expected a string"


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"is {_kind(value)}, expected an object"


def _list(value: Any) -> str | None:
    return None if isinstance(value, list) else f"is {_kind(value)}, expected a list"


def _scalar(value: Any) -> str | None:
    """A provenance field: a string, a flag, or the list of stage labels."""
    if isinstance(value, list):
        return next((_name(item) for item in value if _name(item) is not None), None)
    return None if isinstance(value, bool) else _name(value)


def _number(value: Any) -> str | None:
    """A metric as the report writes it: a number a float holds, or the strings of a non-finite one."""
    if isinstance(value, str):
        return None if value in ("nan", "inf", "-inf") else f"is the string {value[:40]!r}, expected a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"is {_kind(value)}, expected a number"
    try:
        float(value)
    except OverflowError:
        return "is an integer larger than a float holds"
    return None


def _kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def _shown(at: str) -> str:
    """A field's path as printed: its keys came from the file, so control characters in them are escaped."""
    return one_line(at[:200])
