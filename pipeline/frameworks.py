"""Quiet, lazy imports of TensorFlow and friends, capture of what native code prints, and the log lines worth
keeping from it.

Importing this module imports no framework: `validate`, `schema` and `--help` import it and must stay fast.
Knows nothing of models, stages or reports.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

# Lines the TF/TFLite tool chain prints on every run; they say nothing about this model.
_BENIGN_LOG_MARKERS = (
    "absl::InitializeLog",
    "cuInit",
    "cuda_",
    "oneDNN",
    "This TensorFlow binary is optimized",
    "trackable_obj",
    "Ignored output_format",
    "Ignored drop_control_dependency",
    "Reading SavedModel",
    "Reading meta graph",
    "SavedModel load",
    "Restoring SavedModel",
    "fully_quantize",
    "Estimated count of arithmetic ops",
    "XNNPACK delegate",
    "Saved artifact at",
    "disabling MLIR crash reproducer",
    "tf.lite.Interpreter is deprecated",  # the TFLite calibrator's own interpreter warns about itself
    "_INTERPRETER_DELETION_WARNING",
    "Skipping runtime version metadata",
)


def _quiet_environment() -> None:
    # Warnings stay on: every conversion captures native output and keeps what matters for the report.
    # Forced, not defaulted: tf2onnx sets 3 on import, and child processes would inherit that.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def import_tensorflow() -> ModuleType:
    """Import TensorFlow with its start-up noise swallowed and its Python loggers at ERROR."""
    _quiet_environment()
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with captured_native_output():
        import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    return tf


@contextlib.contextmanager
def captured_native_output() -> Iterator[list[str]]:
    """Redirect file descriptors 1 and 2 (where C++ code writes) to a buffer.

    Yields a list that is filled with the captured lines when the block exits.
    """
    lines: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            yield lines
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, original in saved.items():
                os.dup2(original, fd)
                os.close(original)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


_NATIVE_PREFIX = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w.]+:\d+)\] ")
_LEVELS = {"I": "info", "W": "warning", "E": "error", "F": "fatal"}


def _readable_prefix(match: re.Match[str]) -> str:
    return f"{_LEVELS[match.group(1)]} ({match.group(2)}): "


_LOG_RECORD = re.compile(r"^(?:[IWEF]\d{4} |WARNING:|ERROR:|INFO:)")


def notable_log_lines(lines: list[str]) -> list[str]:
    """Warnings and errors from a converter's output, less what every run prints.

    Native log records can span lines (a header, then the op list); each record becomes one string.
    """
    records: list[list[str]] = []
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if _LOG_RECORD.match(text) or not records:
            records.append([text])
        else:
            records[-1].append(text)
    notable = []
    for record in records:
        text = " ".join(record)
        if any(marker in text for marker in _BENIGN_LOG_MARKERS):
            continue
        level = record[0][:1]
        if (level in "WE" and record[0][1:5].isdigit()) or re.search(r"warning|error", record[0], re.IGNORECASE):
            notable.append(_NATIVE_PREFIX.sub(_readable_prefix, text)[:600])
    return notable
