"""The one line edgeport prints for a framework's exception is its decisive line, not the wrapper's first."""

from __future__ import annotations

import numpy as np

from pipeline.errors import first_line

KERAS_WRAPPED = (
    "Exception encountered when calling BertBackbone.call().\n\n"
    "\x1b[1mThe structure of `inputs` doesn't match the expected structure.\n"
    "Expected: {'token_ids': 'token_ids', 'padding_mask': 'padding_mask'}\n"
    "Received: inputs=['Tensor(shape=(2, 16))', 'Tensor(shape=(2, 16))']\x1b[0m\n\n"
    "Arguments received by BertBackbone.call():\n  • inputs=['tf.Tensor(shape=(2, 16), dtype=int32)']"
)
TF_GRAPH = (
    "Graph execution error:\n\nDetected at node functional_1/embedding_1/GatherV2 defined at (most recent call last):\n"
    '  File "/usr/lib/python3.11/runpy.py", line 198, in _run_module_as_main\n'
    "    return _run_code(code, main_globals, None,\n"
    "indices[2,13] = 997 is not in [0, 977)\n\t [[{{node functional_1/embedding_1/GatherV2}}]] [Op:__inference_1]"
)
CONVERTER = (
    'in user code:\n\n    File "x.py", line 3, in f\n        return g(x)\n\n    ValueError: Erfc is not supported'
)


def test_the_keras_structure_line_with_what_it_expected() -> None:
    line = first_line(ValueError(KERAS_WRAPPED))
    assert line.startswith("The structure of `inputs` doesn't match the expected structure. Expected: {'token_ids'")
    assert "Received: inputs=" in line and "\x1b" not in line


def test_tensorflow_s_op_line_past_its_frames() -> None:
    assert first_line(RuntimeError(TF_GRAPH)) == "indices[2,13] = 997 is not in [0, 977)"


def test_a_converter_s_own_error_line() -> None:
    assert first_line(RuntimeError(CONVERTER)) == "ValueError: Erfc is not supported"


def test_a_plain_message_is_its_first_line_and_an_empty_one_its_type() -> None:
    assert first_line(ValueError("bad shape\nmore")) == "bad shape"
    assert first_line(KeyError()) == "KeyError"


def test_a_real_tensorflow_index_error(zoo) -> None:
    import keras

    tokens = keras.Input((4,), dtype="int32", name="tokens")
    model = keras.Model(tokens, keras.layers.Embedding(10, 2, name="embed")(tokens))
    try:
        model.predict_on_batch(np.full((2, 4), 97, np.int32))
    except Exception as error:  # TensorFlow's InvalidArgumentError
        assert first_line(error) == "indices[0,0] = 97 is not in [0, 10)"
    else:
        raise AssertionError("an out-of-range token id must fail")
