"""Conversion stages in a child process: a converter that aborts in native code costs one output, not the run.

The TFLite converter and tf2onnx can abort or segfault inside C++. A worker process (spawned, so it
shares no TensorFlow state with the parent) loads the source model itself and runs the stages it is
sent, one at a time. When it dies, the stage it was running becomes a StageError naming the signal, and
the next stage gets a fresh worker. A stage that runs past its timeout (a converter that hangs) has its
worker killed the same way. Knows stages and sources (models load through pipeline.sources.keras);
nothing of parity or reports.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.data import Dataset
from pipeline.errors import StageError, first_line
from pipeline.frameworks import import_tensorflow
from pipeline.recipe import SourceSpec
from pipeline.sources import load_source_spec
from pipeline.sources.keras import load_keras_model
from pipeline.stages import STAGES, StageContext
from pipeline.stages.finetune import import_tfmot

_POLL_SECONDS = 0.2
# A worker that has not yet answered may still be importing TensorFlow: that wait is not the stage's time,
# but a worker that never gets that far is hung too.
_START_SECONDS = 300.0


@dataclass
class StageRequest:
    """Everything a worker needs, as plain data: the source by its recipe spec, data by file."""

    kind: str
    options: dict[str, Any]
    source_spec: dict[str, Any]
    base_dir: str
    trusted: bool
    work_dir: str
    key: str
    data_files: dict[str, str]  # section → .npz with inputs (by name) and optional __labels__
    batch_size: int
    upstream: dict[str, Any] | None = None  # a Keras model file an earlier stage wrote; None: the source


class StageWorker:
    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._connection: Connection | None = None
        self._answered = False  # past its start-up: it has taken a request before

    def start(self) -> None:
        """Start early: the child's TensorFlow import then overlaps the parent's own work."""
        if self._process is None or not self._process.is_alive():
            parent, child = self._context.Pipe()
            self._process = self._context.Process(target=_serve, args=(child,), daemon=True, name="edgeport-stage")
            self._process.start()
            child.close()
            self._connection, self._answered = parent, False

    def run(self, request: StageRequest, log: Any, timeout: float | None = None) -> Artifact:
        """Run one stage in the worker; past `timeout` seconds of the stage's own time the worker is killed."""
        self.start()
        assert self._connection is not None
        try:
            self._connection.send(request)
        except OSError:  # the worker died since the last stage: one fresh start, then give up
            self._process = None
            self.start()
            self._connection.send(request)
        limit = timeout or float("inf")
        started, deadline = self._answered, time.monotonic() + (limit if self._answered else max(limit, _START_SECONDS))
        while True:
            try:
                ready = self._connection.poll(_POLL_SECONDS)
                message = self._connection.recv() if ready else None
            except (EOFError, OSError):  # the pipe broke: the worker is gone
                raise self._crashed() from None
            if ready:
                assert message is not None
                if message[0] == "started":
                    self._answered = started = True
                    deadline = time.monotonic() + limit
                elif message[0] == "log":
                    log(message[1])
                else:
                    return _reply(message)
            elif not self._process.is_alive():
                raise self._crashed()
            if time.monotonic() > deadline:
                raise self._timed_out(timeout if started else None)

    def close(self) -> None:
        if self._process is not None and self._process.is_alive():
            assert self._connection is not None
            with contextlib.suppress(OSError):
                self._connection.send(None)
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
        self._process = None

    def _timed_out(self, timeout: float | None) -> StageError:
        self._process.kill()
        self._process.join(timeout=10)
        self._process = None
        if timeout is None:
            what = f"the worker process did not take the stage within {_START_SECONDS:g} s of starting"
        else:
            what = f"the stage ran past its timeout of {timeout:g} s (stage_timeout / --stage-timeout)"
        return StageError(f"{what}; its worker process was killed and the other outputs went on")

    def _crashed(self) -> StageError:
        self._process.join(timeout=10)
        code = self._process.exitcode
        self._process = None
        if code is not None and code < 0:
            cause = f"killed by {signal.Signals(-code).name}"
        else:
            cause = f"exited with status {code}"
        return StageError(f"the stage crashed its worker process ({cause}); the other outputs went on")


