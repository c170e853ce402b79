"""The Keras allowlist: its literal lists are exactly what the installed frameworks can load less what the module
explains, the walk finds an element wherever a config nests it and names its layer, and the models our own
stages save (QAT wrappers, pruned and clustered models) pass it untrusted, from the cache as from a source."""

from __future__ import annotations

import json
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import ModelError
from pipeline.sources import load_source
from pipeline.sources.allowlist import keras as allow
from pipeline.sources.keras import load_keras_model
from pipeline.sources.trust import check_model_config, outside_allowlist
from scripts import keras_allowlist

from ..cli import edgeport_env
from ..conftest import ROOT
from ..helpers import edit_h5_config, run_stage

BLOCKS = {
    "KERAS3_CLASSES": (keras_allowlist.keras3_classes, allow.EXCLUDED_KERAS3),
    "KERAS3_FUNCTIONS": (keras_allowlist.keras3_functions, allow.EXCLUDED_KERAS3),
    "TF_KERAS_CLASSES": (keras_allowlist.tf_keras_classes, allow.EXCLUDED_TF_KERAS),
    "TFMOT_CLASSES": (keras_allowlist.tfmot_classes, allow.EXCLUDED_TFMOT),
    "TFOP_FUNCTIONS": (keras_allowlist.tfop_functions, allow.EXCLUDED_TFOP),
}


_CANDIDATES = (
    "import json; from scripts import keras_allowlist as k; "
    "print(json.dumps({name: sorted(getattr(k, name.lower())()) for name in %r}))"
)


@pytest.fixture(scope="module")
def candidates() -> dict[str, set[str]]:
    """What the frameworks offer, read in a fresh interpreter as the script reads it: in the suite's own process an
    earlier test may have imported keras-hub, whose tensorflow_text adds its ops to TensorFlow's export table."""
    probe = [sys.executable, "-c", _CANDIDATES % sorted(BLOCKS)]
    result = subprocess.run(probe, capture_output=True, text=True, cwd=ROOT, env=edgeport_env(), check=True)
    return {name: set(names) for name, names in json.loads(result.stdout.strip().splitlines()[-1]).items()}


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_each_list_is_what_the_frameworks_load_less_what_is_explained(
    candidates: dict[str, set[str]], block: str
) -> None:
    """An upgrade that adds a class (or drops one) fails here until scripts/keras_allowlist.py is rerun and the
    new name is either listed or explained."""
    listed: frozenset[str] = getattr(allow, block)
    excluded = BLOCKS[block][1]
    assert sorted(listed - candidates[block]) == [], "listed, yet the installed frameworks no longer offer it"
    unexplained = {name for name in candidates[block] - listed if allow.excluded_why(name, excluded) is None}
    assert sorted(unexplained) == [], "offered, neither listed nor explained: rerun scripts/keras_allowlist.py"
    assert sorted(name for name in listed if allow.excluded_why(name, excluded) is not None) == []


def test_every_explanation_still_explains_something(candidates: dict[str, set[str]]) -> None:
    for excluded in (allow.EXCLUDED_KERAS3, allow.EXCLUDED_TF_KERAS, allow.EXCLUDED_TFOP):
        offered = set().union(*(candidates[block] for block, (_, why) in BLOCKS.items() if why is excluded))
        stale = [pattern for pattern in excluded if not any(fnmatchcase(name, pattern) for name in offered)]
        assert stale == [], "explanations that match nothing the frameworks offer: drop them"


def test_the_carriers_the_issue_found_are_off_the_lists_and_pure_functions_on() -> None:
    for carrier in ("io.write_file", "io.read_file", "load_op_library", "py_function", "numpy_function", "print"):
        assert carrier not in allow.TFOP_FUNCTIONS, carrier
    for pure in ("math.add", "nn.relu", "reshape", "concat", "__operators__.getitem", "compat.v1.transpose"):
        assert pure in allow.TFOP_FUNCTIONS, pure
    for carrier in ("Lambda", "TensorFlowOpLayer", "ClassMethod", "TFSMLayer", "DenseFeatures"):
        assert not allow.bare_class_allowed(carrier), carrier
    assert not allow.qualified_class_allowed("keras.layers.Lambda")
    assert not allow.qualified_class_allowed("keras.layers.TFSMLayer")
    assert allow.bare_class_allowed("QuantizeWrapperV2") and allow.bare_class_allowed("PruneLowMagnitude")


