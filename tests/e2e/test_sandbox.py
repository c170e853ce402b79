"""The sandbox around every process that loads a model, through the command line: a TRUSTED model's code runs, and
still cannot write or read a file outside its run.

The attacker's models are real Keras 3 files whose Lambda writes a canary file or reads a secret file, both in a
folder outside the run (neither beside the recipe nor in the out, cache or temporary folders); the paths come
from the environment, since a deserialized lambda sees its loader's globals. Each denial is checked on disk: the
canary not written, the secret in no file the run left. With the diagnostic switch EDGEPORT_SANDBOX=off the same
payload does write its canary: the test can fail.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.sandbox import landlock_abi

from ..cli import edgeport, edgeport_env
from ..recipes import recipe_file

ABI, WHY_NOT = landlock_abi()
pytestmark = pytest.mark.skipif(ABI == 0, reason=f"no Landlock here: {WHY_NOT}")

WRITES = lambda t: (open(__import__("os").environ["EDGEPORT_TEST_CANARY"], "w").close(), t)[1]  # noqa: E731
READS = lambda t: t + float(len(open(__import__("os").environ["EDGEPORT_TEST_SECRET"]).read()))  # noqa: E731, SIM115
SECRET = "the secret the model must not read"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Keras 3 models, each a Lambda between an input of 4 values and a Dense of 2: `writes` and `reads` call the
    payload when run (output_shape given), `writes_at_load` when Keras rebuilds it (it infers the shape)."""
    import keras

    root = tmp_path_factory.mktemp("models")
    # Building `writes_at_load` calls its payload too: here, into a file of the fixture's own.
    os.environ["EDGEPORT_TEST_CANARY"] = str(root / "built")
    for name, payload, shape in (("writes", WRITES, (4,)), ("reads", READS, (4,)), ("writes_at_load", WRITES, None)):
        inputs = keras.Input((4,), name="values")
        hidden = keras.layers.Lambda(payload, output_shape=shape, name="payload")(inputs)
        keras.Model(inputs, keras.layers.Dense(2, name="scores")(hidden)).save(root / f"{name}.keras")
    inputs = keras.Input((4,), name="values")
    doubled = keras.layers.Lambda(lambda t: t * 2.0, output_shape=(4,), name="doubled")(inputs)
    keras.Model(inputs, keras.layers.Dense(2, name="scores")(doubled)).save(root / "harmless.keras")
    del os.environ["EDGEPORT_TEST_CANARY"]
    (root / "built").unlink()
    np.savez(root / "values.npz", values=np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32))
    return {path.stem: path for path in root.iterdir()}


