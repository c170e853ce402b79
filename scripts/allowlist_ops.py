"""Writes pipeline/sources/allowlist/ops.py: the TensorFlow ops an untrusted graph may hold, as literals.

Run once per TensorFlow or tf2onnx upgrade (`.venv/bin/python scripts/allowlist_ops.py`), read the diff, commit
it: the list is reviewed as data, never computed at run time. Ops come from TensorFlow's generated op modules
(`tensorflow.python.ops.gen_*_ops`) whose ops compute on tensors only: a module here is taken whole, less what
`_EXCLUDED` names; any module not here (io, datasets, debug, summaries, script, proto, collective, tpu ...) is left
out whole. tf2onnx's handler registry gives the two explained differences the test holds the list to.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGET = Path(__file__).resolve().parents[1] / "pipeline" / "sources" / "allowlist" / "ops.py"

# module → why its ops are allowed and tf2onnx may lack them
_PURE_MODULES = {
    "gen_array_ops": "_ARRAY",
    "gen_bitwise_ops": "_MATH",
    "gen_control_flow_ops": "_CONTROL",
    "gen_ctc_ops": "_MATH",
    "gen_cudnn_rnn_ops": "_RNN",
    "gen_functional_ops": "_CALL",
    "gen_image_ops": "_IMAGE",
    "gen_linalg_ops": "_MATH",
    "gen_list_ops": "_LISTS",
    "gen_manip_ops": "_ARRAY",
    "gen_map_ops": "_LISTS",
    "gen_math_ops": "_MATH",
    "gen_nn_ops": "_NN",
    "gen_random_ops": "_RANDOM",
    "gen_ragged_array_ops": "_ARRAY",
    "gen_ragged_conversion_ops": "_ARRAY",
    "gen_ragged_math_ops": "_MATH",
    "gen_resource_variable_ops": "_VARIABLES",
    "gen_rnn_ops": "_RNN",
    "gen_set_ops": "_ARRAY",
    "gen_sparse_ops": "_ARRAY",
    "gen_special_math_ops": "_MATH",
    "gen_spectral_ops": "_MATH",
    "gen_state_ops": "_VARIABLES",
    "gen_stateful_random_ops": "_RANDOM",
    "gen_stateless_random_ops": "_RANDOM",
    "gen_stateless_random_ops_v2": "_RANDOM",
    "gen_string_ops": "_STRINGS",
    "gen_training_ops": "_TRAINING",
    "gen_uniform_quant_ops": "_MATH",
}
# Ops taken one by one from modules that also hold file readers, queues or printing.
_PICKED = {
    "Assert": "_CONTROL",
    "StringToNumber": "_STRINGS",
    "DynamicPartition": "_ARRAY",
    "DynamicStitch": "_ARRAY",
    "ParallelDynamicStitch": "_ARRAY",
    **{name: "_TABLES" for name in (
        "AnonymousHashTable", "AnonymousMutableDenseHashTable", "AnonymousMutableHashTable",
        "AnonymousMutableHashTableOfTensors", "HashTable", "HashTableV2", "InitializeTable", "InitializeTableV2",
        "LookupTableExport", "LookupTableExportV2", "LookupTableFind", "LookupTableFindV2", "LookupTableImport",
        "LookupTableImportV2", "LookupTableInsert", "LookupTableInsertV2", "LookupTableRemoveV2", "LookupTableSize",
        "LookupTableSizeV2", "MutableDenseHashTable", "MutableDenseHashTableV2", "MutableHashTable",
        "MutableHashTableOfTensors", "MutableHashTableOfTensorsV2", "MutableHashTableV2",
    )},
}  # fmt: skip
_TENSOR_ARRAYS = "TensorArray"  # every TensorArray* op of data_flow_ops: v1 control flow's loop state
# Ops of the pure modules that are not pure computation.
_EXCLUDED = {
    "ImmutableConst": "memory-maps a file named in its attrs",
    "Abort": "kills the process that loads the model",
    "RemoteCall": "runs a function on another device or task named in its input",
    "Any": "",  # `typing.Any`, imported by every gen module; the op itself comes from gen_math_ops
}
_DECODERS = ("Decode", "Encode", "ExtractJpegShape")  # parsers of encoded images: a model has no need of them
# Refused, though tf2onnx converts them: why.
_REFUSED_CONVERTIBLE = {
    "FIFOQueueV2": "an input pipeline's queue, filled by readers outside the model",
    "QueueDequeueV2": "an input pipeline's queue, filled by readers outside the model",
    "QueueDequeueManyV2": "an input pipeline's queue, filled by readers outside the model",
    "QueueDequeueUpToV2": "an input pipeline's queue, filled by readers outside the model",
    "IteratorV2": "a tf.data iterator: its dataset functions can read files (TextLineDataset, TFRecordDataset)",
    "IteratorGetNext": "a tf.data iterator: its dataset functions can read files (TextLineDataset, TFRecordDataset)",
}
SAVER_OPS = (
    "MergeV2Checkpoints", "Restore", "RestoreSlice", "RestoreV2", "Save", "SaveSlices", "SaveV2", "ShardedFilename",
    "ShardedFilespec",
)  # fmt: skip
ASSET_OPS = ("InitializeTableFromTextFile", "InitializeTableFromTextFileV2")

_REASONS = {
    "_ARRAY": "array, sparse, ragged or set op tf2onnx has no handler for: pure; the onnx stage fails if it stays",
    "_CALL": "a call or functional control flow: the called function is checked as well",
    "_CONTROL": "v1 control flow or an assertion (raises in the graph, writes nowhere): the converters rewrite it",
    "_IMAGE": "image op tf2onnx has no handler for: pure; the onnx stage fails if it stays",
    "_LISTS": "tensor list, map or TensorArray: loop state the converters lower",
    "_MATH": "math tf2onnx has no handler for: pure; the onnx stage fails if it stays",
    "_NN": "nn op tf2onnx has no handler for (gradients of training graphs among them): pure; pruned or refused later",
    "_RANDOM": "random numbers: pure computation, seeded or not",
    "_RNN": "fused RNN kernel (tf_keras GRU/LSTM): pure; the converters take the tf.function that calls it",
    "_STRINGS": "string op tf2onnx has no handler for: pure (regexes, joins and splits in memory)",
    "_TABLES": "a hash table created and filled from tensors (never from a file)",
    "_TRAINING": "an optimizer's update (training graphs): pure arithmetic on variables; pruned before conversion",
    "_VARIABLES": "variable plumbing: read, assigned, frozen to constants before conversion",
}


def _registered(tf: object) -> set[str]:
    return {name for name in dir(tf.raw_ops) if name[:1].isupper()}  # type: ignore[attr-defined]


def allowed_ops(tf: object) -> dict[str, str]:
    """op → the reason key of its family."""
    registered = _registered(tf)
    allowed: dict[str, str] = {}
    for module_name, reason in _PURE_MODULES.items():
        module = importlib.import_module(f"tensorflow.python.ops.{module_name}")
        for name in vars(module):
            if name in registered and name not in _EXCLUDED and not name.startswith(_DECODERS):
                allowed.setdefault(name, reason)
    data_flow = importlib.import_module("tensorflow.python.ops.gen_data_flow_ops")
    allowed.update({name: "_LISTS" for name in vars(data_flow) if name.startswith(_TENSOR_ARRAYS)})
    allowed.update({name: reason for name, reason in _PICKED.items() if name in registered})
    allowed["Any"] = "_MATH"
    return allowed


def tf2onnx_ops(tf: object) -> set[str]:
    """The TensorFlow ops tf2onnx has a handler for (any domain, any opset); its TFLite and internal names left out."""
    from tf2onnx import handler, tfonnx  # noqa: F401  (tfonnx imports every handler module)

    names = {name for opsets in handler.tf_op.get_opsets().values() for handlers in opsets for name in handlers}
    return names & _registered(tf)


def _literal_set(names: set[str] | tuple[str, ...], indent: str = "    ") -> str:
    lines, line = [], indent
    for name in sorted(names):
        item = f'"{name}", '
        if len(line) + len(item) > 116:
            lines.append(line.rstrip())
            line = indent
        line += item
    lines.append(line.rstrip())
    return "\n".join(lines)


def function_attr_ops(names: set[str]) -> set[str]:
    """Those of `names` whose op declares an attr holding a function (While's body, a call's `f`)."""
    from tensorflow.python.framework import op_def_registry

    kinds = ("func", "list(func)")
    return {name for name in names if any(attr.type in kinds for attr in op_def_registry.get(name).attr)}


def render(tf: object) -> str:
    allowed = allowed_ops(tf)
    convertible = tf2onnx_ops(tf)
    missing = sorted(set(allowed) - convertible)
    refused = sorted(convertible - set(allowed))
    unexplained = [name for name in refused if name not in _REFUSED_CONVERTIBLE]
    if unexplained:
        sys.exit(f"tf2onnx converts ops left out with no reason in _REFUSED_CONVERTIBLE: {unexplained}")
    reasons = "\n".join(f"{key} = {text!r}" for key, text in sorted(_REASONS.items()))
    not_converted = "\n".join(f'    "{name}": {allowed[name]},' for name in missing)
    refused_lines = "\n".join(f'    "{name}": {_REFUSED_CONVERTIBLE[name]!r},' for name in refused)
    return TEMPLATE.format(
        version=getattr(tf, "__version__", "?"),
        allowed=_literal_set(set(allowed)),
        saver=_literal_set(SAVER_OPS),
        assets=_literal_set(ASSET_OPS),
        calling=_literal_set(function_attr_ops(set(allowed))),
        reasons=reasons,
        not_converted=not_converted,
        refused=refused_lines,
    )


TEMPLATE = '''"""The TensorFlow ops an untrusted graph may hold: pure computation on tensors, nothing else.

