"""Calibration / evaluation / fine-tune data: npz, npy or seeded random arrays, checked against the model.

Knows the model only through its input TensorSpecs; imports no framework. Arrays from files stay in their files
and are read a batch at a time (pipeline.core.stored): a run's memory does not grow with the data. Labels, one
integer a sample, are read whole.

Every check runs before any stage: one streaming pass over each input (a chunk at a time, memory flat) refuses
NaN/Inf and a cast to the model's dtype that changes a value (int64 2**24 + 1 to float32), unless the section
says `cast: true`. Checking as batches are consumed instead would fail a run after its conversions, and in
whichever process (a conversion worker, a runtime) read the batch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.stored import (
    ArrayLike,
    NotRegularFileError,
    StoredArray,
    open_npy,
    open_npz,
    regular_file_problem,
    row_chunks,
)
from pipeline.core.tensors import TensorSpec
from pipeline.errors import DataError
from pipeline.recipe import DataSpec, RandomSpec

DEFAULT_EVALUATION = DataSpec(random=RandomSpec(samples=64, seed=0))


@dataclass
class Dataset:
    """Arrays keyed by model input name, in the model's input order, with optional integer labels."""

    section: str
    origin: str
    inputs: dict[str, ArrayLike]  # in memory (random data) or read from the file a slice at a time
    labels: np.ndarray | None = None
    # The reference output the labels are classes of (`labels.output`, else the one output that can hold them).
    labelled_output: str | None = None
    labels_key: str | None = None  # where the labels came from (npz key or .npy file), for messages

    @property
    def samples(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batches(self, size: int = 64) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, self.samples, size):
            yield {name: array[start : start + size] for name, array in self.inputs.items()}

    def sample_shapes(self) -> dict[str, list[int]]:
        """Each input's shape without the sample axis: the sizes a fixed-shape conversion gives free dimensions."""
        return {name: [int(d) for d in array.shape[1:]] for name, array in self.inputs.items()}

    def digest(self) -> str:
        """Content hash of the arrays (and labels): part of the cache key of whatever they feed."""
        digest = hashlib.sha256()
        for name, array in [*self.inputs.items(), ("__labels__", self.labels)]:
            if array is not None:
                digest.update(f"{name}|{array.dtype}|{array.shape}".encode())
                for chunk in row_chunks(array):
                    digest.update(chunk.data)
        return digest.hexdigest()

    def describe(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "samples": self.samples,
            "labels": self.labels is not None,
            "inputs": {name: [list(array.shape), str(array.dtype)] for name, array in self.inputs.items()},
        }


def load_dataset(section: str, spec: DataSpec | None, base_dir: Path, model_inputs: list[TensorSpec]) -> Dataset:
    """Load one `data.<section>` (paths relative to `base_dir`) and check every array against the model's inputs."""
    place = f"data.{section}"
    if spec is None:
        spec = DEFAULT_EVALUATION
        place += " (default: random)"
    if spec.random is not None:
        return _random(section, place, spec.random, model_inputs)
    if spec.npz is not None:
        inputs, labels, origin = _from_npz(place, (base_dir / spec.npz).resolve(), spec, model_inputs)
    else:
        assert spec.npy is not None
        inputs, labels, origin = _from_npy(place, base_dir, spec, model_inputs)
    if spec.limit is not None:
        inputs = {name: _head(array, spec.limit) for name, array in inputs.items()}
        labels = None if labels is None else labels[: spec.limit]
    inputs = {
        model_input.name: _fit(place, model_input, inputs[model_input.name], spec.cast) for model_input in model_inputs
    }
    dataset = Dataset(section=section, origin=origin, inputs=inputs, labels=labels, labels_key=spec.labels_key)
    _check_lengths(place, dataset)
    dataset.labelled_output = spec.labels_output
    return dataset


