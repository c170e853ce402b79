"""Named tensors: their specs, and how one runtime's names are matched to another's.

A leaf: plain Python, and no other pipeline layer but errors (and core.text, for names in messages).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.core.text import one_line
from pipeline.errors import DataError


@dataclass(frozen=True)
class TensorSpec:
    """A named model input or output; `None` in `shape` is a free dimension (usually batch)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def describe(self) -> str:
        """`x [?, 4] float32`; the name as one line (core.text): it comes from the model, and lands in log lines,
        messages and init's recipe comments, where a newline would start a line of the model's."""
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{one_line(self.name)} [{dims}] {self.dtype}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> TensorSpec:
        return cls(name=fields["name"], shape=tuple(fields["shape"]), dtype=fields["dtype"])


def normalise_name(name: str) -> str:
    """Strip what converters add to tensor names: `serving_default_` prefixes and `:0` suffixes."""
    name = re.sub(r":\d+$", "", name)
    return name.removeprefix("serving_default_")


Shape = tuple[int | None, ...]
Order = Literal["signature", "model"] | None
RULES = ("map", "name", "normalised", "index", "shape", "position")


@dataclass(frozen=True)
class TensorMatch:
    """Which candidate tensor stands for a reference tensor, and the rule that decided it (shown in reports)."""

    candidate: str
    rule: str  # one of RULES

    def to_json(self) -> dict[str, str]:
        return {"candidate": self.candidate, "rule": self.rule}


@dataclass(frozen=True)
class _Side:
    """What a matching pairs (a model's outputs or inputs) and how a user settles an ambiguity."""

    noun: str
    flag: str
    field: str


_OUTPUTS = _Side("outputs", "--map", "tensor_map")
_INPUTS = _Side("inputs", "--input-map", "input_map")


def match_inputs(
    fed: list[tuple[str, Shape]], accepted: list[tuple[str, Shape]], what: str, input_map: dict[str, str] | None = None
) -> dict[str, TensorMatch]:
    """Pair each fed input (the source model's name, a sample's shape) with an input of the file, by the rules
    outputs follow (a map, the exact name, the normalised name, a shape no other tensor fits, the last one left);
    the file's free dimensions (None) fit any size. Inputs swapped by position would feed the wrong tensor and
    fail (or pass) for the wrong reason, so two that no rule tells apart are refused, naming the candidates."""
    return _match(fed, accepted, what, None, input_map, _INPUTS)


def match_feed(
    batch: dict[str, Any], accepted: list[TensorSpec], what: str, input_map: dict[str, str] | None = None
) -> dict[str, TensorMatch]:
    """`match_inputs` for a batch (arrays keyed by the source's input names) and a file's input specs, whose
    first dimension is the batch."""
    fed = [(name, tuple(array.shape[1:])) for name, array in batch.items()]
    return match_inputs(fed, [(spec.name, spec.shape[1:]) for spec in accepted], what, input_map)


def match_outputs(
    reference: list[tuple[str, Shape]],
    candidate: list[tuple[str, Shape]],
    what: str,
    order: Order = None,
    tensor_map: dict[str, str] | None = None,
) -> dict[str, TensorMatch]:
    """Pair each reference output (name, per-sample shape) with a candidate output, by the first rule that decides:
    an explicit map, the exact name, the normalised name, the `:N` / `output_N` index, a shape no other tensor has.

    `order` says what the reference's list order is: "signature" (a SavedModel signature's outputs sorted by key,
    which is what tf2onnx and TF1-style exports number `:N`), "model" (a Keras model's outputs, which a Keras 3
    `export` keys `output_N`), or None (a converted file's own order, which numbers nothing).
    Position decides only the last single pair left: between two or more tensors
    of one shape a position is a guess, and a swapped pair passes or fails for the wrong reason, so it is refused
    with the candidates named, for `--map` / `tensor_map` to settle.
    """
    return _match(reference, candidate, what, order, tensor_map, _OUTPUTS)


