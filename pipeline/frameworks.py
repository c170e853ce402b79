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
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

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
    # onnxruntime 1.31 records telemetry in ~/.cache/Microsoft at import, for later upload; a confined process may
    # not write there and onnxruntime says so on stderr. Nothing here is sent anywhere: off (children inherit it).
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


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


def import_onnxruntime() -> ModuleType:
    """onnxruntime with its telemetry off (see _quiet_environment), also where something imported it before."""
    _quiet_environment()
    import onnxruntime

    onnxruntime.disable_telemetry_events()
    return onnxruntime


def import_frameworks() -> None:
    """TensorFlow, Keras and tf_keras imported, as a process must before pipeline.core.sandbox confines it: Keras and
    tf_keras read their settings (~/.keras/keras.json) at import, and TensorFlow imports Keras only lazily."""
    import_tensorflow()
    import keras  # noqa: F401

    with contextlib.suppress(ImportError):
        import tf_keras  # noqa: F401


@dataclass
class _Capture:
    """The process's one redirection of fds 1 and 2: shared by every block that captures at once (lanes capture
    from several threads), set up by the first and undone by the last."""

    depth: int = 0
    sink: Any = None  # the temporary file fds 1 and 2 point at
    saved: dict[int, int] = field(default_factory=dict)  # the fds as they were
    console: Any = None  # a text stream on the original fd 2: where log lines go while native output is captured


_CAPTURE = _Capture()
_CAPTURE_LOCK = threading.Lock()


@contextlib.contextmanager
def captured_native_output() -> Iterator[list[str]]:
    """Redirect file descriptors 1 and 2 (where C++ code writes) to a buffer.

    Yields a list that is filled with the captured lines when the block exits: what fds 1 and 2 received while it
    ran (from any thread: the descriptors are the process's). Blocks may nest or overlap across threads; the
    descriptors are restored when the last one exits, and `console_log` keeps log lines out of the buffer.
    """
    lines: list[str] = []
    with _CAPTURE_LOCK:
        sys.stdout.flush()
        sys.stderr.flush()
        if _CAPTURE.depth == 0:
            _CAPTURE.sink = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (closed by the last block out)
            _CAPTURE.saved = {fd: os.dup(fd) for fd in (1, 2)}
            _CAPTURE.console = os.fdopen(os.dup(_CAPTURE.saved[2]), "w", encoding="utf-8", errors="replace")
            for fd in _CAPTURE.saved:
                os.dup2(_CAPTURE.sink.fileno(), fd)
        _CAPTURE.depth += 1
        start = os.fstat(_CAPTURE.sink.fileno()).st_size
    try:
        yield lines
    finally:
        with _CAPTURE_LOCK:
            sys.stdout.flush()
            sys.stderr.flush()
            sink = _CAPTURE.sink
            end = os.fstat(sink.fileno()).st_size
            lines.extend(os.pread(sink.fileno(), end - start, start).decode("utf-8", "replace").splitlines())
            _CAPTURE.depth -= 1
            if _CAPTURE.depth == 0:
                for fd, original in _CAPTURE.saved.items():
                    os.dup2(original, fd)
                    os.close(original)
                _CAPTURE.console.close()
                sink.close()
                _CAPTURE.sink, _CAPTURE.saved, _CAPTURE.console = None, {}, None


def litert_interpreter(model: Path | bytes, delegate: str = "xnnpack", threads: int | None = None) -> Any:
    """The one way edgeport builds a LiteRT Interpreter: from a file or its bytes, with XNNPACK (LiteRT's default
    delegate, applied at allocation) or the reference builtin kernels only (`delegate: none`), on `threads`
    (None: LiteRT's default)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegate == "xnnpack" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    model_source = {"model_path": str(model)} if isinstance(model, Path) else {"model_content": model}
    return Interpreter(**model_source, num_threads=threads, experimental_op_resolver_type=resolver)


def console_log(message: str) -> None:
    """A line for the user on stderr, even while another thread captures native output (it would land in that
    capture's buffer otherwise, and be filtered away as converter noise)."""
    with _CAPTURE_LOCK:
        stream = _CAPTURE.console if _CAPTURE.depth and _writes_to_fd_2(sys.stderr) else sys.stderr
        print(message, file=stream, flush=True)


def _writes_to_fd_2(stream: Any) -> bool:
    """Whether `stream` ends in fd 2 (and a capture would swallow it); a replaced sys.stderr (a test's) does not."""
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False


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
