"""Several recipes in one run: each into OUT/<recipe name>/, one summary (console, summary.md, summary.json) and
one junit.xml with a suite per recipe. The exit code is the worst of the recipes (3 > 2 > 1 > 0); a recipe that
cannot be read, or whose worker died, is reported and the others still run. Where the recipes run (this process,
`jobs` local processes, a Dask cluster) is pipeline.run.distribute's business; all share the content-addressed
cache (its entries are renamed into place whole, so none is ever torn). Paths are made absolute and the cache
folder explicit before they are sent, so a worker elsewhere reads and writes the same files.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.artifacts import write_text_atomic
from pipeline.errors import EdgeportError
from pipeline.report.junit import render_suites
from pipeline.report.markdown.markup import table
from pipeline.report.text import final_line, first_text_line, gate_verdict, gates_of, nonfinite_of, nonfinite_text
from pipeline.run.cache import default_cache_dir
from pipeline.run.distribute import Placement, completed
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
    worker: str = ""  # host and process id that ran it

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
            "worker": self.worker,
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


def run_batch(
    paths: list[Path],
    options: RunOptions,
    jobs: int = 1,
    log: Log = print,
    executor: str = "local",
    scheduler: str | None = None,
) -> dict[str, Any]:
    """Run every recipe; write the combined summary and junit.xml under `options.out_dir`; the summary dict.

    executor "local" runs them here (`jobs` 1) or in `jobs` spawned processes; "dask" sends each recipe as one
    task to the dask scheduler at `scheduler`, or to a LocalCluster of `jobs` workers when it is None.
    """
    started = time.perf_counter()
    names = _recipe_names(paths)
    sent = _for_workers(options)
    shared = (sent.out_dir, *((sent.cache_dir,) if sent.use_cache and sent.cache_dir else ()))
    files = tuple(path.absolute() for path in paths)
    placement = Placement(executor, jobs, scheduler, shared, files, children=options.isolate)
    outcomes: dict[int, RecipeOutcome] = {}
    for index, result in completed(_run_one, [(path, sent) for path in files], placement):
        outcome = result if isinstance(result, RecipeOutcome) else _died(names[index], result)
        outcomes[index] = _announce(replace(outcome, path=paths[index]), log, executor == "dask")
    ordered = [outcomes[index] for index in sorted(outcomes)]
    summary = {
        "schema_version": 1,
        "exit_code": max((outcome.exit_code for outcome in ordered), default=0),
        "seconds": round(time.perf_counter() - started, 3),
        "executor": executor if scheduler is None else f"{executor} {scheduler}",
        "recipes": [outcome.to_dict() for outcome in ordered],
    }
    summary["passed"] = summary["exit_code"] == 0
    _write(summary, ordered, options.out_dir)
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
    where = f" on {summary['executor']}" if summary.get("executor", "local") != "local" else ""
    header = f"# edgeport batch: {verdict}\n\n{len(rows)} recipes in {summary['seconds']:.1f} s{where}\n\n"
    return header + table(["recipe", "verdict", "outputs passed", "failing"], rows) + "\n"


def _recipe_names(paths: list[Path]) -> list[str]:
    """Each recipe's name (its file's stem where it cannot be read). Two recipes of one name would write into one
    folder: bad input, found before any work."""
    from pipeline.recipe import load_recipe

    names: list[str] = []
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            name = load_recipe(path).spec.name
        except EdgeportError:
            names.append(path.stem)  # reported with its own message when its turn comes
            continue
        if name in seen:
            raise EdgeportError(f"{seen[name]} and {path} are both named {name!r}: each recipe writes OUT/<name>/")
        seen[name] = path
        names.append(name)
    return names


def _for_workers(options: RunOptions) -> RunOptions:
    """Absolute paths and an explicit cache folder: a worker in another directory or on another host (a shared
    filesystem) then reads and writes the same files as this process."""
    cache_dir = (options.cache_dir or default_cache_dir()).expanduser().absolute()
    baseline = options.baseline.absolute() if options.baseline is not None else None
    return replace(options, out_dir=options.out_dir.absolute(), cache_dir=cache_dir, baseline=baseline)


def _run_one(path: Path, options: RunOptions) -> RecipeOutcome:
    """One recipe into OUT/<its name>/: bad input is exit 2 for this recipe only. The task each worker runs."""
    from pipeline.recipe import load_recipe

    clock = time.perf_counter()
    name, worker = path.stem, f"{socket.gethostname()} pid {os.getpid()}"
    try:
        recipe = load_recipe(path)
        name = recipe.spec.name
        report = run_recipe(recipe, replace(options, out_dir=options.out_dir / name), log=lambda line: None)
    except EdgeportError as error:
        seconds = time.perf_counter() - clock
        return RecipeOutcome(path, name, error.exit_code, error=str(error), seconds=seconds, worker=worker)
    seconds = time.perf_counter() - clock
    return RecipeOutcome(path, name, int(report["exit_code"]), report, seconds=seconds, worker=worker)


def _died(name: str, error: BaseException) -> RecipeOutcome:
    """A task that raised instead of returning (its worker process died, a bug): exit 3 for that recipe."""
    error_text = f"its worker failed: {type(error).__name__}: {first_text_line(error)}"
    return RecipeOutcome(Path(name), name, 3, error=error_text)


def _announce(outcome: RecipeOutcome, log: Log, where: bool = False) -> RecipeOutcome:
    """One block a recipe as it finishes, whichever worker ran it: the recipe's verdict line, then one line per
    output (`recipe/output: passed|failed (...)|error: ...`). Logged in one call, so blocks never interleave."""
    verdict_text = final_line(outcome.report) if outcome.report else f"error: {outcome.error}"
    ran_on = f", {outcome.worker}" if where and outcome.worker else ""
    lines = [f"  {outcome.name}: {verdict_text} (exit {outcome.exit_code}, {outcome.seconds:.1f} s{ran_on})"]
    lines += [f"    {outcome.name}/{_output_line(output)}" for output in (outcome.report or {}).get("outputs") or []]
    log("\n".join(lines))
    return outcome


def _output_line(output: dict[str, Any]) -> str:
    status = str(output.get("status", "?"))
    if status == "error":
        return f"{output.get('name')}: error: {first_text_line(output.get('error')) or 'no artifact'}"
    failed = [gate_verdict(gate) for gate in gates_of(output) if not gate.get("passed")]
    if nonfinite_of(output):
        failed.insert(0, f"non-finite outputs: {nonfinite_text(output)}")
    return f"{output.get('name')}: {status}" + (f" ({'; '.join(failed)})" if failed else "")


def _write(summary: dict[str, Any], outcomes: list[RecipeOutcome], out_dir: Path) -> None:
    reports = [outcome.report for outcome in outcomes if outcome.report is not None]
    refused = {outcome.name: outcome.error or "" for outcome in outcomes if outcome.report is None}
    write_text_atomic(out_dir / "junit.xml", render_suites(reports, refused))
    write_text_atomic(out_dir / "summary.md", summary_markdown(summary))
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