def _match(
    reference: list[tuple[str, Shape]],
    candidate: list[tuple[str, Shape]],
    what: str,
    order: Order,
    tensor_map: dict[str, str] | None,
    side: _Side,
) -> dict[str, TensorMatch]:
    if len(reference) != len(candidate):
        raise DataError(
            f"{what}: the reference has {len(reference)} {side.noun} ({_names(reference)}), "
            f"this file {len(candidate)} ({_names(candidate)})"
        )
    ref_shapes, cand_shapes = dict(reference), dict(candidate)
    matches = _mapped(tensor_map or {}, ref_shapes, cand_shapes, what, side)
    rules: list[tuple[str, Callable[[list[str], list[str]], dict[str, str]]]] = [
        ("name", lambda refs, cands: {name: name for name in refs if name in cands}),
        ("normalised", lambda refs, cands: _unique_pairs(refs, cands, normalise_name)),
        ("index", lambda refs, cands: _by_index(refs, cands, [name for name, _ in reference], order)),
        ("shape", lambda refs, cands: _unique_fits(refs, cands, ref_shapes, cand_shapes)),
    ]
    for rule, pair in rules:
        refs, cands = _left(reference, matches), _left(candidate, matches, taken=True)
        for ref, cand in pair(refs, cands).items():
            matches[ref] = TensorMatch(cand, rule)
    refs, cands = _left(reference, matches), _left(candidate, matches, taken=True)
    if len(refs) == 1:  # no other candidate: not a guess; a shape that differs is then parity's to report
        matches[refs[0]] = TensorMatch(cands[0], "position")
    elif refs:
        described = ", ".join(f"{name} {list(cand_shapes[name])}" for name in cands)
        raise DataError(
            f"{what}: cannot match reference {side.noun} {', '.join(f'{n} {list(ref_shapes[n])}' for n in refs)} "
            f"to {described} by name, index or a unique shape; say which is which with {side.flag} REF=CANDIDATE "
            f"(or {side.field}: {{REF: CANDIDATE}} in the recipe output)"
        )
    return {name: matches[name] for name, _ in reference}


def _mapped(
    tensor_map: dict[str, str], ref_shapes: dict[str, Shape], cand_shapes: dict[str, Shape], what: str, side: _Side
) -> dict[str, TensorMatch]:
    for ref, cand in tensor_map.items():
        if ref not in ref_shapes:
            raise DataError(
                f"{what}: {side.field} names {ref!r}, which the reference lacks "
                f"(its {side.noun}: {', '.join(ref_shapes)})"
            )
        if cand not in cand_shapes:
            raise DataError(
                f"{what}: {side.field} maps {ref!r} to {cand!r}, which this file lacks "
                f"(its {side.noun}: {', '.join(cand_shapes)})"
            )
    doubled = [name for name, count in Counter(tensor_map.values()).items() if count > 1]
    if doubled:
        raise DataError(f"{what}: {side.field} maps several reference {side.noun} to {', '.join(doubled)}")
    return {ref: TensorMatch(cand, "map") for ref, cand in tensor_map.items()}


def _left(tensors: list[tuple[str, Shape]], matches: dict[str, TensorMatch], taken: bool = False) -> list[str]:
    used = {match.candidate for match in matches.values()} if taken else set(matches)
    return [name for name, _ in tensors if name not in used]


def _unique_pairs(
    refs: list[str], cands: list[str], key: Callable[[str], Any], cand_key: Callable[[str], Any] | None = None
) -> dict[str, str]:
    """Pairs whose key (normalised name, shape) occurs once on each side: a key two tensors share decides nothing."""
    cand_key = cand_key or key
    ref_keys, cand_keys = Counter(map(key, refs)), Counter(map(cand_key, cands))
    by_key = {cand_key(name): name for name in cands}
    return {ref: by_key[key(ref)] for ref in refs if ref_keys[key(ref)] == 1 and cand_keys.get(key(ref)) == 1}


def _unique_fits(
    refs: list[str], cands: list[str], ref_shapes: dict[str, Shape], cand_shapes: dict[str, Shape]
) -> dict[str, str]:
    """Pairs where each side's shape fits the other's alone; a free dimension (None) fits any size, so an output's
    concrete shapes pair only when equal, and a file's free input dimensions take whatever the data has."""
    fits = {ref: [cand for cand in cands if _fits(ref_shapes[ref], cand_shapes[cand])] for ref in refs}
    takers = Counter(cand for found in fits.values() for cand in found)
    return {ref: found[0] for ref, found in fits.items() if len(found) == 1 and takers[found[0]] == 1}


def _fits(one: Shape, other: Shape) -> bool:
    return len(one) == len(other) and all(a is None or b is None or a == b for a, b in zip(one, other, strict=True))


def _by_index(refs: list[str], cands: list[str], ordered: list[str], order: Order) -> dict[str, str]:
    """`base:N` counts a SavedModel signature's outputs sorted by key; `output_N` a Keras 3 model's outputs in
    model order (the keys `model.export` gives them). Each applies only against a reference in that order."""
    pattern = {"signature": r"(.+):(\d+)", "model": r"(output)_(\d+)"}.get(order or "")
    if pattern is None:
        return {}
    found = {name: re.fullmatch(pattern, name) for name in cands}
    indexed = {name: (m.group(1), int(m.group(2))) for name, m in found.items() if m}
    # `Identity_1:0, Identity:0`: one base per file, or the numbers count different things.
    if len({base for base, _ in indexed.values()}) != 1:
        return {}
    pairs = {ordered[index]: name for name, (_, index) in indexed.items() if index < len(ordered)}
    return {ref: cand for ref, cand in pairs.items() if ref in refs}


def _names(tensors: list[tuple[str, Shape]]) -> str:
    return ", ".join(name for name, _ in tensors)
