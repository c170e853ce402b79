"""`--verify-reproducible` and `gates: {reproducible: true}`: build an output's file a second time with the cache
bypassed, stamp it with the same provenance, and compare it with the file the run shipped.

Knows the chain executor and the output's result; nothing of runtimes or parity.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.artifacts import sha256_of
from pipeline.parity import GateResult
from pipeline.provenance import Provenance
from pipeline.run.executor import ChainExecutor, ChainResult
from pipeline.run.plan import OutputPlan
from pipeline.run.publish import STAMPED_KINDS, output_provenance, stamped_copy
from pipeline.run.result import OutputResult

Acceptor = Callable[[Path], bool]


def verify_reproducible(
    plans: list[OutputPlan],
    results: list[OutputResult],
    rebuild: ChainExecutor,
    acceptor: Callable[[OutputPlan], Acceptor],
    everything: bool,
    provenance: Provenance,
) -> None:
    """Rebuild each output that asks (or every output, with `everything`) and record `reproducible` in its result;
    a `reproducible: true` gate fails the output when the two builds differ. The rebuilt file is stamped as the
    shipped one was (`provenance`, the run's), so the two differ only where the builds do."""
    for plan, result in zip(plans, results, strict=True):
        if result.status == "error" or not (everything or plan.reproducible_gate):
            continue
        chain = rebuild.run_chain(plan, f"  rebuild {plan.name}", acceptor(plan))
        final = chain.artifacts[-1] if chain.error is None and chain.artifacts else None
        if final is not None and final.kind in STAMPED_KINDS:
            target = rebuild.work / "stamped" / plan.name / f"model{final.path.suffix}"
            chain.artifacts[-1] = stamped_copy(final, target, output_provenance(provenance, plan))
        result.reproducible = compare_builds(result, chain)
        if plan.reproducible_gate:
            result.add_gate(reproducible_gate(result.reproducible))


def compare_builds(result: OutputResult, chain: ChainResult) -> dict[str, Any]:
    if chain.error is not None:
        return {"reproducible": False, "error": f"the rebuild failed: {chain.error}"}
    final = chain.artifacts[-1]
    if final.kind == "keras":  # a saved Keras file records when it was saved: compare the weights instead
        first = (result.stages[-1].get("details") or {}).get("weights_sha256")
        again = (final.details or {}).get("weights_sha256")
        compared = "weights_sha256"
    else:
        first, again, compared = result.published.get("sha256"), sha256_of(final.path), "sha256"
    same = first is not None and first == again
    return {"reproducible": same, "compared": compared, "first": first, "rebuilt": again}


def reproducible_gate(found: dict[str, Any]) -> GateResult:
    """`reproducible >= 1`: 1 when the rebuild gave the same bytes (or weights), 0 with what differed."""
    passed = bool(found["reproducible"])
    note = None if passed else found.get("error") or f"rebuilt {found['compared']} {str(found['rebuilt'])[:12]}…"
    return GateResult("reproducible", ">=", 1, 1.0 if passed else 0.0, passed, note)
