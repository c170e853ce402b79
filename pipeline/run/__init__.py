"""Running a recipe: plan → chain executor (cache, worker) → output checker (runtimes, parity) → reports."""

from pipeline.run.runner import RunOptions, run_recipe

__all__ = ["RunOptions", "run_recipe"]
