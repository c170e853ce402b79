"""Cache entries are bound to their key, and what the cache gives back is checked as a source is: an entry copied
under another key is dropped with a note and rebuilt (B's recipe must not ship A's conversion with PASSED), an
artifact whose file changed after it was stored is refused on the next read, an entry that names a file outside its
folder is refused, and a trained model an attacker resealed in the cache with a correct seal and key is refused
untrusted before its Lambda runs. Real files, real runs of the command line."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.artifact import Artifact
from pipeline.core.recording import OutputRecording
from pipeline.run.cache import CACHE_LAYOUT, Cache

from ..cli import edgeport, edgeport_env
from ..recipes import digits_data, recipe_file

A, B = "a" * 64, "b" * 64
# Names, not this module's globals: a deserialized lambda sees its loader's; the path comes from the environment.
PAYLOAD = lambda t: (open(__import__("os").environ["EDGEPORT_TEST_MARKER"], "a").close(), t)[1]  # noqa: E731


def _stored(tmp_path: Path) -> tuple[Cache, Path]:
    """A cache holding one real file artifact under key A."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "model.tflite").write_bytes(bytes(range(256)) * 64)
    cache = Cache(tmp_path / "cache")
    cache.put_artifact(A, Artifact(kind="tflite", path=work / "model.tflite", key=A), seconds=1.0)
    return cache, cache.root / "stages"


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def test_an_artifact_entry_copied_under_another_key_is_dropped(tmp_path: Path) -> None:
    cache, stages = _stored(tmp_path)
    _copy(stages / A, stages / B)
    assert cache.get_artifact(B) is None
    assert cache.notes == [f"cache entry {B[:12]} holds the entry of another key ({A[:12]}); rebuilt"]
    assert not (stages / B).exists() and cache.get_artifact(A) is not None  # the impostor went, the original stays