Every op of every graph an untrusted model holds (TF1 GraphDef, meta graph, SavedModel) and of every function in
its library must be in ALLOWED_OPS; SAVER_OPS only where the meta graph's saver reaches them and nothing else does;
ASSET_OPS only reading a file the model ships as an asset. Anything else (ReadFile, WriteFile, PyFunc, every
dataset and reader, DebugIdentity, PrintV2, DecodeProtoV2, LoadAndRemapMatrix, ImmutableConst, collectives,
summaries, ops that TensorFlow adds in a later version) is refused untrusted, naming the op and where it sits.

Generated by `scripts/allowlist_ops.py` from TensorFlow {version}'s op modules and kept literal: rerun it on an upgrade
and review the diff. tests/sources/test_allowlist_ops.py holds the list to tf2onnx's handler registry: the ops
allowed that tf2onnx cannot convert and those it converts that are refused are exactly the two dicts below, each
op with why. TFLite's legalizations are compiled MLIR patterns with no Python registry to read, so they are not
compared: an allowed op TFLite cannot lower fails the tflite stage, which is not a safety question.

A leaf: no imports; knows nothing of protobuf, recipes or runs.
"""

from __future__ import annotations

# fmt: off
ALLOWED_OPS = frozenset({{
{allowed}
}})

# Read or write checkpoint files at the path the saver is given: allowed only in the saver's own closure.
SAVER_OPS = frozenset({{
{saver}
}})

# Fill a lookup table from a text file: allowed only when the file is an asset of the model.
ASSET_OPS = frozenset({{
{assets}
}})

# The allowed ops that call a library function named in an attr: only their attrs are read for calls (an allowed
# op without one cannot call anything, so reading its attrs would cost time on every node of a large graph).
FUNCTION_ATTR_OPS = frozenset({{
{calling}
}})

{reasons}

# Allowed, though tf2onnx has no handler for them: why each is safe and what converting it does.
NOT_CONVERTED_BY_TF2ONNX: dict[str, str] = {{
{not_converted}
}}

# tf2onnx converts them, but they are refused untrusted: why.
REFUSED_THOUGH_TF2ONNX_CONVERTS: dict[str, str] = {{
{refused}
}}
# fmt: on
'''


def main() -> None:
    import tensorflow as tf

    TARGET.write_text(render(tf), encoding="utf-8")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
