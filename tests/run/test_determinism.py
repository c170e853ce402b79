"""A source that answers the same batch differently (a TF1 training switch left True feeding a dropout) or a sample
differently alone than in its batch (batch statistics) is told apart from a deterministic one, with its cause and the
`feeds` line that fixes it; the float32-rounding excuse is refused for such a source and for a file that points
elsewhere (cosine below 0.999)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.evaluate import predict_batches
from pipeline.run.determinism import RERUN_TOLERANCE, SAMPLE_TOLERANCE, Determinism, check_determinism
from pipeline.run.diagnose import FLOAT_NOISE_MIN_COSINE, float_noise_refusal
from pipeline.sources.tf1 import Tf1Origin, load_tf1_source


def tf1_graph(path: Path, kind: str) -> Path:
    """A frozen TF1 graph x [?, 16] → y [?, 4]: `dropout` behind a `training` PlaceholderWithDefault(True) as TF1
    code wrote it, or `moments`: normalised by the batch's own mean and variance (batch norm in training mode)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        x = v1.placeholder(tf.float32, [None, 16], name="x")
        h = tf.nn.relu(tf.matmul(x, tf.constant(rng.normal(0, 1, (16, 32)).astype(np.float32))))
        if kind == "dropout":
            training = v1.placeholder_with_default(True, [], name="training")
            h = v1.nn.dropout(h, rate=tf.where(training, 0.5, 0.0))
        else:
            mean, variance = tf.nn.moments(h, [0])
            h = tf.nn.batch_normalization(h, mean, variance, None, None, 1e-3)
        tf.identity(tf.matmul(h, tf.constant(rng.normal(0, 1, (32, 4)).astype(np.float32))), name="y")
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def _checked(graph: Path, **feeds: bool) -> Determinism:
    source = load_tf1_source(Tf1Origin("graph", graph, outputs=("y",), feeds=feeds), trusted=True)
    batch = {"x": np.random.default_rng(1).random((32, 16), np.float32)}
    reference = predict_batches(source.artifact, "source", [batch])
    return check_determinism(source.artifact, batch, reference.outputs)


def test_a_training_switch_left_true_is_named_with_the_feeds_line_that_fixes_it(tmp_path: Path) -> None:
    graph = tf1_graph(tmp_path / "dropout.pb", "dropout")
    found = _checked(graph)
    assert not found.deterministic and found.rerun > 0.1 and found.tensor == "y"
    assert found.switches == ["training"] and found.suspects == ["ops RandomUniform"]
    warning = found.warning()
    assert warning is not None and "the training switch `training` defaults to True" in warning
    assert "every gate measures that randomness too, and float32_noise loosens no gate" in warning
    assert "Fix: add `feeds: {training: false}` to the source." in warning
    # Fed as the warning says, the same graph answers the same batch with the same bits.
    fed = _checked(graph, training=False)
    assert fed.deterministic and fed.rerun == 0.0 and fed.batch_vs_sample <= SAMPLE_TOLERANCE
    assert fed.warning() is None and fed.switches == [] and (fed.batch, fed.singles) == (32, 8)


def test_batch_statistics_show_as_samples_that_answer_otherwise_alone(tmp_path: Path) -> None:
    found = _checked(tf1_graph(tmp_path / "moments.pb", "moments"))
    assert found.rerun <= RERUN_TOLERANCE and found.batch_vs_sample > 0.1 and not found.deterministic
    assert found.cause().startswith("batch statistics") and found.switches == []
    assert "a sample served alone answers otherwise" in (found.warning() or "")
    assert Determinism.from_json(found.to_json()) == found  # as the cache and the worker carry it


def test_float32_noise_is_refused_for_a_random_source_and_a_file_that_points_elsewhere() -> None:
    assert float_noise_refusal(0.9999997, deterministic=True) is None
    assert "not deterministic" in (float_noise_refusal(0.9999997, deterministic=False) or "")
    # The 3-D U-Net's ONNX file that was called float32 noise scored 0.027; a missing cosine excuses nothing.
    for cosine in (0.027, FLOAT_NOISE_MIN_COSINE - 1e-4, math.nan):
        refusal = float_noise_refusal(cosine, deterministic=True)
        assert refusal is not None and "off by more than rounding" in refusal