def _reply(message: tuple[Any, ...]) -> Artifact:
    if message[0] == "error":
        raise StageError(message[1])
    fields = message[1]
    return Artifact(
        kind=fields["kind"],
        path=Path(fields["path"]),
        key=fields["key"],
        signature=fields["signature"],
        flavour=fields["flavour"],
        details=fields["details"],
        warnings=fields["warnings"],
    )


def save_dataset(dataset: Any, path: Path) -> str:
    arrays = dict(dataset.inputs)
    if dataset.labels is not None:
        arrays["__labels__"] = dataset.labels
    np.savez(path, **arrays)
    return str(path)


# --- the child side ---------------------------------------------------------------------------------


def _serve(connection: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import_tensorflow()  # while the parent loads the source and data: the two imports overlap
    sources: dict[str, Any] = {}
    while True:
        request = connection.recv()
        if request is None:
            return
        connection.send(("started",))
        try:
            artifact = _run(request, sources, lambda text: connection.send(("log", text)))
            connection.send(("ok", _fields(artifact)))
        except StageError as error:
            connection.send(("error", str(error)))
        except Exception as error:  # a bug or an unexpected library failure: reported, the worker lives on
            connection.send(("error", f"{type(error).__name__}: {first_line(error)}"))
            traceback.clear_frames(error.__traceback__)


def _run(request: StageRequest, sources: dict[str, Any], log: Any) -> Artifact:
    if request.upstream is not None:
        upstream = _saved_model(request.upstream, request.trusted, sources)
    else:
        cache_key = f"{request.source_spec}|{request.base_dir}|{request.trusted}"
        if cache_key not in sources:
            spec = SourceSpec.model_validate(request.source_spec)
            sources[cache_key] = load_source_spec(spec, Path(request.base_dir), request.trusted).artifact
        upstream = sources[cache_key]
    datasets = {}
    for section, file in request.data_files.items():
        with np.load(file, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        labels = arrays.pop("__labels__", None)
        datasets[section] = Dataset(section, file, arrays, labels)
    calibration = datasets.get("calibration")
    stage = STAGES[request.kind]
    context = StageContext(
        work_dir=Path(request.work_dir),
        key=request.key,
        log=log,
        fine_tune=datasets.get("fine_tune"),
        calibration=(lambda: calibration.batches(request.batch_size)) if calibration is not None else None,
    )
    return stage().run(upstream, stage.Options.model_validate(request.options), context)


def load_saved_keras(artifact: Artifact, trusted: bool) -> Artifact:
    """A trained model from the cache, loaded as its Keras flavour (QAT models inside tfmot's scope)."""
    loaded = _saved_model(artifact.to_json(), trusted, {})
    loaded.warnings = list(artifact.warnings)
    return loaded


def _saved_model(fields: dict[str, Any], trusted: bool, loaded: dict[str, Any]) -> Artifact:
    """A Keras model an earlier stage (prune, qat, cluster) saved, loaded as that stage's Keras flavour."""
    path, flavour = fields["path"], fields["flavour"]
    if path not in loaded:
        scope = None
        if flavour == "tf_keras" and fields["details"].get("qat"):  # fake-quant wrappers load only in tfmot's scope
            scope = import_tfmot().quantization.keras.quantize_scope()
        model = load_keras_model(path, flavour, trusted, scope)
        loaded[path] = Artifact(
            kind="keras",
            path=Path(path),
            key=fields["key"],
            flavour=flavour,
            handle=model,
            details=fields["details"],
        )
    return loaded[path]


def _fields(artifact: Artifact) -> dict[str, Any]:
    return {
        "kind": artifact.kind,
        "path": str(artifact.path),
        "key": artifact.key,
        "signature": artifact.signature,
        "flavour": artifact.flavour,
        "details": artifact.details,
        "warnings": artifact.warnings,
    }
