"""The output directory: checked before any stage runs, and a manifest of what edgeport wrote there.

A run removes or replaces only files it can prove it wrote: those the manifest lists with the hash they still
have. Anything else in the way — the user's own file, the source model, a symlink out of the directory — stops the
run (exit 2) before any work, naming it. Knows no stage, runtime or report format.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from pipeline.artifacts import sha256_of, write_text_atomic
from pipeline.errors import EdgeportError
from pipeline.report import REPORT_FILES

MANIFEST = ".edgeport-manifest.json"
PUBLISHED_NAMES = ("model.tflite", "model.onnx", "model.keras", "model.h5", "saved_model")


class OutputDirError(EdgeportError):
    """`--out` cannot take this run's files (exit 2: nothing ran)."""


class Manifest:
    """OUT/.edgeport-manifest.json: each file edgeport wrote under OUT (relative path → sha256), rewritten whole
    after every change, so a killed run still leaves a true list. Safe to update from lane threads."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.path = out_dir / MANIFEST
        self._lock = threading.Lock()
        self.files: dict[str, str] = _read(self.path)

    def owns(self, path: Path) -> bool:
        """`path` (under OUT) is a file or folder edgeport wrote and nobody changed since: no symlink, same hash."""
        recorded = self.files.get(self._relative(path))
        return recorded is not None and not path.is_symlink() and path.exists() and sha256_of(path) == recorded

    def record(self, path: Path) -> None:
        with self._lock:
            self.files[self._relative(path)] = sha256_of(path)
            self._save()

    def remove(self, path: Path) -> None:
        """Delete `path` if edgeport wrote it (else leave it); forget it either way."""
        with self._lock:
            if self.owns(path):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            if self.files.pop(self._relative(path), None) is not None:
                self._save()

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()

    def _save(self) -> None:
        write_text_atomic(self.path, json.dumps({"files": self.files}, indent=1, sort_keys=True) + "\n")


def _read(path: Path) -> dict[str, str]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or unreadable: nothing is proven ours
        return {}
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, dict):
        return {}
    return {str(name): str(digest) for name, digest in files.items() if isinstance(digest, str)}


def prepare_out_dir(out_dir: Path, outputs: Iterable[str], inputs: Iterable[tuple[str, Path]]) -> Manifest:
    """Check `out_dir` can take this run's files, before any stage runs; its manifest.

    `outputs`: the output names this run publishes (OUT/<name>/); `inputs`: (what, path) of every file the run
    reads (the source, data files), none of which may lie where the run writes.
    """
    out_dir = out_dir.absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputDirError(f"--out {out_dir}: exists and is not a directory")
    _check_writable(out_dir)
    outputs = list(outputs)
    _check_no_overlap(out_dir, outputs, inputs)
    manifest = Manifest(out_dir)
    for name in outputs:
        folder = out_dir / name
        if folder.is_symlink():
            raise OutputDirError(
                f"{folder}: a symlink; edgeport writes each output into a real folder under --out, never through "
                "a link (remove the link or choose another --out)"
            )
        for filename in PUBLISHED_NAMES:
            path = folder / filename
            if (path.exists() or path.is_symlink()) and not manifest.owns(path):
                raise OutputDirError(
                    f"{path}: in the way, and not written by edgeport (not in {MANIFEST} with its current hash); "
                    "move it or choose another --out"
                )
    return manifest


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".edgeport-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OutputDirError(f"--out {out_dir}: cannot write there ({error.strerror or error})") from None


def _check_no_overlap(out_dir: Path, outputs: list[str], inputs: Iterable[tuple[str, Path]]) -> None:
    """A run writes OUT/<output>/ and OUT's report files; an input inside those, or OUT inside an input (a
    SavedModel directory), would be overwritten or deleted by the run that reads it."""
    resolved_out = out_dir.resolve()
    written = [resolved_out / name for name in outputs] + [resolved_out / name for name in (*REPORT_FILES, MANIFEST)]
    for what, path in inputs:
        real = path.resolve()
        if resolved_out == real or resolved_out.is_relative_to(real):
            raise OutputDirError(f"--out {out_dir}: inside the {what} {path}; choose a folder outside it")
        for place in written:
            if real == place or real.is_relative_to(place):
                raise OutputDirError(
                    f"--out {out_dir}: the {what} {path} lies where this run writes ({place}); "
                    "choose another --out or move the file"
                )
