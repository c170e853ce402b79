"""The one timing loop (`core.timing`) and the run's latency measurement over it: warm-up calls go untimed,
and the summary is the median, p90 and minimum of the timed calls, in milliseconds."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pipeline.core import timing
from pipeline.run.latency import measure_latency


class _Clock:
    """A perf_counter that moves only when the timed call says so: the durations are exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(timing, "time", fake)
    return fake


def _calls_taking(clock: _Clock, seconds: list[float]) -> tuple[list[int], Callable[[], None]]:
    made: list[int] = []

    def call() -> None:
        clock.now += seconds[len(made)]
        made.append(1)

    return made, call


def test_warmup_calls_are_made_but_not_timed(clock: _Clock) -> None:
    made, call = _calls_taking(clock, [9.0, 9.0, 0.001, 0.003, 0.002, 0.005, 0.004])
    measured = timing.time_calls(call, runs=5, warmup=2)
    assert len(made) == 7
    assert measured == {"median_ms": 3.0, "p90_ms": 4.6, "min_ms": 1.0}


def test_an_even_number_of_runs_takes_the_mean_of_the_middle_two(clock: _Clock) -> None:
    _, call = _calls_taking(clock, [0.001, 0.004, 0.002, 0.003])
    assert timing.time_calls(call, runs=4, warmup=0)["median_ms"] == 2.5


def test_measure_latency_times_the_runtime_on_its_feed(clock: _Clock) -> None:
    feed = {"x": np.zeros((1, 2), np.float32)}
    fed: list[dict[str, np.ndarray]] = []

    class _Runtime:
        def predict_fixed(self, given: dict[str, np.ndarray]) -> None:
            fed.append(given)
            clock.now += 0.002

    measured = measure_latency(_Runtime(), feed, runs=3, warmup=1)
    assert len(fed) == 4 and all(given is feed for given in fed)
    assert measured == {"median_ms": 2.0, "p90_ms": 2.0, "min_ms": 2.0}
