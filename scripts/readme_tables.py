"""Regenerate the README's measured tables from real runs on this machine; never edit them by hand.

- the demo summary: `recipes/demo.yaml` run afresh (cache bypassed), pasted as the console prints it;
- with `--cpu-table`, the "Same file, different CPU" table (`scripts/cpu_table.py`, about 4 minutes).

Each table sits between `<!-- NAME:start -->` and `<!-- NAME:end -->` markers and names the machine it ran on.
Usage: python scripts/make_demo_model.py && python scripts/readme_tables.py [--cpu-table]
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


def machine() -> str:
    from pipeline.core.cpu import cpu_info, describe_cpu

    return f"{describe_cpu(cpu_info())}, {os.cpu_count()} cores, Python {platform.python_version()}"


def demo_table() -> str:
    from pipeline.recipe import load_recipe
    from pipeline.report.console import summary
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


def replace_between(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {name}:start --> / <!-- {name}:end --> markers")
    return pattern.sub(lambda match: match.group(1) + body + "\n" + match.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-table", action="store_true", help="also rerun the CPU table (about 4 minutes)")
    args = parser.parse_args()
    readme = ROOT / "README.md"
    text = replace_between(readme.read_text(), "demo-table", demo_table())
    if args.cpu_table:
        text = replace_between(text, "cpu-table", cpu_table())
    readme.write_text(text)
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