def test_a_description_copied_under_another_key_or_kind_is_made_afresh(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.put_json("sources", A, {"tensors": {"inputs": []}})
    meta = cache.root / "meta"
    _copy(meta / "sources" / f"{A}.json", meta / "sources" / f"{B}.json")
    _copy(meta / "sources" / f"{A}.json", meta / "plans" / f"{A}.json")
    assert cache.get_json("sources", B) is None and cache.get_json("plans", A) is None
    assert cache.notes == [
        f"cached sources entry {B[:12]} holds the entry of another key (sources/aaaa); made afresh",
        f"cached plans entry {A[:12]} holds the entry of another key (sources/aaaa); made afresh",
    ]
    assert not (meta / "sources" / f"{B}.json").exists() and not (meta / "plans" / f"{A}.json").exists()
    assert cache.get_json("sources", A) == {"tensors": {"inputs": []}}


def test_a_recording_copied_under_another_key_is_recomputed(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    batches = [{"scores": np.arange(20, dtype=np.float32).reshape(2, 10)}]
    cache.put_recording(A, OutputRecording.record(batches, ["scores"], tmp_path / "recorded"))
    recordings = cache.root / "recordings"
    _copy(recordings / A, recordings / B)
    assert cache.get_recording(B) is None
    assert cache.notes == [f"cached outputs {B[:12]} hold the entry of another key; recomputed"]
    assert not (recordings / B).exists() and cache.get_recording(A) is not None


def test_the_artifact_file_is_checked_against_its_seal_on_every_read(tmp_path: Path) -> None:
    cache, stages = _stored(tmp_path)
    hit = cache.get_artifact(A)
    assert hit is not None and hit.seconds == 1.0 and cache.notes == []
    model = stages / A / "model.tflite"
    data = bytearray(model.read_bytes())
    data[100] ^= 0xFF  # same size, one byte changed after the entry was stored and read once
    model.write_bytes(bytes(data))
    assert cache.get_artifact(A) is None
    assert cache.notes == [f"cache entry {A[:12]} did not match its hash; rebuilt"] and not (stages / A).exists()


@pytest.mark.parametrize("filename", ["../../outside.bin", "/etc/hostname", ".."])
def test_an_entry_naming_a_file_outside_its_folder_is_refused(tmp_path: Path, filename: str) -> None:
    cache, stages = _stored(tmp_path)
    outside = tmp_path / "outside.bin" if filename.startswith("..") else Path(filename)
    if filename == "../../outside.bin":
        outside.write_bytes(b"another user's file")
    entry = stages / A / "entry.json"
    sealed = json.loads(entry.read_text())
    sealed["document"]["filename"] = filename
    sealed["document"]["sha256"] = _sha256(outside) if outside.is_file() else "0" * 64
    _reseal(entry, sealed)
    assert cache.get_artifact(A) is None
    assert cache.notes == [f"cache entry {A[:12]} did not match its hash; rebuilt"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reseal(entry: Path, sealed: dict) -> None:
    """What anyone who may write the cache can do: the seal is a hash of the key and the document."""
    record = {"key": sealed["key"], "document": sealed["document"]}
    sealed["sha256"] = hashlib.sha256(json.dumps(record, default=str).encode()).hexdigest()
    entry.write_text(json.dumps(sealed))


# --- through the command line -------------------------------------------------------------------------------


def _run(recipe: Path, out: Path, cache: Path, *options: str, **env: str | Path) -> dict:
    done = edgeport("run", recipe, "--out", out, *options, env=edgeport_env(EDGEPORT_CACHE_DIR=cache, **env))
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    return {"code": done.returncode, "stderr": done.stderr, **report}


def test_b_never_ships_a_conversion_copied_from_a(zoo, tmp_path: Path) -> None:
    """The probe: A's fp32 file copied over B's float16 entry passed B's gates and shipped as B's."""
    cache, data = tmp_path / "cache", digits_data(zoo, limit=64)
    a = recipe_file(
        tmp_path, name="a", source=zoo.keras3, data=data, outputs={"m": {"stages": ["tflite"]}}, file="a.yaml"
    )
    half = {"m": {"stages": [{"tflite": {"quantize": "float16"}}]}}
    b = recipe_file(tmp_path, name="b", source=zoo.keras3, data=data, outputs=half, file="b.yaml")
    first_a, first_b = _run(a, tmp_path / "a1", cache), _run(b, tmp_path / "b1", cache)
    assert first_a["code"] == first_b["code"] == 0, first_b["stderr"]
    key_a, key_b = (report["outputs"][0]["stages"][0]["key"] for report in (first_a, first_b))
    stages = cache / f"v{CACHE_LAYOUT}" / "stages"
    built_b = _sha256(stages / key_b / "model.tflite")  # before publishing stamps it with its provenance
    shutil.rmtree(stages / key_b)
    _copy(stages / key_a, stages / key_b)  # A's entry, its seal intact, under B's key

    again = _run(b, tmp_path / "b2", cache)
    assert again["code"] == 0, again["stderr"]
    assert again["cache"]["notes"] == [
        f"cache entry {key_b[:12]} holds the entry of another key ({key_a[:12]}); rebuilt"
    ]
    (output,) = again["outputs"]
    assert output["stages"][0]["cache"] == "stored" and output["sha256"] == first_b["outputs"][0]["sha256"]
    assert output["sha256"] != first_a["outputs"][0]["sha256"]
    assert _sha256(tmp_path / "b2" / "m" / "model.tflite") == first_b["outputs"][0]["sha256"]
    assert _sha256(stages / key_b / "model.tflite") == built_b  # rebuilt in place


def _lambda_model(flavour: str, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attacker's model: the digits input, a Lambda that creates the marker file whenever it is called (tf_keras
    calls it while it rebuilds the model at load, as both do here while they build it), ten scores. Named as the
    pruned model's file."""
    monkeypatch.setenv("EDGEPORT_TEST_MARKER", str(path.parent.parent / "built-by-the-attacker"))
    keras = __import__("tf_keras" if flavour == "tf_keras" else "keras")
    inputs = keras.Input((8, 8, 1), name="pixels")
    hidden = keras.layers.Lambda(PAYLOAD, output_shape=(64,), name="innocent")(keras.layers.Flatten()(inputs))
    keras.Model(inputs, keras.layers.Dense(10, name="scores")(hidden)).save(path)


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_a_pruned_model_resealed_with_a_lambda_is_refused_untrusted(
    zoo, tmp_path: Path, flavour: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = zoo.keras3 if flavour == "keras3" else zoo.legacy_h5  # legacy_h5 loads with tf_keras only
    data = digits_data(zoo, limit=64, fine_tune=True, fine_tune_limit=64)
    outputs = {"pruned": {"stages": [{"prune": {"sparsity": 0.5, "epochs": 1}}, "tflite"]}}
    recipe = recipe_file(tmp_path, name="pruning", source=source, data=data, outputs=outputs)
    cache, marker = tmp_path / "cache", tmp_path / "payload-ran"
    first = _run(recipe, tmp_path / "first", cache)
    assert first["code"] == 0, first["stderr"]
    prune_key, tflite_key = (stage["key"] for stage in first["outputs"][0]["stages"])
    stages = cache / f"v{CACHE_LAYOUT}" / "stages"
    shutil.rmtree(stages / tflite_key)  # the conversion must start from the pruned model again
    entry = stages / prune_key / "entry.json"
    sealed = json.loads(entry.read_text())
    model = stages / prune_key / sealed["document"]["filename"]
    assert model.suffix == (".h5" if flavour == "tf_keras" else ".keras")
    model.unlink()
    _lambda_model(flavour, model, monkeypatch)
    sealed["document"]["sha256"] = _sha256(model)
    _reseal(entry, sealed)  # a correct seal, under its own key: only the trust check stands in the way

    for sandbox in ("on", "off"):  # off: the trust check alone stops it, not the sandbox denying the write
        out = tmp_path / f"sandbox-{sandbox}"
        refused = _run(recipe, out, cache, EDGEPORT_TEST_MARKER=marker, EDGEPORT_SANDBOX=sandbox)
        assert not marker.exists(), f"the Lambda in the cached model ran untrusted (sandbox {sandbox})"
        assert refused["code"] in (2, 3), refused["stderr"]
        said = refused["stderr"] + json.dumps(refused.get("outputs", []))
        assert "refused" in said and "Lambda" in said and "--trust-model" in said, said[-2000:]
        assert str(model) in said or model.name in said, said[-2000:]  # where it sits: the cached file
        assert not (out / "pruned" / "model.tflite").exists()

    # The carrier is live: Keras itself, loading the cached file unsafely and calling it as a conversion would,
    # runs the payload (Keras 3 calls a Lambda with an output_shape only then; tf_keras already as it loads).
    load = (
        "import tf_keras; m = tf_keras.models.load_model(PATH, compile=False)"
        if flavour == "tf_keras"
        else "import keras; m = keras.saving.load_model(PATH, compile=False, safe_mode=False)"
    ) + "; import numpy; m(numpy.zeros((1, 8, 8, 1), 'float32'))"
    probe = [sys.executable, "-c", load.replace("PATH", repr(str(model)))]
    done = subprocess.run(probe, env=edgeport_env(EDGEPORT_TEST_MARKER=marker), capture_output=True, timeout=300)
    assert marker.exists(), ("the payload is live: Keras ran it", done.stderr[-2000:])
