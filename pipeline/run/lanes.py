"""Outputs of one recipe at once (`--jobs N` on a single recipe).

Outputs whose chains start with the same node share a lane and run in order in it, so shared work is built once
and reported `reused` as in a run one output at a time. Lanes run in N threads, each with its own chain executor
and conversion worker process: conversions run side by side in those processes, parity in this process's threads
(LiteRT and onnxruntime release the GIL while they run). Only recipes whose outputs are conversions checked by
parity take lanes: a training stage, `fallback: auto`, a `benchmark` or a deployment target needs this process's
TensorFlow or its undivided time, and those recipes run their outputs one after another.

Knows plans and stages; builds nothing itself (the runner passes how to make an executor and run an output).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from queue import Empty, SimpleQueue
from typing import TypeVar

from pipeline.run.plan import OutputPlan
from pipeline.stages import STAGES

Executor = TypeVar("Executor")
Result = TypeVar("Result")
Numbered = tuple[int, OutputPlan]  # 1-based position in the run, for the progress lines


def why_not_in_lanes(plans: list[OutputPlan]) -> str | None:
    """None when the outputs may run at once; else what keeps them in order, for the run's log."""
    for plan in plans:
        if plan.benchmark is not None:
            return f"{plan.name} has a benchmark (timings need the machine to themselves)"
        if plan.targets:
            return f"{plan.name} names deployment targets"
        for node in plan.nodes:
            stage = STAGES[node.kind]
            if not stage.isolatable or stage.needs_verdicts(node.options):
                return f"{plan.name} has a {node.label} stage, which runs in this process"
    return None


def lanes_of(plans: list[OutputPlan]) -> list[list[Numbered]]:
    """Outputs grouped by their first node, in the run's order."""
    lanes: dict[str, list[Numbered]] = {}
    for number, plan in enumerate(plans, 1):
        lanes.setdefault(plan.nodes[0].key, []).append((number, plan))
    return list(lanes.values())


def run_in_lanes(
    lanes: list[list[Numbered]],
    jobs: int,
    make_executor: Callable[[int], Executor],
    run_output: Callable[[Numbered, Executor], Result],
) -> list[Result]:
    """Every output's result, in the run's order; `make_executor(i)` gives thread i its own executor."""
    waiting: SimpleQueue[list[Numbered]] = SimpleQueue()
    for lane in lanes:
        waiting.put(lane)
    results: dict[int, Result] = {}
    lock = threading.Lock()

    def work(index: int) -> None:
        executor = make_executor(index)
        while True:
            try:
                lane = waiting.get_nowait()
            except Empty:
                return
            for numbered in lane:
                entry = run_output(numbered, executor)
                with lock:
                    results[numbered[0]] = entry

    threads = min(jobs, len(lanes))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="edgeport-lane") as pool:
        for future in [pool.submit(work, index) for index in range(threads)]:
            future.result()  # a bug in a lane is raised here, as it would be in a run one output at a time
    return [results[number] for number in sorted(results)]
