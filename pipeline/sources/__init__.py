"""Source models: a `.keras` / `.h5` file, a SavedModel directory, a builder plus saved weights, or a TF1 graph.

The package's public API. Modules: model (Source and tensor specs, a leaf), keras (the one Keras loader),
trust (serialized code in Keras configs), imports (the modules of custom classes), files (model files), weights
(weights files), builders (builder + weights), section (a recipe's source section), lazy (the run's SourceHandle),
checks (recipe-time file checks), graphdef (a TF1 GraphDef read and repaired), tf1 (TF1 frozen graphs and
checkpoints).
Imports no framework until a model is loaded, and nothing of recipes, stages, runtimes, runs or reports.
"""

from pipeline.sources.checks import check_source_files
from pipeline.sources.files import check_model_path, load_source
from pipeline.sources.lazy import SourceHandle, describe_source
from pipeline.sources.model import Source, keras_call_inputs, keras_tensor_specs, signature_tensor_specs
from pipeline.sources.section import import_source_modules, load_source_spec, source_key

__all__ = [
    "Source",
    "SourceHandle",
    "check_model_path",
    "check_source_files",
    "describe_source",
    "import_source_modules",
    "keras_call_inputs",
    "keras_tensor_specs",
    "load_source",
    "load_source_spec",
    "signature_tensor_specs",
    "source_key",
]
