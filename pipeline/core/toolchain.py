"""The packages edgeport's results depend on, and their installed versions (for reports and cache keys)."""

from __future__ import annotations

from functools import cache
from importlib import metadata

TOOLCHAIN = (
    "tensorflow",
    "keras",
    "tf-keras",
    "tensorflow-model-optimization",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "ai-edge-litert",
    "numpy",
    "protobuf",
)


@cache
def package_versions(packages: tuple[str, ...] = TOOLCHAIN) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
