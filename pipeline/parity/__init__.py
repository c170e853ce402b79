"""Parity of two runs: streaming metrics (metrics.py, tail.py), exact intervals (intervals.py), gates (gates.py)
and the result they make (result.py).

Takes plain arrays keyed by tensor name; never imports a runtime.
"""

from pipeline.parity.gates import GATE_OPS, UNDECIDED, GateResult, evaluate_gates
from pipeline.parity.result import ParityAccumulator, ParityResult, gate_result, nonfinite_message

__all__ = [
    "GATE_OPS",
    "UNDECIDED",
    "GateResult",
    "ParityAccumulator",
    "ParityResult",
    "evaluate_gates",
    "gate_result",
    "nonfinite_message",
]
