"""Regenerate the measured tables of README.md and docs/measurements.md from real runs on this machine; never edit
them by hand.

- the demo summary in README.md: `recipes/demo.yaml` run afresh (cache bypassed), pasted as the console prints it;
- with `--cpu-table`, the "Same file, different CPU" table in docs/measurements.md (`scripts/cpu_table.py`, about
  4 minutes);
- with `--cluster-table`, wall seconds of one batch of recipes on 1 and 2 workers, local processes and a dask
  LocalCluster (about 3 minutes), in docs/measurements.md; `--no-demo-table` leaves the demo summary as it is;
- with `--mobile-table`, the "Mobile and microcontroller targets" table in docs/measurements.md
  (`scripts/mobile_table.py`, about 20 s).

Each table sits between `<!-- NAME:start -->` and `<!-- NAME:end -->` markers in its page (`PAGES`) and names the
machine it ran on.
Usage: python scripts/make_demo_model.py && python scripts/readme_tables.py [--cpu-table] [--cluster-table]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The page each table lives in.
PAGES = {
    "demo-table": ROOT / "README.md",
    "cpu-table": ROOT / "docs" / "measurements.md",
    "cluster-table": ROOT / "docs" / "measurements.md",
    "mobile-table": ROOT / "docs" / "measurements.md",
}


def machine() -> str:
    from pipeline.core.cpu import cpu_info, describe_cpu

    return f"{describe_cpu(cpu_info())}, {os.cpu_count()} cores, Python {platform.python_version()}"


def demo_table() -> str:
    from pipeline.recipe import load_recipe
    from pipeline.report.text import summary
    from pipeline.run import RunOptions, run_recipe

    with tempfile.TemporaryDirectory(prefix="edgeport-readme-") as out:
        report = run_recipe(
            load_recipe(ROOT / "recipes" / "demo.yaml"),
            RunOptions(out_dir=Path(out), use_cache=False),
            log=lambda line: None,
        )
    return f"```\n{summary(report).strip()}\n```\nMeasured by `scripts/readme_tables.py` on {machine()}."


def cpu_table() -> str:
    from scripts import cpu_table as script

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        sys.argv = ["cpu_table.py"]
        script.main()
    lines = [line for line in printed.getvalue().splitlines() if line.startswith("|")]
    return "\n".join(lines) + f"\n\nMeasured by `scripts/readme_tables.py --cpu-table` on {machine()}."


BATCH_RECIPES = 4


def cluster_table() -> str:
    """The same batch (cache bypassed, so every recipe does its work) on 1 and 2 workers of each executor."""
    rows = ["| executor | workers | wall s | speed-up vs 1 worker |", "| --- | --- | --- | --- |"]
    load = os.getloadavg()[0]  # other work on the machine slows the runs with more workers most
    with tempfile.TemporaryDirectory(prefix="edgeport-readme-batch-") as folder:
        paths = _batch_recipes(Path(folder))
        for executor in ("local", "dask"):
            one = 0.0
            for workers in (1, 2):
                seconds = _batch_seconds(paths, Path(folder) / f"{executor}-{workers}", executor, workers)
                one = one or seconds
                rows.append(f"| {executor} | {workers} | {seconds:.1f} | {one / seconds:.2f}× |")
    recipe = "fp32 TFLite, int8 TFLite and fp32 ONNX of the digits CNN, 360 evaluation samples"
    return "\n".join(rows) + (
        f"\n\n{BATCH_RECIPES} recipes ({recipe}), `--no-cache`; wall time includes starting the workers (and the "
        f"LocalCluster). Measured by `scripts/readme_tables.py --cluster-table` on {machine()}, load average "
        f"{load:.1f} when it started."
    )


def _batch_recipes(folder: Path) -> list[Path]:
    model, npz = ROOT / "artifacts" / "models" / "digits_cnn.keras", ROOT / "artifacts" / "data" / "digits.npz"
    body = (
        f"source: {model}\ndata:\n  calibration: {{npz: {npz}, inputs: x_train, limit: 100}}\n"
        f"  evaluation: {{npz: {npz}, inputs: x_test, labels: y_test}}\noutputs:\n  fp32: {{stages: [tflite]}}\n"
        "  int8: {stages: [{tflite: {quantize: int8}}]}\n  onnx: {stages: [onnx]}\n"
    )
    paths = [folder / f"recipe-{n}.yaml" for n in range(1, BATCH_RECIPES + 1)]
    for n, path in enumerate(paths, 1):
        path.write_text(f"name: batch-{n}\n{body}")
    return paths


def _batch_seconds(paths: list[Path], out: Path, executor: str, workers: int) -> float:
    import time

    from pipeline.run import RunOptions
    from pipeline.run.batch import run_batch

    clock = time.perf_counter()
    summary = run_batch(paths, RunOptions(out_dir=out, use_cache=False), workers, lambda line: None, executor)
    if summary["exit_code"] != 0:
        raise SystemExit(f"the {executor} batch on {workers} workers exited {summary['exit_code']}: see {out}")
    return time.perf_counter() - clock


def mobile_table() -> str:
    from scripts.mobile_table import mobile_table as table

    return table(machine())


def replace_between(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{PAGES[name].relative_to(ROOT)} has no <!-- {name}:start --> / <!-- {name}:end --> markers")
    return pattern.sub(lambda match: match.group(1) + body + "\n" + match.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-table", action="store_true", help="also rerun the CPU table (about 4 minutes)")
    parser.add_argument("--cluster-table", action="store_true", help="also rerun the workers table (about 3 minutes)")
    parser.add_argument("--no-demo-table", action="store_true", help="leave the demo summary as it is")
    parser.add_argument("--mobile-table", action="store_true", help="also rerun the mobile targets table (20 s)")
    args = parser.parse_args()
    tables = {"demo-table": demo_table} if not args.no_demo_table else {}
    tables |= {"cpu-table": cpu_table} if args.cpu_table else {}
    tables |= {"cluster-table": cluster_table} if args.cluster_table else {}
    tables |= {"mobile-table": mobile_table} if args.mobile_table else {}
    bodies = {name: make() for name, make in tables.items()}  # measured first: each page is read just before writing
    for page in dict.fromkeys(PAGES[name] for name in bodies):
        text = page.read_text()
        for name, body in bodies.items():
            if PAGES[name] == page:
                text = replace_between(text, name, body)
        page.write_text(text)
        print(f"updated {page}")


if __name__ == "__main__":
    main()
