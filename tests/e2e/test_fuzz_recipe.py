"""Fuzzing the recipe loader and validator: whatever the document, only RecipeError may escape.

`make test` tries a few hundred documents; `make fuzz` tries EDGEPORT_FUZZ_EXAMPLES (10,000).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import RecipeError
from pipeline.recipe import load_recipe
from pipeline.stages import STAGES

from ..recipes import write_recipe

EXAMPLES = int(os.environ.get("EDGEPORT_FUZZ_EXAMPLES", "300"))
KNOWN_KEYS = [
    "name",
    "source",
    "path",
    "signature",
    "trusted",
    "data",
    "calibration",
    "evaluation",
    "fine_tune",
    "npz",
    "npy",
    "random",
    "samples",
    "seed",
    "low",
    "high",
    "inputs",
    "labels",
    "limit",
    "outputs",
    "stages",
    "gates",
    "runtime",
    "delegate",
    "threads",
    "benchmark",
    "runs",
    "warmup",
    "batch",
    "quantize",
    "io",
    "opset",
    "per_channel",
    "dynamic_batch",
    "supported_ops",
    "sparsity",
    "epochs",
    "max_abs",
    "cosine",
    "top1_agreement",
    "accuracy_drop",
    "fail_on_converter_warnings",
    "builder",
    "weights",
    *STAGES,
]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["int8", "none", "static", "both", "../x", "/abs", "a/b", "2:4", ""]),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=10))
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=25
)
stage_entries = st.one_of(
    st.sampled_from([*STAGES, "tflitee", ""]),
    st.dictionaries(
        st.sampled_from([*STAGES, "x"]), st.one_of(st.none(), st.dictionaries(keys, values, max_size=4)), max_size=2
    ),
    values,
)
outputs = st.dictionaries(
    st.one_of(st.sampled_from(["fp32", "int8", "../up", "a/b", ".", "x" * 70]), st.text(max_size=8)),
    st.one_of(
        st.fixed_dictionaries(
            {"stages": st.lists(stage_entries, max_size=3)},
            optional={"gates": values, "runtime": values, "benchmark": values, "junk": values},
        ),
        values,
    ),
    max_size=4,
)
recipes = st.fixed_dictionaries(
    {
        "name": st.one_of(st.just("fuzz"), scalars),
        "source": st.one_of(st.just("model.keras"), values),
        "outputs": st.one_of(outputs, values),
    },
    optional={"data": values, "fail_on_converter_warnings": values, "extra": values},
)


def _check(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.keras").write_bytes(b"placeholder")
        path = write_recipe(Path(tmp), text)
        with contextlib.suppress(RecipeError):
            load_recipe(path)


@FUZZ
@given(recipes)
def test_structured_documents_only_raise_recipe_errors(document: dict) -> None:
    _check(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text_only_raises_recipe_errors(text: str) -> None:
    _check(text)
