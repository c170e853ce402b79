"""Running sums for one output tensor, and the metrics they give; memory does not grow with the sample count."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipeline.core.metric_registry import ERROR_METRICS
from pipeline.parity.intervals import clopper_pearson, paired_difference
from pipeline.parity.scratch import Scratch
from pipeline.parity.tail import ErrorHistogram


@dataclass
class Moments:
    """Centred sums of (reference, candidate) values, merged chunk by chunk (Chan et al.): a variance of
    values far from zero keeps its digits, which raw sums of squares would cancel away."""

    n: int = 0
    mean_ref: float = 0.0
    mean_out: float = 0.0
    m2_ref: float = 0.0
    m2_out: float = 0.0
    co: float = 0.0
    paired: bool = True  # the candidate's sums too: false once a chunk came without them

    def update(self, ref: np.ndarray, out: np.ndarray | None, in_place: bool = False) -> None:
        """Add a chunk of values; `in_place`: `ref` and `out` are the caller's to lose (they end centred). Without
        `out`, the reference side only: its spread is all nrmse needs, and the candidate's sums are half the work.
        """
        if not ref.size:
            return
        if out is None:
            self.paired = False
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: the counts of non-finite values fail it
            part = Moments(ref.size, float(ref.mean()), 0.0 if out is None else float(out.mean()))
            dref = np.subtract(ref, part.mean_ref, out=ref if in_place else None)
            # einsum, not `@` or np.dot: OpenBLAS wakes its threads for each dot product, which cost 20 ms a call
            # between other work on a 2-core machine; einsum's own loop takes 0.1 ms for 82k values.
            part.m2_ref = float(np.einsum("i,i->", dref, dref))
            if out is not None:
                dout = np.subtract(out, part.mean_out, out=out if in_place else None)
                part.m2_out, part.co = (float(np.einsum("i,i->", a, b)) for a, b in ((dout, dout), (dref, dout)))
        self.merge(part)

    def merge(self, other: Moments) -> None:
        n = self.n + other.n
        if not n:
            return
        delta_ref, delta_out = other.mean_ref - self.mean_ref, other.mean_out - self.mean_out
        weight = self.n * other.n / n
        self.mean_ref += delta_ref * other.n / n
        self.mean_out += delta_out * other.n / n
        self.m2_ref += other.m2_ref + delta_ref**2 * weight
        self.m2_out += other.m2_out + delta_out**2 * weight
        self.co += other.co + delta_ref * delta_out * weight
        self.n = n

    def correlation(self) -> float:
        """Pearson's r: the cosine of the centred values. A constant side carries no information: 0, unless
        both sides are the same constant."""
        if not self.paired:
            raise ValueError("correlation of moments kept for the reference side only")
        if self.m2_ref == 0 or self.m2_out == 0:
            return 1.0 if self.m2_ref == self.m2_out == 0 and self.mean_ref == self.mean_out else 0.0
        return max(-1.0, min(1.0, self.co / math.sqrt(self.m2_ref * self.m2_out)))

    def reference_std(self) -> float:
        return math.sqrt(self.m2_ref / self.n) if self.n else 0.0


@dataclass
class TensorStats:
    """Everything parity needs of one output tensor, summed over chunks of samples."""

    count: int = 0
    samples: int = 0
    nonfinite_ref: int = 0
    nonfinite_out: int = 0
    first_nonfinite_ref: int | None = None  # sample index
    first_nonfinite_out: int | None = None
    max_abs: float = 0.0
    sum_abs: float = 0.0
    sum_sq_err: float = 0.0
    sum_sq_ref: float = 0.0
    sum_cosine: float = 0.0
    min_cosine: float = math.inf
    moments: Moments = field(default_factory=Moments)
    errors: ErrorHistogram = field(default_factory=ErrorHistogram)
    classes: bool = False
    top1_agree: int = 0
    correct: int = 0
    reference_correct: int = 0
    labelled: int = 0
    lost: int = 0  # labelled samples the reference got right and the candidate wrong
    gained: int = 0  # ... and the other way round
    unfit_labels: int = 0  # labels that name no column of this tensor

    @property
    def nonfinite(self) -> int:
        return self.nonfinite_ref + self.nonfinite_out

    def update(
        self, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None, scratch: Scratch | None = None
    ) -> tuple[np.ndarray, float]:
        """Add one chunk of samples; returns its |error|, flat in float64, and its largest (NaN if any is), for
        the plot data to bin too. `scratch` lends the chunk-sized arrays (pipeline.parity.scratch), that error's
        too: valid until the next update."""
        scratch = scratch or Scratch()
        ref = scratch.copy("reference", reference).reshape(len(reference), -1)
        out = scratch.copy("candidate", candidate).reshape(len(candidate), -1)
        error = np.subtract(out, ref, out=scratch.array("error", ref.shape))
        np.abs(error, out=error)
        error_sum = float(error.sum())
        if not math.isfinite(error_sum):  # a NaN or Inf on either side makes the sum so (float32 values in float64
            self._count_nonfinite(ref, out)  # cannot overflow): only then is each side searched
        self.count += ref.size
        self.samples += len(ref)
        # np.nanmax would hide a NaN; the non-finite counts above already fail the output.
        largest = float(error.max(initial=0.0))  # NaN if any is
        self.max_abs = max(self.max_abs, largest)
        self.sum_abs += error_sum
        flat_error = error.reshape(-1)
        self.sum_sq_err += float(np.einsum("i,i->", flat_error, flat_error))
        cosines, ref_sq = _row_cosines(ref, out)
        self.sum_sq_ref += float(ref_sq.sum())
        self.sum_cosine += float(cosines.sum())
        self.min_cosine = min(self.min_cosine, float(cosines.min(initial=math.inf)))
        self.classes = reference.ndim == 2 and reference.shape[1] > 1
        if self.classes:
            self._count_classes(_exact(reference, ref), _exact(candidate, out), labels, scratch)
        # The correlation stands for cosine only where a sample is one value; elsewhere nrmse needs the reference's
        # spread alone.
        one_value = ref.shape[1] == 1
        # Moments centre ref and out in place: the last to read their values; the look-up then overwrites them.
        self.moments.update(ref.reshape(-1), out.reshape(-1) if one_value else None, in_place=True)
        self.errors.update(flat_error, work=(ref, out), largest=largest)
        return flat_error, largest

    def _count_nonfinite(self, ref: np.ndarray, out: np.ndarray) -> None:
        for side, values in (("ref", ref), ("out", out)):
            bad = ~np.isfinite(values)
            count = int(bad.sum())
            if not count:
                continue
            setattr(self, f"nonfinite_{side}", getattr(self, f"nonfinite_{side}") + count)
            if getattr(self, f"first_nonfinite_{side}") is None:
                first = int(np.flatnonzero(bad.any(axis=1))[0])
                setattr(self, f"first_nonfinite_{side}", self.samples + first)

    def _count_classes(self, ref: np.ndarray, out: np.ndarray, labels: np.ndarray | None, scratch: Scratch) -> None:
        # Dequantized scores tie often (int8 has 256 levels). argmax would break a tie by index order and credit
        # a candidate that could not decide; a sample agrees only when both sides pick the same set of classes.
        ref_top, out_top = _top_classes(ref, scratch), _top_classes(out, scratch)
        self.top1_agree += int((ref_top == out_top).all(axis=0).sum())
        if labels is not None:
            for name, value in _label_counts(ref_top, out_top, np.asarray(labels).reshape(-1)).items():
                setattr(self, name, getattr(self, name) + value)

    def metrics(self) -> dict[str, float]:
        result = self._error_metrics()
        if self.classes:
            result["top1_agreement"] = self.top1_agree / self.samples
            low, high = clopper_pearson(self.top1_agree, self.samples)
            result["top1_agreement_lower"], result["top1_agreement_upper"] = low, high
        if self.labelled and not self.unfit_labels:
            result["accuracy"] = self.correct / self.labelled
            result["reference_accuracy"] = self.reference_correct / self.labelled
            result["accuracy_drop"] = result["reference_accuracy"] - result["accuracy"]
            low, high = paired_difference(self.lost, self.gained, self.labelled)
            result["accuracy_drop_lower"], result["accuracy_drop_upper"] = low, high
        return result

    def _error_metrics(self) -> dict[str, float]:
        if self.nonfinite or not self.count:
            return dict.fromkeys(ERROR_METRICS, math.nan)
        rmse = math.sqrt(self.sum_sq_err / self.count)
        one_value = self.count == self.samples
        # One value a sample (a score, a regression head): a sample's cosine is only its sign, and an
        # uncentred cosine of the column rewards any offset (scores in [0.45, 0.55] against a constant 0.5
        # give 0.998). There, cosine is the correlation of centred values, and stands for min_cosine too.
        cosine = self.moments.correlation() if one_value else self.sum_cosine / self.samples
        return {
            "max_abs": self.max_abs,
            "mean_abs": self.sum_abs / self.count,
            "rmse": rmse,
            "nrmse": _ratio(rmse, self.moments.reference_std()),
            "p99_abs": self.errors.percentile(99, self.max_abs),
            "cosine": cosine,
            "min_cosine": cosine if one_value else self.min_cosine,
            "snr_db": snr_db(self.sum_sq_ref, self.sum_sq_err),
        }


def _exact(values: np.ndarray, as_float64: np.ndarray) -> np.ndarray:
    """`values` as they came when float64 holds each exactly (so ties and maxima stay), else the float64 copy:
    float32 halves the memory the class counts walk."""
    return values if values.dtype.kind == "f" and values.dtype.itemsize <= 8 else as_float64


def _label_counts(ref_top: np.ndarray, out_top: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """What a chunk adds to the accuracy counts, from each side's top classes (classes, samples) and the labels."""
    fits = (labels >= 0) & (labels < ref_top.shape[0])
    rows, columns = np.arange(len(labels)), np.where(fits, labels, 0)
    out_right = fits & out_top[columns, rows] & (out_top.sum(axis=0) == 1)
    ref_right = fits & ref_top[columns, rows] & (ref_top.sum(axis=0) == 1)
    return {
        # Labels that are no column of this output (class 7 of a 4-column box head): it is not the classifier.
        "unfit_labels": int((~fits).sum()),
        "correct": int(out_right.sum()),
        "reference_correct": int(ref_right.sum()),
        "lost": int((ref_right & ~out_right).sum()),
        "gained": int((out_right & ~ref_right).sum()),
        "labelled": len(labels),
    }


