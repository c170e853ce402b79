"""Turn a validated recipe into a plan: per output, a chain of stage nodes with content keys.

Two outputs whose chains start alike share the nodes (same key), so a shared prefix runs once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.artifacts import key_of
from pipeline.core.toolchain import package_versions
from pipeline.errors import RecipeError
from pipeline.recipe import BenchmarkSpec, LoadedRecipe, RuntimeSpec, stage_of
from pipeline.stages import STAGES, StageOptions


@dataclass(frozen=True)
class PlanNode:
    key: str
    kind: str
    options: StageOptions
    label: str


@dataclass
class OutputPlan:
    name: str
    nodes: list[PlanNode]
    gates: dict[str, float]
    gates_from: str  # "recipe" or "default"
    tensor_gates: dict[str, dict[str, float]]
    runtime: RuntimeSpec
    benchmark: BenchmarkSpec | None = None
    reproducible_gate: bool = False  # gates: {reproducible: true}
    tensor_map: dict[str, str] = field(default_factory=dict)  # source output → this file's output, as given
    input_map: dict[str, str] = field(default_factory=dict)  # source input → this file's input, as given
    targets: list[str] = field(default_factory=list)  # deployment targets (pipeline.targets), each a gate
    micro_arena_kib: float | None = None  # gates: {micro_arena_kib: N}
    float32_noise: float | None = None  # gates: {float32_noise: k}: max_abs also passes within k× the source's spread


def plan_recipe(
    recipe: LoadedRecipe,
    source_key: str,
    only: list[str] | None = None,
    data_digests: dict[str, str] | None = None,
    sample_shapes: dict[str, list[int]] | None = None,
) -> list[OutputPlan]:
    """Per output, its chain of nodes. A node's key covers everything its artifact depends on: the
    upstream key, the stage and its options, the data it reads, and the versions of the tool chain."""
    outputs = recipe.spec.outputs
    unknown = sorted(set(only or []) - set(outputs))
    if unknown:
        raise RecipeError(
            f"{recipe.path}: --only names unknown outputs {', '.join(unknown)} (the recipe has {', '.join(outputs)})"
        )
    plans = []
    for name, output in outputs.items():
        if only and name not in only:
            continue
        entries = [stage_of(entry) for entry in output.stages]
        gates = output.gates.thresholds()
        tensor_gates = output.gates.tensor_thresholds()
        gates_from = "recipe"
        if not gates and not tensor_gates:
            # A stage that changes the model on purpose (prune, qat...) sets the bar: a conversion's
            # fp32 tolerance against the unchanged source would always fail after it.
            changers = [(kind, options) for kind, options in entries if STAGES[kind].gives == "keras"]
            kind, options = changers[0] if changers else entries[-1]
            gates, gates_from = STAGES[kind].default_gates(options), "default"
        upstream, nodes = source_key, []
        digests = data_digests or {}
        for kind, options in entries:
            stage = STAGES[kind]
            data: dict[str, object] = {
                section: digests.get(section.split(".")[0]) for section in stage.required_data(options)
            }
            if stage.shape_bound and sample_shapes:
                data["sample_shapes"] = sample_shapes
            if stage.needs_verdicts(options):
                # The artifact depends on the verdict: gates and evaluation data are part of its key.
                data["verdict"] = {"gates": gates, "tensors": tensor_gates, "evaluation": digests.get("evaluation")}
            upstream = key_of(kind, options.model_dump(mode="json"), upstream, data, package_versions(stage.packages))
            nodes.append(PlanNode(key=upstream, kind=kind, options=options, label=stage.describe(options)))
        plan = OutputPlan(name, nodes, gates, gates_from, tensor_gates, output.runtime, output.benchmark)
        plan.reproducible_gate = bool(output.gates.reproducible)
        plan.tensor_map, plan.input_map = dict(output.tensor_map), dict(output.input_map)
        plan.targets, plan.micro_arena_kib = list(output.targets), output.gates.micro_arena_kib
        plan.float32_noise = output.gates.float32_noise
        plans.append(plan)
    return plans


def check_tensor_gates(
    recipe: LoadedRecipe, plans: list[OutputPlan], output_names: list[str], input_names: list[str]
) -> None:
    """Per-tensor gates and tensor_map keys must name outputs the source model has, input_map keys its inputs;
    found once it is loaded."""
    for plan in plans:
        named_fields = [
            ("gates", plan.tensor_gates, "output", output_names),
            ("tensor_map", plan.tensor_map, "output", output_names),
            ("input_map", plan.input_map, "input", input_names),
        ]
        for field_name, named, noun, names in named_fields:
            unknown = sorted(set(named) - set(names))
            if unknown:
                raise RecipeError(
                    f"{recipe.path}: outputs.{plan.name}.{field_name}: the source model has no {noun} "
                    f"{', '.join(map(repr, unknown))} (its {noun}s: {', '.join(names)})"
                )