@pytest.fixture
def outside(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text(SECRET)
    return {"canary": folder / "canary", "secret": folder / "secret.txt"}


def _run(models: dict[str, Path], model: str, tmp_path: Path, outside: dict[str, Path], *options: str, **env: str):
    """`edgeport run` of a recipe in its own folder, trusting `model`; temporary files in a folder of the test's."""
    (tmp_path / "run").mkdir()
    (tmp_path / "tmp").mkdir()
    recipe = recipe_file(
        tmp_path / "run",
        name=model,
        source={"path": models[model], "trusted": True},
        data={"evaluation": {"npz": models["values"], "inputs": "values"}},
        outputs={"fp32": {"stages": ["tflite"]}},
    )
    environment = edgeport_env(
        EDGEPORT_CACHE_DIR=tmp_path / "cache",
        EDGEPORT_TEST_CANARY=outside["canary"],
        EDGEPORT_TEST_SECRET=outside["secret"],
        TMPDIR=tmp_path / "tmp",
        **env,
    )
    return edgeport("run", recipe, "--out", tmp_path / "out", *options, env=environment)


def _left_on_disk(tmp_path: Path) -> str:
    """Every file the run left in its folders, as text: where a leaked secret would be."""
    return "".join(
        path.read_bytes().decode("latin-1")
        for path in tmp_path.rglob("*")
        if path.is_file() and "outside" not in path.parts
    )


@pytest.mark.parametrize("where", [[], ["--no-isolation"]], ids=["worker", "this-process"])
def test_a_trusted_model_cannot_write_outside_its_run(models, tmp_path: Path, outside, where: list[str]) -> None:
    done = _run(models, "writes", tmp_path, outside, *where)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "source model failed on data.evaluation: PermissionError" in done.stderr, done.stderr[-2000:]
    assert "the sandbox denies" in done.stderr
    assert not outside["canary"].exists()
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_trusted_model_cannot_read_a_secret_outside_its_run(models, tmp_path: Path, outside) -> None:
    done = _run(models, "reads", tmp_path, outside)
    assert done.returncode == 2, done.stderr
    assert "PermissionError" in done.stderr and "the sandbox denies" in done.stderr, done.stderr[-2000:]
    assert SECRET not in done.stdout + done.stderr
    assert SECRET not in _left_on_disk(tmp_path)
    assert not (tmp_path / "out" / "fp32").exists()


def test_without_the_sandbox_the_payload_is_live(models, tmp_path: Path, outside) -> None:
    """The diagnostic switch: the same run writes the canary, so the tests above see the sandbox, not a dud."""
    done = _run(models, "writes", tmp_path, outside, EDGEPORT_SANDBOX="off")
    assert done.returncode == 0, done.stderr
    assert outside["canary"].exists()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["environment"]["sandbox"] == "none (EDGEPORT_SANDBOX=off, a diagnostic switch)"


def test_a_harmless_trusted_model_still_passes_and_the_report_says_what_confined_it(
    models, tmp_path: Path, outside
) -> None:
    done = _run(models, "harmless", tmp_path, outside)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["outputs"][0]["status"] == "passed"
    sandbox = report["environment"]["sandbox"]
    assert sandbox.startswith(f"landlock ABI {ABI}: reads ") and ", writes " in sandbox, sandbox
    assert ("no TCP" in sandbox) == (ABI >= 4)
    assert "sandbox" not in done.stderr  # the console says nothing when the sandbox is on


def test_inspect_confines_the_model_it_loads(models, tmp_path: Path, outside) -> None:
    environment = edgeport_env(EDGEPORT_TEST_CANARY=outside["canary"], TMPDIR=tmp_path)
    done = edgeport("inspect", models["writes_at_load"], "--trust-model", env=environment)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "writes_at_load.keras" in done.stderr
    assert not outside["canary"].exists()
    free = edgeport(
        "inspect", models["writes_at_load"], "--trust-model", env={**environment, "EDGEPORT_SANDBOX": "off"}
    )
    assert free.returncode == 0, free.stderr
    assert outside["canary"].exists()


def test_a_confined_run_with_its_reference_cached_still_converts(models, tmp_path: Path) -> None:
    """`fallback: auto` loads the model in the run's own process, which confines itself. Its worker must be started
    before that: one started after inherits rules whose /proc/self is the parent's, and TensorFlow aborted in it
    (SIGABRT in every conversion). A second run whose reference comes from the cache started its worker only later."""
    rng = np.random.default_rng(1)
    for name in ("calibration", "validation"):
        np.savez(tmp_path / f"{name}.npz", values=rng.normal(size=(16, 4)).astype(np.float32))
    data = {name: {"npz": tmp_path / f"{name}.npz", "inputs": "values"} for name in ("calibration", "validation")}
    recipe = recipe_file(
        tmp_path,
        name="harmless",
        source={"path": models["harmless"], "trusted": True},
        data={"evaluation": {"npz": models["values"], "inputs": "values"}, **data},
        outputs={
            "int8": {"stages": [{"tflite": {"quantize": "int8", "fallback": "auto"}}]},
            "onnx": {"stages": ["onnx"]},
        },
    )
    environment = edgeport_env(EDGEPORT_CACHE_DIR=tmp_path / "cache")
    for attempt in ("cold", "reference cached"):
        done = edgeport("run", recipe, "--out", tmp_path / attempt, env=environment)
        assert done.returncode == 0, (attempt, done.stderr)
        assert "SIGABRT" not in done.stderr
        for stages in (tmp_path / "cache").glob("*/stages"):  # the conversions run again; the reference does not
            for entry in stages.iterdir():
                shutil.rmtree(entry)
    assert "reference source (cached)" in done.stderr