def label_outputs(dataset: Dataset, outputs: list[tuple[str, tuple[int | None, ...]]], place: str) -> None:
    """Settle which output the labels are classes of: the one named (it must exist), else the only output of
    shape [batch, classes] with a column for every label. Several such outputs is bad input: a silent choice
    could report the accuracy of the wrong head. A label no class column can hold (-1, 99 for 10 classes) is
    bad input too: it would count as a wrong answer, or leave the run measuring no accuracy at all."""
    if dataset.labels is None:
        return
    shapes = dict(outputs)
    if dataset.labelled_output is not None:
        if dataset.labelled_output not in shapes:
            raise DataError(
                f"{place}.labels.output: {dataset.labelled_output!r} is no output of the model "
                f"(it has {', '.join(shapes)})"
            )
        classes = _classes(shapes[dataset.labelled_output])
        if classes is not None:
            _check_labels(dataset, place, {dataset.labelled_output: classes})
        return
    classifiers = {name: classes for name, shape in outputs if (classes := _classes(shape)) is not None}
    if classifiers and int(dataset.labels.min(initial=0)) < 0:
        _check_labels(dataset, place, classifiers)
    top = int(dataset.labels.max(initial=0))
    heads = [name for name, classes in classifiers.items() if classes > top]
    if classifiers and not heads:
        _check_labels(dataset, place, classifiers)
    if len(heads) > 1:
        raise DataError(
            f"{place}.labels: {len(heads)} outputs can hold these labels ({', '.join(heads)}); name the one they are "
            f"classes of: labels: {{key: ..., output: {heads[0]}}}"
        )
    dataset.labelled_output = heads[0] if heads else None


def _classes(shape: tuple[int | None, ...]) -> int | None:
    """The classes of an output shaped [batch, classes] (at least two), None for any other shape."""
    return shape[0] if len(shape) == 1 and shape[0] is not None and shape[0] >= 2 else None


def _check_labels(dataset: Dataset, place: str, classifiers: dict[str, int]) -> None:
    """Refuse the first label outside every classifier's columns, naming where it is and what was allowed."""
    assert dataset.labels is not None
    widest = max(classifiers.values())
    bad = np.flatnonzero((dataset.labels < 0) | (dataset.labels >= widest))
    if not len(bad):
        return
    allowed = ", ".join(f"{name!r} has classes 0..{classes - 1}" for name, classes in classifiers.items())
    raise DataError(
        f"{place}.labels: {dataset.labels_key!r} holds {int(dataset.labels[bad[0]])} at sample {int(bad[0])} "
        f"({len(bad)} labels out of range); expected class ids an output can hold: {allowed}"
    )


def _from_npz(place: str, file: Path, spec: DataSpec, model_inputs: list[TensorSpec]) -> tuple:
    keys = _input_keys(place, spec, model_inputs)
    _check_regular(f"{place}.npz", file)
    try:
        members = open_npz(file)
    except FileNotFoundError:
        raise DataError(f"{place}.npz: {file} not found") from None
    except NotRegularFileError as error:  # swapped for a FIFO after the check above
        raise DataError(f"{place}.npz: {error}") from None
    except Exception as error:  # zipfile and the OS raise several kinds for a file that is not an npz
        raise DataError(f"{place}.npz: {file} is not a readable .npz ({error})") from None
    wanted = [*keys.values(), *([spec.labels_key] if spec.labels_key else [])]
    for key in wanted:
        if key not in members:
            raise DataError(f"{place}: key {key!r} is not in {file.name} (it has {', '.join(members)})")
    inputs = {name: _read(place, file, members[key], key) for name, key in keys.items()}
    labels = np.asarray(_read(place, file, members[spec.labels_key], spec.labels_key)) if spec.labels_key else None
    return inputs, labels, f"{file.name}[{', '.join(keys.values())}]"


def _read(place: str, file: Path, member: Callable[[], ArrayLike], key: str) -> ArrayLike:
    try:
        return member()
    except Exception as error:  # corrupt member, truncated data, object arrays (pickle refused)...
        raise DataError(f"{place}: cannot read {key!r} from {file.name} ({error})") from None


def _input_keys(place: str, spec: DataSpec, model_inputs: list[TensorSpec]) -> dict[str, str]:
    names = [model_input.name for model_input in model_inputs]
    if isinstance(spec.inputs, str):
        if len(names) != 1:
            raise DataError(
                f"{place}.inputs: the model has {len(names)} inputs ({', '.join(names)}); "
                "map each to an npz key: inputs: {name: key, ...}"
            )
        return {names[0]: spec.inputs}
    mapping = dict(spec.inputs or {})
    unknown = sorted(set(mapping) - set(names))
    missing = [name for name in names if name not in mapping]
    if unknown or missing:
        raise DataError(
            f"{place}.inputs: model inputs are {', '.join(names)}; "
            f"unknown: {', '.join(unknown) or 'none'}; missing: {', '.join(missing) or 'none'}"
        )
    return mapping