def _top_classes(scores: np.ndarray, scratch: Scratch) -> np.ndarray:
    """(classes, samples): whether each class ties for its sample's top score. Class-major, because numpy
    reduces a (samples, 10) array along its short rows one row at a time, ten times slower than across them."""
    columns = scratch.copy("classes", scores.T, scores.dtype)
    return columns == columns.max(axis=0)


def _ratio(error: float, scale: float) -> float:
    if scale > 0:
        return error / scale
    return 0.0 if error == 0 else math.inf


def _row_cosines(ref: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cosine, and each reference row's squared norm (the signal of snr_db)."""
    ref_sq, out_sq = np.einsum("ij,ij->i", ref, ref), np.einsum("ij,ij->i", out, out)
    norms = np.sqrt(ref_sq * out_sq)
    dots = np.einsum("ij,ij->i", ref, out)
    with np.errstate(invalid="ignore"):  # inf / inf: the non-finite counts fail the output
        cosines = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    np.copyto(cosines, 1.0, where=(ref_sq == 0) & (out_sq == 0))  # both zero: the same
    return cosines, ref_sq


def snr_db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def pooled_metrics(stats: list[TensorStats], tensors: list[dict[str, float]]) -> dict[str, float]:
    """Whole-output metrics of several tensors: errors from pooled sums (max_abs, p99_abs over every value);
    scale-free ones (nrmse, cosine, min_cosine) from the worst tensor, as tensors differ in scale."""
    pooled = TensorStats()
    for one in stats:
        pooled.count += one.count
        pooled.samples = one.samples
        pooled.nonfinite_ref += one.nonfinite_ref
        pooled.nonfinite_out += one.nonfinite_out
        pooled.max_abs = max(pooled.max_abs, one.max_abs)
        pooled.sum_abs += one.sum_abs
        pooled.sum_sq_err += one.sum_sq_err
        pooled.sum_sq_ref += one.sum_sq_ref
        pooled.errors.merge(one.errors)
    result = pooled.metrics()
    if not pooled.nonfinite:
        result["nrmse"] = max(values["nrmse"] for values in tensors)
        result["cosine"] = min(values["cosine"] for values in tensors)
        result["min_cosine"] = min(values["min_cosine"] for values in tensors)
    return result
