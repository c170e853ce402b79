"""Conversion stages in a child process: a converter that aborts in native code costs one output, not the run.

The TFLite converter and tf2onnx can abort or segfault inside C++. A worker process (spawned, so it
shares no TensorFlow state with the parent) loads the source model itself and runs the stages it is
sent, one at a time. When it dies, the stage it was running becomes a StageError naming the signal, and
the next stage gets a fresh worker. A stage that runs past its timeout (a converter that hangs) has its
worker killed the same way.

For a run that needs no TensorFlow of its own (pipeline.run.remote), the worker also describes the source and
records its outputs on the evaluation data (SourceRequest): the parent then never imports TensorFlow. That work
is no stage: stage_timeout does not apply (in process it has no timeout either), only the start-up limit; a
crash is a StageError saying what the worker was doing.

The worker does not outlive the run: a parent that stops mid-request (Ctrl-C, SIGTERM) kills it at once, and one
killed outright (SIGKILL) takes it along (PR_SET_PDEATHSIG on Linux, and the worker watching its parent id). Its
temporary files (TensorFlow autograph's generated modules among them) go to a work folder of its own, removed
when it ends.

The worker confines itself (pipeline.core.sandbox, Landlock) once TensorFlow, Keras and tf_keras are imported (they
read ~/.keras and their own files at import) and before it takes its first request: the parent's first message is
the Roots of the run (the model, the cache, the run's work folder); the worker adds its own work folder and says
back what confines it. Every model it loads, trusted or not, runs inside that sandbox: trust lets code run, not
escape. Knows stages and sources (models load through pipeline.sources.keras); of parity and reports nothing, of
runtimes only evaluate.predict_dataset.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.artifact import Artifact
from pipeline.core.heap import keep_heap_steady
from pipeline.core.leftovers import make_work_dir, remove_work_dirs_of
from pipeline.core.recording import OutputRecording
from pipeline.core.sandbox import Roots, confine, confined_here, said
from pipeline.core.stored import open_npz, save_npz
from pipeline.data import Dataset
from pipeline.errors import DataError, EdgeportError, ModelError, RecipeError, StageError, first_line
from pipeline.frameworks import import_frameworks, import_tensorflow
from pipeline.recipe import SourceSpec
from pipeline.sources import Source, describe_source, import_source_modules, load_source_spec
from pipeline.sources.keras import load_keras_model
from pipeline.stages import STAGES, StageContext
from pipeline.stages.finetune import import_tfmot

_POLL_SECONDS = 0.2
# A worker that has not yet answered may still be importing TensorFlow: that wait is not the stage's time,
# but a worker that never gets that far is hung too.
_START_SECONDS = 300.0
_REFUSALS = {error.__name__: error for error in (EdgeportError, RecipeError, ModelError, DataError)}
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_WORK_KIND = "worker-"


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
    sample_shapes: dict[str, list[int]] = field(default_factory=dict)  # the evaluation data's, per input


@dataclass
class SourceRequest:
    """Work on the source itself: describe it (`evaluation` None: describe_source's dict), or record its outputs
    on the evaluation inputs (`evaluation`: a recording of them) into `directory` (an OutputRecording)."""

    source_spec: dict[str, Any]
    base_dir: str
    trusted: bool
    evaluation: str | None = None
    directory: str | None = None
    batch_size: int = 64


class SourceFailed(Exception):
    """The source model raised on the evaluation data in the worker; its message is the error's first line."""


class StageWorker:
    def __init__(self, roots: Roots) -> None:
        self.roots = roots  # what the worker may read and write besides its runtime and its own work folder
        self.sandbox: str | None = None  # what confines it, once it has said (SandboxState.describe())
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._connection: Connection | None = None
        self._answered = False  # past its start-up: it has taken a request before
        self._busy = False  # a request sent and not yet answered: the worker will not read a goodbye

    def start(self) -> None:
        """Start early: the child's TensorFlow import then overlaps the parent's own work."""
        if self._process is None or not self._process.is_alive():
            _refuse_if_confined()
            parent, child = self._context.Pipe()
            from_main = threading.current_thread() is threading.main_thread()
            arguments = (child, os.getpid(), from_main)
            self._process = self._context.Process(target=_serve, args=arguments, daemon=True, name="edgeport-stage")
            self._process.start()
            child.close()
            parent.send(self.roots)  # its first message, read once its imports are done: before any request
            self._connection, self._answered = parent, False

    def run(self, request: StageRequest, log: Any, timeout: float | None = None) -> Artifact:
        """Run one stage in the worker; past `timeout` seconds of the stage's own time the worker is killed."""
        try:
            return _reply(self._exchange(request, log, timeout, None))
        except StageError as error:
            raise _explained(error, request) from None

    def source_work(self, request: SourceRequest) -> dict[str, Any]:
        """Describe the source, or record its outputs, in the worker. Refusals (an untrusted or corrupt model) are
        raised as the error the parent would have raised; a model that fails on the data as SourceFailed."""
        doing = "running the source model on data.evaluation" if request.evaluation else "loading the source model"
        message = self._exchange(request, lambda _: None, None, doing)
        if message[0] == "refused":
            raise _REFUSALS.get(message[1], EdgeportError)(message[2])
        if message[0] == "failed":
            raise SourceFailed(message[1])
        if message[0] == "error":
            raise StageError(message[1])
        return message[1]

    def _exchange(
        self, request: StageRequest | SourceRequest, log: Any, timeout: float | None, doing: str | None
    ) -> tuple[Any, ...]:
        """Send one request and wait for its answer; `doing` (None: a stage) words a crash or a missed start."""
        self.start()
        assert self._connection is not None
        try:
            self._connection.send(request)
        except OSError:  # the worker died since the last stage: one fresh start, then give up
            self._process = None
            self.start()
            self._connection.send(request)
        self._busy = True
        message = self._answer(timeout, log, doing)
        self._busy = False
        return message

    def _answer(self, timeout: float | None, log: Any, doing: str | None) -> tuple[Any, ...]:
        assert self._connection is not None
        limit = timeout or float("inf")
        first = limit if self._answered else max(timeout or 0.0, _START_SECONDS)  # the start-up limit, at least
        started, deadline = self._answered, time.monotonic() + first
        while True:
            try:
                ready = self._connection.poll(_POLL_SECONDS)
                message = self._connection.recv() if ready else None
            except (EOFError, OSError):  # the pipe broke: the worker is gone
                raise self._crashed(doing) from None
            if ready:
                assert message is not None
                if message[0] == "started":
                    self._answered = started = True
                    deadline = time.monotonic() + limit
                elif message[0] == "sandbox":
                    self.sandbox = message[1]
                elif message[0] == "log":
                    log(message[1])
                else:
                    return message
            elif not self._process.is_alive():
                raise self._crashed(doing)
            if time.monotonic() > deadline:
                raise self._timed_out(timeout if started else None, doing)

    def close(self) -> None:
        """Let the worker exit; one still busy with a request (the run was interrupted in it) is killed."""
        if self._process is not None and self._process.is_alive():
            assert self._connection is not None
            if not self._busy:
                with contextlib.suppress(OSError):
                    self._connection.send(None)
                self._process.join(timeout=5)
            if self._process.is_alive():
                self._kill()
        self._process, self._busy = None, False

    def _kill(self) -> None:
        """Kill the worker and remove the work folder it had no chance to."""
        self._process.kill()
        self._process.join(timeout=10)
        remove_work_dirs_of(self._process.pid, _WORK_KIND)

    def _timed_out(self, timeout: float | None, doing: str | None) -> StageError:
        self._kill()
        self._process, self._busy = None, False
        return _timeout_error(timeout, doing)

    def _crashed(self, doing: str | None) -> StageError:
        self._process.join(timeout=10)
        code = self._process.exitcode
        remove_work_dirs_of(self._process.pid, _WORK_KIND)
        self._process, self._busy = None, False
        return _crash_error(code, doing)


def _refuse_if_confined() -> None:
    """A process that has confined itself cannot start a working worker: a child inherits its Landlock rules,
    whose `/proc/self` is the parent's folder, and TensorFlow aborts in a process that cannot read its own
    `/proc/self/cmdline`."""
    if confined_here():
        raise StageError(
            "the conversion worker process is gone, and this process cannot start a fresh one: it loaded the "
            "model and is confined (a process it starts could not read its own /proc entries, which "
            "TensorFlow needs); the outputs it had left are not built: rerun them (--only NAME)"
        )


def _timeout_error(timeout: float | None, doing: str | None) -> StageError:
    """A worker killed past its start-up limit (`timeout` None) or its stage's timeout."""
    if timeout is None:
        what = f"the worker process did not take the {'stage' if doing is None else 'source model'} within "
        what += f"{_START_SECONDS:g} s of starting"
    else:
        what = f"the stage ran past its timeout of {timeout:g} s (stage_timeout / --stage-timeout)"
    went_on = " and the other outputs went on" if doing is None else "; no output was built"
    return StageError(f"{what}; its worker process was killed{went_on}")


def _crash_error(code: int | None, doing: str | None) -> StageError:
    """What a worker that died with `code` while doing `doing` (None: a stage) means for the run."""
    cause = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited with status {code}"
    if doing is not None:
        return StageError(f"the conversion worker process crashed while {doing} ({cause}); no output was built")
    return StageError(f"the stage crashed its worker process ({cause}); the other outputs went on")


def _explained(error: StageError, request: StageRequest) -> StageError:
    """A crash of the stage with its known cause added, where one is known; other errors as they are."""
    hint = _crash_hint(request) if "crashed its worker process (killed by SIGSEGV)" in str(error) else None
    return error if hint is None else StageError(f"{error}. {hint}")


def _crash_hint(request: StageRequest) -> str | None:
    """A known cause of a stage's crash, where one is known: TensorFlow's calibrator on recurrent layers."""
    if request.kind == "tflite" and request.options.get("quantize") in {"int8", "int16x8"}:
        return (
            "One known cause: TensorFlow's calibrator crashes on GRU and LSTM layers in full-integer quantization "
            "(tensorflow#87468, #76672); for a recurrent model use quantize: dynamic (int8 weights, float "
            "activations), which calibrates nothing"
        )
    return None


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
    save_npz(path, arrays)
    return str(path)


# --- the child side ---------------------------------------------------------------------------------


def _serve(connection: Connection, parent: int, from_main_thread: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent(parent, from_main_thread)
    work = _own_temp_dir()
    keep_heap_steady()
    import_tensorflow()  # while the parent loads the source and data: the two imports overlap
    _confine(connection, work)
    sources: dict[str, Any] = {}
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):  # the parent is gone (its end of the pipe closed): as good as a goodbye
            request = None
        if request is None:  # done: everything it made is in files the parent holds
            # TensorFlow's teardown at interpreter exit costs most of a second on 2 cores, and the parent waits;
            # os._exit skips the atexit hooks too, autograph's removal of its files among them: the folder goes.
            shutil.rmtree(work, ignore_errors=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        connection.send(("started",))
        if isinstance(request, SourceRequest):
            connection.send(_source_reply(request, sources))
            continue
        try:
            artifact = _run(request, sources, lambda text: connection.send(("log", text)))
            connection.send(("ok", _fields(artifact)))
        except StageError as error:
            connection.send(("error", str(error)))
        except Exception as error:  # a bug or an unexpected library failure: reported, the worker lives on
            connection.send(("error", _said(error)))
            traceback.clear_frames(error.__traceback__)


def _confine(connection: Connection, work: Path) -> None:
    """Confine this process to the run's roots before it takes any request; a parent gone first is a goodbye."""
    import_frameworks()
    try:
        roots = connection.recv()
    except (EOFError, OSError):
        roots = None
    if roots is None:
        shutil.rmtree(work, ignore_errors=True)
        os._exit(0)
    state = confine(roots.reads, roots.writes, own=work)
    connection.send(("sandbox", state.describe()))


def _die_with_parent(parent: int, from_main_thread: bool) -> None:
    """A parent killed outright runs no finally block: the worker must not convert on, for no one, for minutes."""
    if sys.platform == "linux" and from_main_thread:
        # The signal comes when the parent *thread* that started this process ends: the main thread's end is the
        # parent's, a lane thread's is not (the watch below covers those workers).
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # gone already, before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="edgeport-parent-watch").start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _own_temp_dir() -> Path:
    """Temporary files in a marked folder of this worker's: removed at its exit, swept by a later run if it is
    killed. Autograph writes a module a converted function into the temp directory and removes them at
    interpreter exit, which this process skips."""
    work = make_work_dir(_WORK_KIND)
    tempfile.tempdir = str(work)
    os.environ["TMPDIR"] = str(work)  # for native code and child processes too
    return work


def _source(source_spec: dict[str, Any], base_dir: str, trusted: bool, sources: dict[str, Any]) -> Source:
    """The source model, loaded once per worker."""
    cache_key = f"{source_spec}|{base_dir}|{trusted}"
    if cache_key not in sources:
        sources[cache_key] = load_source_spec(SourceSpec.model_validate(source_spec), Path(base_dir), trusted)
    return sources[cache_key]


def _source_reply(request: SourceRequest, sources: dict[str, Any]) -> tuple[Any, ...]:
    try:
        source = _source(request.source_spec, request.base_dir, request.trusted, sources)
        return ("ok", describe_source(source) if request.evaluation is None else _record(source, request))
    except SourceFailed as error:
        return ("failed", str(error))
    except StageError as error:
        return ("error", str(error))
    except EdgeportError as error:  # bad input: the parent raises it as its own, exit 2 with this message
        return ("refused", type(error).__name__, str(error))
    except Exception as error:
        traceback.clear_frames(error.__traceback__)
        if request.evaluation is not None:  # as in process: whatever fails while running the data is the model's
            return ("failed", said(error, first_line(error)))  # worded as the in-process run words it
        return ("error", _said(error))


def _record(source: Source, request: SourceRequest) -> dict[str, Any]:
    """The source's outputs on the evaluation inputs, as the parent's reference_predictions would make them: both
    read and written a batch at a time (the parent recorded the inputs), so memory does not grow with samples."""
    from pipeline.evaluate import predict_batches
    from pipeline.run.determinism import check_determinism

    assert request.evaluation is not None and request.directory is not None
    inputs = OutputRecording.open(Path(request.evaluation))
    if inputs is None:
        raise StageError(f"the evaluation inputs in {request.evaluation} are incomplete")
    batches = inputs.chunks(request.batch_size)
    try:
        predictions = predict_batches(source.artifact, "source", batches, directory=Path(request.directory))
        first = next(inputs.chunks(request.batch_size))
        determinism = check_determinism(source.artifact, first, predictions.outputs).to_json()
    except EdgeportError:
        raise
    except Exception as error:
        raise SourceFailed(said(error, first_line(error))) from None
    return {"label": predictions.label, "runtime": predictions.runtime, "determinism": determinism}


def _said(error: Exception) -> str:
    """An error in one line with its type; a denied file said as the sandbox's doing (core.sandbox.said)."""
    return (
        said(error, first_line(error))
        if isinstance(error, PermissionError)
        else f"{type(error).__name__}: {first_line(error)}"
    )


def _run(request: StageRequest, sources: dict[str, Any], log: Any) -> Artifact:
    if request.upstream is not None:
        # A model a stage made of the source has the source's custom classes: their modules first.
        import_source_modules(SourceSpec.model_validate(request.source_spec), Path(request.base_dir))
        upstream = _saved_model(request.upstream, request.trusted, sources)
    else:
        upstream = _source(request.source_spec, request.base_dir, request.trusted, sources).artifact
    datasets = {}
    for section, file in request.data_files.items():
        arrays = {name: member() for name, member in open_npz(Path(file)).items()}  # read a batch at a time
        labels = arrays.pop("__labels__", None)
        datasets[section] = Dataset(section, file, arrays, None if labels is None else np.asarray(labels))
    calibration = datasets.get("calibration")
    stage = STAGES[request.kind]
    context = StageContext(
        work_dir=Path(request.work_dir),
        key=request.key,
        log=log,
        fine_tune=datasets.get("fine_tune"),
        calibration=(lambda: calibration.batches(request.batch_size)) if calibration is not None else None,
        sample_shapes=request.sample_shapes,
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
