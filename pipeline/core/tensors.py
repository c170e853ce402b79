"""Named tensors: their specs, and how one runtime's names are matched to another's.

A leaf: plain Python, and no other pipeline layer but errors.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.errors import DataError


@dataclass(frozen=True)
class TensorSpec:
    """A named model input or output; `None` in `shape` is a free dimension (usually batch)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {self.dtype}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> TensorSpec:
        return cls(name=fields["name"], shape=tuple(fields["shape"]), dtype=fields["dtype"])


def normalise_name(name: str) -> str:
    """Strip what converters add to tensor names: `serving_default_` prefixes and `:0` suffixes."""
    name = re.sub(r":\d+$", "", name)
    return name.removeprefix("serving_default_")


def align_names(wanted: list[str], offered: list[str], what: str) -> dict[str, str]:
    """Map each wanted name to an offered one: exact, then normalised, then by position."""
    if set(wanted) == set(offered):
        return {name: name for name in wanted}
    by_normal = {normalise_name(name): name for name in offered}
    if all(normalise_name(name) in by_normal for name in wanted) and len(wanted) == len(offered):
        return {name: by_normal[normalise_name(name)] for name in wanted}
    if len(wanted) == len(offered):
        return dict(zip(wanted, offered, strict=True))
    raise DataError(f"{what}: cannot match tensors {', '.join(wanted)} to {', '.join(offered)}")


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
    if len(reference) != len(candidate):
        raise DataError(
            f"{what}: the reference has {len(reference)} outputs ({_names(reference)}), "
            f"this file {len(candidate)} ({_names(candidate)})"
        )
    ref_shapes, cand_shapes = dict(reference), dict(candidate)
    matches = _mapped(tensor_map or {}, ref_shapes, cand_shapes, what)
    rules: list[tuple[str, Callable[[list[str], list[str]], dict[str, str]]]] = [
        ("name", lambda refs, cands: {name: name for name in refs if name in cands}),
        ("normalised", lambda refs, cands: _unique_pairs(refs, cands, normalise_name)),
        ("index", lambda refs, cands: _by_index(refs, cands, [name for name, _ in reference], order)),
        ("shape", lambda refs, cands: _unique_pairs(refs, cands, ref_shapes.get, cand_shapes.get)),
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
            f"{what}: cannot match reference outputs {', '.join(f'{n} {list(ref_shapes[n])}' for n in refs)} "
            f"to {described} by name, index or a unique shape; say which is which with --map REF=CANDIDATE "
            "(or tensor_map: {REF: CANDIDATE} in the recipe output)"
        )
    return {name: matches[name] for name, _ in reference}


def _mapped(
    tensor_map: dict[str, str], ref_shapes: dict[str, Shape], cand_shapes: dict[str, Shape], what: str
) -> dict[str, TensorMatch]:
    for ref, cand in tensor_map.items():
        if ref not in ref_shapes:
            raise DataError(
                f"{what}: tensor_map names {ref!r}, which the reference lacks (its outputs: {', '.join(ref_shapes)})"
            )
        if cand not in cand_shapes:
            raise DataError(
                f"{what}: tensor_map maps {ref!r} to {cand!r}, which this file lacks "
                f"(its outputs: {', '.join(cand_shapes)})"
            )
    doubled = [name for name, count in Counter(tensor_map.values()).items() if count > 1]
    if doubled:
        raise DataError(f"{what}: tensor_map maps several reference outputs to {', '.join(doubled)}")
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
