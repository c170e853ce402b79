"""Plot data of a comparison: bounded, even, deterministic samples and a histogram over every value."""

from __future__ import annotations

import json

import numpy as np

from pipeline.plotdata import PlotData


def plot_data(references: list[dict], candidates: list[dict], names: list[str], pairs: int = 1000) -> dict:
    """PlotData fed as compare feeds it: each chunk's tensors in turn, segments read again from memory."""
    segments = [(ref[name], out[name]) for ref, out in zip(references, candidates, strict=True) for name in names]
    plots = PlotData(names, sum(ref.size for ref, _ in segments), pairs)
    for ref, out in segments:
        plots.add(ref, out, np.abs(out.astype(np.float64) - ref).reshape(-1))
    return plots.finish(again=lambda segment: segments[segment])


def test_sample_is_bounded_even_and_histogram_counts_every_value() -> None:
    rng = np.random.default_rng(0)
    refs = [{"a": rng.normal(size=(64, 10)), "b": rng.normal(size=(64, 3))} for _ in range(5)]
    outs = [{name: value + rng.normal(0, 0.01, value.shape) for name, value in batch.items()} for batch in refs]
    plots = plot_data(refs, outs, ["a", "b"], pairs=500)
    total = 5 * 64 * 13
    assert plots["values"] == total and sum(plots["histogram"]["counts"]) == total
    assert len(plots["histogram"]["counts"]) == 30
    largest = max(np.abs(o[n] - r[n]).max() for r, o in zip(refs, outs, strict=True) for n in ("a", "b"))
    assert abs(plots["histogram"]["high"] - largest) <= 1e-4 * largest
    sample = plots["sample"]
    assert sample["stride"] == 9 and len(sample["reference"]) == len(sample["candidate"]) == -(-total // 9)
    stream = np.concatenate([r[n].reshape(-1) for r in refs for n in ("a", "b")])
    assert np.allclose(sample["reference"], stream[::9], rtol=1e-4)  # every 9th value across batches and tensors
    assert plots == plot_data(refs, outs, ["a", "b"], pairs=500)


def test_non_finite_values_are_left_out_and_counted() -> None:
    ref = {"y": np.array([[1.0, 2.0, 3.0, 4.0]])}
    out = {"y": np.array([[1.0, np.nan, np.inf, 4.5]])}
    plots = plot_data([ref], [out], ["y"])
    assert plots["nonfinite_left_out"] == 2 and sum(plots["histogram"]["counts"]) == 2
    assert plots["sample"]["candidate"] == [1.0, 4.5]
    json.dumps(plots, allow_nan=False)


def test_identical_runs_give_a_usable_range() -> None:
    same = {"y": np.zeros((4, 2))}
    plots = plot_data([same], [same], ["y"])
    assert plots["histogram"]["high"] == 1.0 and plots["histogram"]["counts"][0] == 8
