"""The one way tests drive the command line: `python -m pipeline` in a child process, as a user runs it, with this
checkout on PYTHONPATH and any extra environment (cache folder, TMPDIR) merged over the test's own. Tests that ask
what a command imported run it through edgeport_watching instead, the same command line in the same environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conftest import ROOT


def edgeport_env(**extra: str | Path) -> dict[str, str]:
    """The environment of any Python child a test starts (edgeport or a `python -c` probe): the test's own, this
    checkout importable, and `extra` (EDGEPORT_CACHE_DIR=…)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **{name: str(value) for name, value in extra.items()}}


def edgeport_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", *map(str, args)]


def edgeport(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`edgeport ARGS` to completion, its output captured; `env` from edgeport_env (default: no extra)."""
    return subprocess.run(
        edgeport_command(*args),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env if env is not None else edgeport_env(),
        timeout=timeout,
        preexec_fn=preexec_fn,
        check=False,
    )


def start_edgeport(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`edgeport ARGS` started and left running (tests that signal or watch it), its output piped."""
    environment = env if env is not None else edgeport_env()
    return subprocess.Popen(
        edgeport_command(*args), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment
    )


# `python -m pipeline` exits inside main, so whether a command imported a module is asked by a child that calls main
# itself and answers on stderr once main returns.
_WATCHING = """\
import sys
from pipeline.cli import main
code = main(sys.argv[2:])
for name in sys.argv[1].split(","):
    print(f"imported {name}: {name in sys.modules}", file=sys.stderr)
sys.exit(code)
"""


def edgeport_watching(
    *args: str | Path,
    modules: tuple[str, ...] = ("tensorflow",),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`edgeport ARGS` to completion, its stderr ending with `imported NAME: True|False` for each of `modules`:
    how a test proves a command stays light (no TensorFlow, no user's builder module)."""
    return subprocess.run(
        [sys.executable, "-c", _WATCHING, ",".join(modules), *map(str, args)],
        capture_output=True,
        text=True,
        env=env if env is not None else edgeport_env(),
        check=False,
    )


def imported(result: subprocess.CompletedProcess[str], module: str) -> bool:
    """Whether `module` was imported when main returned, as edgeport_watching's child said; a child that never said
    (it died first) fails the test instead of reading as "not imported"."""
    lines = result.stderr.splitlines()
    for answer in (True, False):
        if f"imported {module}: {answer}" in lines:
            return answer
    raise AssertionError(f"the child never said whether it imported {module}: {result.stderr[-2000:]}")


def run_report(recipe: Path, out: Path, code: int, **options: Any) -> dict[str, Any]:
    """`edgeport run RECIPE --out OUT`, which must exit `code` without a traceback; the report.json it wrote.
    `options` go to `edgeport` (cwd, env, timeout)."""
    result = edgeport("run", recipe, "--out", out, **options)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads((out / "report.json").read_text())