def _tf_keras_h5(path: Path) -> Path:
    """A real tf_keras model: an LSTM, a Dense with an L2 regularizer, and a TFOpLambda (tf.nn.relu)."""
    import tensorflow as tf
    import tf_keras

    inputs = tf_keras.Input((5, 4), name="series")
    hidden = tf_keras.layers.LSTM(3, name="lstm")(inputs)
    hidden = tf_keras.layers.Dense(2, kernel_regularizer="l2", name="head")(hidden)
    tf_keras.Model(inputs, tf.nn.relu(hidden)).save(path)
    return path


def _layer(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(layer for layer in config["config"]["layers"] if layer["name"] == name)


def test_a_plain_tf_keras_model_with_a_tfoplambda_passes(tmp_path: Path) -> None:
    path = _tf_keras_h5(tmp_path / "plain.h5")
    assert check_model_config(path, trusted=False)
    assert load_source(path).artifact.flavour == "tf_keras"


def test_a_class_nested_in_an_rnn_cell_initializer_is_named_with_its_layer(tmp_path: Path) -> None:
    """The recurrent initializer sits three levels inside the LSTM's config; the walk finds it there."""

    def edit(config: dict[str, Any]) -> None:
        _layer(config, "lstm")["config"]["recurrent_initializer"] = {"class_name": "ReadFileInit", "config": {}}

    path = edit_h5_config(_tf_keras_h5(tmp_path / "nested.h5"), edit)
    with pytest.raises(ModelError, match=r"class ReadFileInit \(not on the list\) in layer 'lstm'") as refusal:
        load_source(path)
    assert "source.trusted: true" in str(refusal.value) and str(path) in str(refusal.value)


def test_a_registered_name_that_differs_from_the_class_is_refused() -> None:
    """Keras 3 looks a registered name up before the module, so `Dense` registered as another name is not Dense."""
    node = {"module": "keras.layers", "class_name": "Dense", "registered_name": "keras_hub>Anything", "config": {}}
    assert outside_allowlist(
        {
            "class_name": "Sequential",
            "config": {
                "name": "m",
                "trainable": True,
                "layers": [{**node, "config": {"name": "d", "trainable": True}}],
            },
        }
    ) == ["class 'Dense' under the registered name 'keras_hub>Anything' in layer 'd'"]


def test_keras3_function_objects_and_nested_models_are_walked() -> None:
    activation = {"module": "keras.activations", "class_name": "function", "config": "relu", "registered_name": "r"}
    bad = {"module": "os", "class_name": "function", "config": "system", "registered_name": "system"}
    inner = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {
            "name": "inner",
            "trainable": True,
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "Dense",
                    "config": {"name": "d", "trainable": True, "activation": bad},
                }
            ],
        },
    }
    outer = {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {"name": "o", "trainable": True, "activation": activation},
    }
    found = outside_allowlist(
        {
            "module": "keras",
            "class_name": "Sequential",
            "config": {"name": "m", "trainable": True, "layers": [outer, inner]},
        }
    )
    assert found == ["function os.system (not on the list) in layer 'd'"]


@pytest.mark.parametrize("stage", ["qat", "prune", "cluster"])
def test_what_our_stages_save_loads_back_untrusted_from_the_cache(
    stage: str, tf_keras_digits, fine_tune, tmp_path: Path
) -> None:
    """The conversion worker loads these with load_keras_model, untrusted when the source is: the tfmot classes
    they hold are on the list."""
    artifact = run_stage(stage, tf_keras_digits, tmp_path / stage, fine_tune=fine_tune, epochs=1)
    assert check_model_config(artifact.path, trusted=False)
    scope = None
    if stage == "qat":
        from pipeline.stages.finetune import import_tfmot

        scope = import_tfmot().quantization.keras.quantize_scope()
    assert load_keras_model(artifact.path, "tf_keras", trusted=False, scope=scope).inputs