def _from_npy(place: str, base_dir: Path, spec: DataSpec, model_inputs: list[TensorSpec]) -> tuple:
    if len(model_inputs) != 1:
        raise DataError(f"{place}.npy: the model has {len(model_inputs)} inputs; use npz with an inputs mapping")
    assert spec.npy is not None
    inputs = {model_inputs[0].name: _load_npy(f"{place}.npy", (base_dir / spec.npy).resolve())}
    labels = (
        np.asarray(_load_npy(f"{place}.labels", (base_dir / spec.labels_key).resolve())) if spec.labels_key else None
    )
    return inputs, labels, Path(spec.npy).name


def _load_npy(place: str, file: Path) -> ArrayLike:
    _check_regular(place, file)
    try:
        return open_npy(file)
    except FileNotFoundError:
        raise DataError(f"{place}: {file} not found") from None
    except NotRegularFileError as error:  # swapped for a FIFO after the check above
        raise DataError(f"{place}: {error}") from None
    except Exception as error:  # numpy raises several kinds for a file that is not an npy
        raise DataError(f"{place}: {file} is not a readable .npy ({error})") from None


def _check_regular(place: str, file: Path) -> None:
    """A FIFO or a device as a data file would block the run, or read forever: refused before it is opened."""
    problem = regular_file_problem(file)
    if problem is not None:
        raise DataError(f"{place}: {file} is {problem}; data files must be regular files")


def _fit(place: str, spec: TensorSpec, array: ArrayLike, cast: bool = False) -> ArrayLike:
    """Check rank, fixed dimensions and dtype kind; cast to the model's dtype where that loses nothing (or,
    with `cast`, wherever asked)."""
    dims = ["N", *("?" if d is None else str(d) for d in spec.shape[1:])] if spec.shape else []
    expected = f"expected shape [{', '.join(dims)}]"
    if array.ndim != len(spec.shape):
        raise DataError(f"{place}: input {spec.name!r} has shape {list(array.shape)}, {expected} ({spec.dtype})")
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
        if axis > 0 and want is not None and want != got:
            raise DataError(
                f"{place}: input {spec.name!r} has shape {list(array.shape)}, {expected} "
                f"(axis {axis} is {got}, the model wants {want})"
            )
    target = np.dtype(spec.dtype)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"{place}: input {spec.name!r} has dtype {array.dtype}; expected numbers ({spec.dtype})")
    if np.issubdtype(target, np.integer) and not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{place}: input {spec.name!r} has dtype {array.dtype}; the model wants {spec.dtype}")
    _scan(place, spec.name, array, target, cast)
    if isinstance(array, StoredArray):
        return array.cast(target)
    return np.ascontiguousarray(array, dtype=target)


def _scan(place: str, name: str, array: ArrayLike, target: np.dtype, cast: bool) -> None:
    """One pass over the input, a chunk at a time: refuse NaN/Inf, and a cast that changes a value unless asked."""
    floating = np.issubdtype(array.dtype, np.floating)
    exact = np.can_cast(array.dtype, target, "safe")
    if not floating and exact:
        return
    nonfinite, start = 0, 0
    for chunk in row_chunks(array):
        if floating:
            nonfinite += int((~np.isfinite(chunk)).sum())
        if not exact and not nonfinite:
            _check_cast(place, name, chunk, target, start, cast)
        start += len(chunk)
    if nonfinite:
        raise DataError(
            f"{place}: input {name!r} holds {nonfinite} NaN/Inf values; parity on such inputs "
            "is meaningless, so they are refused"
        )


