"""Several recipes in one run: each into OUT/<recipe name>/, one summary (console, summary.md, summary.json) and
one junit.xml with a suite per recipe. The exit code is the worst of the recipes (3 > 2 > 1 > 0); a recipe that
cannot be read is reported and the others still run. With `jobs > 1` recipes run in that many worker processes,
sharing the content-addressed cache (its entries are renamed into place whole, so none is ever torn).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.artifacts import write_text_atomic
from pipeline.errors import EdgeportError
from pipeline.report.console import final_line
from pipeline.report.junit import render_suites
from pipeline.report.markdown.markup import table
from pipeline.run.runner import RunOptions, run_recipe

Log = Callable[[str], None]
RECIPE_SUFFIXES = (".yaml", ".yml")


@dataclass
class RecipeOutcome:
    path: Path
    name: str
    exit_code: int
    report: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        outputs = (self.report or {}).get("outputs") or []
        return {
            "name": self.name,
            "path": str(self.path),
            "exit_code": self.exit_code,
            "passed": self.exit_code == 0,
            "seconds": round(self.seconds, 3),
            "report": f"{self.name}/report.json" if self.report else None,
            "outputs": [{"name": output["name"], "status": output["status"]} for output in outputs],
            "error": self.error,
        }


def recipe_paths(given: list[Path]) -> list[Path]:
    """Recipe files as given; a directory stands for its *.yaml / *.yml files, in name order."""
    paths: list[Path] = []
    for path in given:
        if path.is_dir():
            found = sorted(child for child in path.iterdir() if child.suffix in RECIPE_SUFFIXES)
            if not found:
                raise EdgeportError(f"{path}: a directory of recipes, but it holds no .yaml or .yml file")
            paths += found
        else:
            paths.append(path)
    return paths


def run_batch(paths: list[Path], options: RunOptions, jobs: int = 1, log: Log = print) -> dict[str, Any]:
    """Run every recipe; write the combined summary and junit.xml under `options.out_dir`; the summary dict."""
    started = time.perf_counter()
    _refuse_shared_names(paths)
    if jobs > 1:
        outcomes = _in_processes(paths, options, jobs, log)
    else:
        outcomes = [_announce(_run_one(path, options), log) for path in paths]
    outcomes.sort(key=lambda outcome: paths.index(outcome.path))
    summary = {
        "schema_version": 1,
        "exit_code": max((outcome.exit_code for outcome in outcomes), default=0),
        "seconds": round(time.perf_counter() - started, 3),
        "recipes": [outcome.to_dict() for outcome in outcomes],
    }
    summary["passed"] = summary["exit_code"] == 0
    _write(summary, outcomes, options.out_dir)
    return summary


def summary_markdown(summary: dict[str, Any]) -> str:
    rows = [
        [
            recipe["name"],
            "passed" if recipe["passed"] else f"exit {recipe['exit_code']}",
            f"{sum(o['status'] == 'passed' for o in recipe['outputs'])}/{len(recipe['outputs'])}",
            ", ".join(o["name"] for o in recipe["outputs"] if o["status"] != "passed") or recipe["error"] or "-",
        ]
        for recipe in summary["recipes"]
    ]
    verdict = "PASSED" if summary["passed"] else f"FAILED (exit code {summary['exit_code']})"
    header = f"# edgeport batch: {verdict}\n\n{len(rows)} recipes in {summary['seconds']:.1f} s\n\n"
    return header + table(["recipe", "verdict", "outputs passed", "failing"], rows) + "\n"


def _refuse_shared_names(paths: list[Path]) -> None:
    """Two recipes of one name would write into one folder: bad input, found before any work."""
    from pipeline.recipe import load_recipe

    seen: dict[str, Path] = {}
    for path in paths:
        try:
            name = load_recipe(path).spec.name
        except EdgeportError:
            continue  # reported with its own message when its turn comes
        if name in seen:
            raise EdgeportError(f"{seen[name]} and {path} are both named {name!r}: each recipe writes OUT/<name>/")
        seen[name] = path


def _run_one(path: Path, options: RunOptions) -> RecipeOutcome:
    """One recipe into OUT/<its name>/: bad input is exit 2 for this recipe only."""
    from pipeline.recipe import load_recipe

    clock = time.perf_counter()
    name = path.stem
    try:
        recipe = load_recipe(path)
        name = recipe.spec.name
        report = run_recipe(recipe, replace(options, out_dir=options.out_dir / name), log=lambda line: None)
    except EdgeportError as error:
        return RecipeOutcome(path, name, error.exit_code, error=str(error), seconds=time.perf_counter() - clock)
    return RecipeOutcome(path, name, int(report["exit_code"]), report, seconds=time.perf_counter() - clock)


def _in_processes(paths: list[Path], options: RunOptions, jobs: int, log: Log) -> list[RecipeOutcome]:
    context = multiprocessing.get_context("spawn")  # no TensorFlow state shared with the workers
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(_run_one, path, options) for path in paths]
        return [_announce(future.result(), log) for future in as_completed(futures)]


def _announce(outcome: RecipeOutcome, log: Log) -> RecipeOutcome:
    """One line a recipe as it finishes, whichever worker ran it."""
    verdict = final_line(outcome.report) if outcome.report else f"error: {outcome.error}"
    log(f"  {outcome.name}: {verdict} (exit {outcome.exit_code}, {outcome.seconds:.1f} s)")
    return outcome


def _write(summary: dict[str, Any], outcomes: list[RecipeOutcome], out_dir: Path) -> None:
    reports = [outcome.report for outcome in outcomes if outcome.report is not None]
    refused = {outcome.name: outcome.error or "" for outcome in outcomes if outcome.report is None}
    write_text_atomic(out_dir / "junit.xml", render_suites(reports, refused))
    write_text_atomic(out_dir / "summary.md", summary_markdown(summary))
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
