"""The cache checks what it says it checks: a cached recording, stage artifact or source description whose bytes
changed is dropped with a note and rebuilt, never used and never blamed on the user's data; a cache that cannot be
written (read-only, full, not a folder) leaves the run passing with one note. Real runs of the command line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipeline.run.cache import CACHE_LAYOUT, Cache

from ..cli import edgeport, edgeport_env
from ..filesystems import read_only, tiny_tmpfs
from ..recipes import digits_data, recipe_file


def _recipe(zoo, tmp_path: Path) -> Path:
    outputs = {"fp32": {"stages": ["tflite"]}}
    return recipe_file(tmp_path, name="sealed", source=zoo.keras3, data=digits_data(zoo, limit=64), outputs=outputs)


def _run(recipe: Path, out: Path, cache: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    done = edgeport("run", recipe, "--out", out, env=edgeport_env(EDGEPORT_CACHE_DIR=cache))
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    return done, report


def _flip(path: Path, offset: int, count: int = 16) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = bytes(byte ^ 0xFF for byte in data[offset : offset + count])
    path.write_bytes(bytes(data))


def _only(pattern: str, root: Path) -> Path:
    (found,) = list(root.glob(pattern))
    return found


def test_changed_entries_of_every_kind_are_dropped_with_a_note_and_rebuilt(zoo, tmp_path: Path) -> None:
    recipe, cache = _recipe(zoo, tmp_path), tmp_path / "cache"
    first, before = _run(recipe, tmp_path / "a", cache)
    assert first.returncode == 0, first.stderr
    assert before["cache"]["notes"] == []
    layout = cache / f"v{CACHE_LAYOUT}"
    recorded = _only("recordings/*/0.bin", layout)
    model = _only("stages/*/model.tflite", layout)
    description = _only("meta/sources/*.json", layout)
    _flip(recorded, 100)  # the source's outputs: used as they were, both outputs failed with max_abs 25
    _flip(model, model.stat().st_size // 2)
    sealed = json.loads(description.read_text())  # a plausible edit that keeps its old hash: exit 2 "bad data" before
    sealed["document"]["tensors"]["inputs"][0]["shape"] = [None, 8, 8, 2]
    description.write_text(json.dumps(sealed))

    second, after = _run(recipe, tmp_path / "b", cache)
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr and "error" not in second.stderr
    notes = after["cache"]["notes"]
    assert len(notes) == 3, notes
    assert any(note.startswith("cached outputs ") and "did not match their hash; recomputed" in note for note in notes)
    assert any(note.startswith("cache entry ") and "did not match its hash; rebuilt" in note for note in notes)
    assert any(note.startswith("cached sources entry ") and "did not match its hash" in note for note in notes)
    (output,) = after["outputs"]
    assert output["status"] == "passed" and output["stages"][0]["cache"] == "stored"
    assert output["parity"]["metrics"] == before["outputs"][0]["parity"]["metrics"]
    assert output["sha256"] == before["outputs"][0]["sha256"]

    # On disk: each entry rebuilt whole, and it passes its own check again (no note, every entry a hit).
    check = Cache(cache)
    assert check.get_json("sources", description.stem)["tensors"]["inputs"][0]["shape"] == [None, 8, 8, 1]
    assert check.get_recording(recorded.parent.name) is not None
    assert check.get_artifact(model.parent.name) is not None
    assert check.notes == [] and not list(cache.rglob("*.partial"))
    third, warm = _run(recipe, tmp_path / "c", cache)
    assert third.returncode == 0 and warm["cache"]["notes"] == [] and warm["cache"]["source_loaded"] is False
    assert warm["outputs"][0]["stages"][0]["cache"] == "hit"


@pytest.mark.parametrize("kind", ["read-only", "full", "not a folder"])
def test_a_cache_that_cannot_be_written_costs_one_note_not_the_run(zoo, tmp_path: Path, kind: str) -> None:
    recipe, out, cache = _recipe(zoo, tmp_path), tmp_path / "out", tmp_path / "cache"
    if kind == "not a folder":
        cache.write_text("a file where the cache folder should be")
        done, report = _run(recipe, out, cache)
    else:
        # 32 KiB: the description and the reference outputs fit (4 KiB pages), the 90 KB model does not
        fs = read_only(cache) if kind == "read-only" else tiny_tmpfs(cache, 32)
        with fs:
            done, report = _run(recipe, out, cache)
            left = sorted(str(path.relative_to(cache)) for path in cache.rglob("*"))
            if kind == "read-only":
                assert left == []  # nothing written, not even the layout's folders
            assert not [name for name in left if name.endswith(".partial")], left  # a full disk's copy removed
    assert done.returncode == 0, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    (note,) = report["cache"]["notes"]
    assert note.startswith("could not write the cache (") and "the run went on without storing to it" in note
    (output,) = report["outputs"]
    assert output["status"] == "passed" and output["stages"][0]["cache"] == "not stored"
    assert (out / "fp32" / "model.tflite").is_file()