def _check_cast(place: str, name: str, chunk: np.ndarray, target: np.dtype, start: int, cast: bool) -> None:
    """Refuse the first value of `chunk` (rows from sample `start`) that the model's dtype cannot hold. Between
    floats only leaving the range (to Inf, or to 0) counts: rounding float64 to float32's precision is what any
    float32 model does to its inputs. Anything else must come back as it was (int64 2**24 + 1 in float32 does not).
    `cast` accepts all of it but an Inf, which would make parity as meaningless as an Inf in the file."""
    floating = np.issubdtype(target, np.floating)
    if cast and not floating:
        return
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        converted = chunk.astype(target)
        if cast:
            lossy = ~np.isfinite(converted)
        elif floating and np.issubdtype(chunk.dtype, np.floating):
            lossy = ~np.isfinite(converted) | ((converted == 0) & (chunk != 0))
        else:
            lossy = converted.astype(chunk.dtype) != chunk
    if not lossy.any():
        return
    index = int(np.argmax(lossy.reshape(-1)))
    sample = start + index // max(1, math.prod(lossy.shape[1:]))
    value, read = chunk.reshape(-1)[index].item(), converted.reshape(-1)[index].item()
    if floating and not math.isfinite(read):
        fix = "out of its range, which no cast accepts"
    else:
        fix = f"give {target} data, or accept the loss with cast: true in {place} (compare: --cast)"
    raise DataError(
        f"{place}: input {name!r} is {chunk.dtype} and sample {sample} holds {value}, which {target} (the model's "
        f"dtype) reads as {read}: {fix}"
    )


def _head(array: ArrayLike, rows: int) -> ArrayLike:
    return array.head(rows) if isinstance(array, StoredArray) else array[:rows]


def _check_lengths(place: str, dataset: Dataset) -> None:
    lengths = {name: len(array) for name, array in dataset.inputs.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{place}: inputs differ in sample count ({lengths})")
    if dataset.samples == 0:
        raise DataError(f"{place}: no samples")
    labels = dataset.labels
    if labels is None:
        return
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{place}.labels: expected a 1-D array of integer class ids, got shape {list(labels.shape)} {labels.dtype}"
        )
    if len(labels) != dataset.samples:
        raise DataError(f"{place}.labels: {len(labels)} labels for {dataset.samples} input samples")


def _random(section: str, place: str, spec: RandomSpec, model_inputs: list[TensorSpec]) -> Dataset:
    rng = np.random.default_rng(spec.seed)
    inputs = {}
    for model_input in model_inputs:
        if any(d is None for d in model_input.shape[1:]):
            raise DataError(
                f"{place}: input {model_input.name!r} has free dimensions {model_input.describe()}; "
                "random data needs fixed shapes, so give an npz"
            )
        shape = (spec.samples, *model_input.shape[1:])
        dtype = np.dtype(model_input.dtype)
        if np.issubdtype(dtype, np.integer):
            # Both bounds included: the default [0, 1] must give zeros and ones, not all zeros.
            low, high = int(np.floor(spec.low)), int(np.floor(spec.high))
            inputs[model_input.name] = rng.integers(low, high, size=shape, endpoint=True).astype(dtype)
        else:
            inputs[model_input.name] = rng.uniform(spec.low, spec.high, size=shape).astype(dtype)
    origin = f"random(samples={spec.samples}, seed={spec.seed}, low={spec.low}, high={spec.high})"
    return Dataset(section=section, origin=origin, inputs=inputs)


def hygiene_warnings(datasets: dict[str, Dataset], quantized_outputs: list[str]) -> list[str]:
    """What makes a verdict weaker than it looks: calibrating on the data the gates are measured on, and
    int8 calibrated on random inputs."""
    warnings = []
    evaluation, calibration = datasets.get("evaluation"), datasets.get("calibration")
    if evaluation is not None and calibration is not None:
        shared = len(_sample_hashes(evaluation) & _sample_hashes(calibration))
        if shared == evaluation.samples == calibration.samples:
            warnings.append(
                "data.calibration and data.evaluation are the same samples: quantization was tuned on the data "
                "its gates are measured on, so the verdict is optimistic; evaluate on held-out samples"
            )
        elif shared:
            warnings.append(
                f"{shared} of the {evaluation.samples} evaluation samples are also calibration samples: "
                "the verdict on them is optimistic; evaluate on held-out samples"
            )
    if calibration is not None and calibration.origin.startswith("random(") and quantized_outputs:
        warnings.append(
            f"int8 outputs ({', '.join(quantized_outputs)}) are calibrated on random inputs: activation ranges "
            "then do not match real data; give data.calibration real samples"
        )
    return warnings


def _sample_hashes(dataset: Dataset) -> set[bytes]:
    """One digest per sample over all its inputs (memory: 16 bytes a sample)."""
    hashes = set()
    for batch in dataset.batches(1024):
        arrays = [np.ascontiguousarray(array) for array in batch.values()]
        for index in range(len(arrays[0])):
            digest = hashlib.blake2b(digest_size=16)
            for array in arrays:
                digest.update(array[index].data)
            hashes.add(digest.digest())
    return hashes
