"""Named tensors: their specs, and how one runtime's names are matched to another's.

A leaf: plain Python, and no other pipeline layer but errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

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
