"""docs/measurements.md's "Mobile and microcontroller targets" table: `recipes/mobile.yaml` run afresh (cache
bypassed), one row per output and declared target, with what the target measured. Called by `scripts/readme_tables.py
--mobile-table`; prints the table when run on its own."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLUMNS = ["output", "target", "compatible", "unsupported ops", "arena bytes", "cosine", "top1_agreement", "accuracy"]


def mobile_report() -> dict[str, Any]:
    from pipeline.core.artifact import Artifact
    from pipeline.recipe import load_recipe
    from pipeline.run import RunOptions, run_recipe
    from pipeline.targets.micro import smallest_arena

    with tempfile.TemporaryDirectory(prefix="edgeport-readme-mobile-") as out:
        recipe = load_recipe(ROOT / "recipes" / "mobile.yaml")
        report = run_recipe(recipe, RunOptions(out_dir=Path(out), use_cache=False), log=lambda line: None)
        for output in report["outputs"]:  # the recorded arena, checked against the smallest one that works
            micro = (output.get("targets") or {}).get("micro") or {}
            if micro.get("arena_bytes"):
                file = Artifact(kind="tflite", path=Path(out) / output["artifact"], key=output["name"])
                micro["bisected_bytes"] = smallest_arena(file, 4 * micro["arena_bytes"])
    return report


def rows(report: dict[str, Any]) -> list[list[str]]:
    """Parity is the target's own run where it has one (TFLite Micro), else the output's LiteRT run."""
    from pipeline.report.text import number

    found = []
    for output in report["outputs"]:
        for name, target in (output.get("targets") or {}).items():
            metrics = ((target.get("parity") or output.get("parity") or {}).get("metrics")) or {}
            ops = ", ".join(f"{op['op']} #{op['index']}" for op in target["unsupported"]) or "-"
            where = "TFLM" if target.get("parity") else "LiteRT"
            found.append(
                [
                    output["name"],
                    name,
                    "yes" if target["compatible"] else "no",
                    ops,
                    number(target.get("arena_bytes")) if name == "micro" else "-",
                    *(f"{number(metrics.get(key))} ({where})" for key in ("cosine", "top1_agreement", "accuracy")),
                ]
            )
    return found


def mobile_table(machine: str) -> str:
    report = mobile_report()
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(report)]
    statuses = ", ".join(f"{output['name']} {output['status']}" for output in report["outputs"])
    bisected = [
        f"{output['name']} {micro['arena_bytes']} recorded, {micro['bisected_bytes']} by bisection"
        for output in report["outputs"]
        if (micro := (output.get("targets") or {}).get("micro") or {}).get("bisected_bytes")
    ]
    check = f" Smallest arena that runs (to 16 bytes): {'; '.join(bisected)}." if bisected else ""
    return "\n".join(lines) + (
        f"\n\n`edgeport run recipes/mobile.yaml`: {statuses} (exit {report['exit_code']}).{check} "
        f"Measured by `scripts/readme_tables.py --mobile-table` on {machine}."
    )


if __name__ == "__main__":
    print(mobile_table("this machine"))
