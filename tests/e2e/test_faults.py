"""Faults: a run killed mid-stage leaves nothing that looks complete, its conversion worker does not outlive it,
and the next run finishes the job and clears what it left in the temp directory; Ctrl-C stops cleanly with exit 130,
SIGTERM with 143; no run leaves TensorFlow autograph's generated modules behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from pipeline.core.artifact import Artifact
from pipeline.runtimes import runtime_for

from ..cli import edgeport, edgeport_env, start_edgeport
from ..recipes import digits_data, recipe_file


def _recipe(zoo, tmp_path: Path) -> Path:
    outputs = {
        "fp32": {"stages": ["tflite"]},
        "onnx": {"stages": ["onnx"]},
        "int8": {"stages": [{"tflite": {"quantize": "int8"}}]},
        "float16": {"stages": [{"tflite": {"quantize": "float16"}}]},
    }
    return recipe_file(tmp_path, name="faults", source=zoo.keras3, data=digits_data(zoo, limit=64), outputs=outputs)


def _env(cache: Path, temp: Path | None = None) -> dict[str, str]:
    if temp is None:
        return edgeport_env(EDGEPORT_CACHE_DIR=cache)
    temp.mkdir(exist_ok=True)  # the run's own temp directory, to see what it leaves there
    return edgeport_env(EDGEPORT_CACHE_DIR=cache, TMPDIR=temp)


def _start(recipe: Path, out: Path, cache: Path, *options: str, temp: Path | None = None) -> subprocess.Popen[str]:
    return start_edgeport("run", recipe, "--out", out, *options, env=_env(cache, temp))


def _wait_for(process: subprocess.Popen[str], marker: str, timeout: float = 120) -> list[str]:
    seen, deadline = [], time.monotonic() + timeout
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return seen
    raise AssertionError(f"never saw {marker!r}: {''.join(seen)}")


def _gone(pids: list[int], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


def _litter(temp: Path) -> list[str]:
    """What a run left in its temp directory: work folders, autograph's generated modules."""
    return sorted(p.name for p in temp.iterdir() if p.name.startswith(("edgeport-", "__autograph_generated_file")))


def test_sigkill_mid_stage_leaves_nothing_complete_and_the_next_run_resumes(zoo, tmp_path: Path) -> None:
    recipe, out, cache, temp = _recipe(zoo, tmp_path), tmp_path / "out", tmp_path / "cache", tmp_path / "tmp"
    process = _start(recipe, out, cache, temp=temp)
    _wait_for(process, "[3/4] int8: tflite int8 ...")
    workers = _children(process.pid)
    assert workers, "the conversion runs in a worker process"
    process.kill()
    process.wait(timeout=30)
    # No finally block ran in the parent: the worker goes by itself (PR_SET_PDEATHSIG), not 20 s of converting later
    assert _gone(workers, timeout=5), "the worker outlived its killed parent"
    assert not (out / "report.json").exists() and not (out / "junit.xml").exists()
    assert any(name.startswith(f"edgeport-{process.pid}-") for name in _litter(temp))  # the run's work folder
    for model in out.glob("*/model.*"):  # whatever was published must be whole: it opens and runs
        kind = "tflite" if model.suffix == ".tflite" else "onnx"
        runtime = runtime_for(Artifact(kind=kind, path=model, key="check"))  # type: ignore[arg-type]
        assert runtime.outputs
    # The killed run's folder, and its worker's unless the kill came before the worker made one (under load it can)
    stopped = [name for name in _litter(temp) if name.startswith("edgeport-")]
    rerun = edgeport("run", recipe, "--out", out, env=_env(cache, temp))
    assert rerun.returncode == 0, rerun.stderr
    assert f"removed   {len(stopped)} work folders stopped runs left" in rerun.stderr, rerun.stderr[:1500]
    assert _litter(temp) == []  # nor did the rerun's own conversions leave autograph modules there
    report = json.loads((out / "report.json").read_text())
    caches = {output["name"]: output["stages"][0]["cache"] for output in report["outputs"]}
    assert caches["fp32"] == "hit" and caches["onnx"] == "hit"  # finished before the kill: reused
    assert caches["float16"] == "stored"  # never started: built now
    assert not list(cache.rglob("*.partial")) or all(p.name.startswith(".") for p in cache.rglob("*.partial"))


def test_ctrl_c_stops_with_130_and_one_line(zoo, tmp_path: Path) -> None:
    recipe, out = _recipe(zoo, tmp_path), tmp_path / "out"
    process = _start(recipe, out, tmp_path / "cache")
    _wait_for(process, "[2/4] onnx")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "edgeport: interrupted" in stderr and "Traceback" not in stderr
    assert not (out / "report.json").exists()


def test_sigterm_stops_with_143_one_line_and_the_worker_gone(zoo, tmp_path: Path) -> None:
    recipe, out, temp = _recipe(zoo, tmp_path), tmp_path / "out", tmp_path / "tmp"
    process = _start(recipe, out, tmp_path / "cache", temp=temp)
    _wait_for(process, "[2/4] onnx")
    workers = [pid for pid in _children(process.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert workers, "the conversion runs in a worker process"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("edgeport:")]
    assert lines == ["edgeport: terminated (SIGTERM); outputs not finished were left out, no report was written"]
    assert "Traceback" not in stderr
    assert _gone(workers, timeout=1), "the worker outlived the run"
    assert not (out / "report.json").exists()
    assert _litter(temp) == []  # the run's work folder, the worker's and autograph's modules in it: all removed


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _only_int8_failed(out: Path, exit_code: int, stderr: str) -> dict:
    """The run went on past the int8 output's failure: exit 3, the other three passed; int8's report entry."""
    assert exit_code == 3, stderr
    report = json.loads((out / "report.json").read_text())
    statuses = {output["name"]: output["status"] for output in report["outputs"]}
    assert statuses == {"fp32": "passed", "onnx": "passed", "int8": "error", "float16": "passed"}
    return next(output for output in report["outputs"] if output["name"] == "int8")


def test_a_crashing_conversion_costs_one_output_not_the_run(zoo, tmp_path: Path) -> None:
    """A converter that dies in native code is simulated by killing the stage worker mid-conversion."""
    recipe, out = _recipe(zoo, tmp_path), tmp_path / "out"
    process = _start(recipe, out, tmp_path / "cache")
    _wait_for(process, "[3/4] int8: tflite int8 ...")
    workers = _children(process.pid)
    assert workers, "the conversion runs in a worker process"
    for worker in workers:
        os.kill(worker, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    int8 = _only_int8_failed(out, process.returncode, stderr)
    assert "crashed its worker process (killed by SIGKILL)" in int8["error"]
    assert "✗ int8" in stdout


def test_a_hanging_conversion_is_killed_at_the_stage_timeout(zoo, tmp_path: Path) -> None:
    """A converter that hangs is simulated by stopping the stage worker (SIGSTOP) mid-conversion."""
    recipe, out = _recipe(zoo, tmp_path), tmp_path / "out"
    process = _start(recipe, out, tmp_path / "cache", "--stage-timeout", "15")
    _wait_for(process, "[3/4] int8: tflite int8 ...")
    # The worker only: stopping multiprocessing's resource tracker as well would hang the parent's next spawn.
    stopped = [pid for pid in _children(process.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert stopped, "the conversion runs in a worker process"
    for worker in stopped:
        os.kill(worker, signal.SIGSTOP)
    _, stderr = process.communicate(timeout=300)
    int8 = _only_int8_failed(out, process.returncode, stderr)
    assert "ran past its timeout of 15 s" in int8["error"] and "worker process was killed" in int8["error"]
    assert "Traceback" not in stderr
    assert not [pid for pid in stopped if Path(f"/proc/{pid}").exists()], "the hung worker is gone"


def test_stage_timeout_must_be_positive(zoo, tmp_path: Path) -> None:
    recipe = recipe_file(
        tmp_path, name="timeout", source=zoo.keras3, outputs={"fp32": {"stages": ["tflite"]}}, stage_timeout=0
    )
    for command, expected in (
        (["validate", str(recipe)], "stage_timeout"),
        (["run", str(recipe), "--stage-timeout", "-1"], "--stage-timeout"),
    ):
        done = edgeport(*command)
        assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr, done.stderr


def _spawned(pid: int) -> list[int]:
    """The spawned children of `pid` (pool or conversion workers), multiprocessing's resource tracker left out."""
    return [child for child in _children(pid) if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def test_sigkill_of_a_batch_takes_its_pool_processes_with_it(zoo, tmp_path: Path) -> None:
    """`run DIR --jobs 2` killed outright runs no shutdown: its pool processes (and their conversion workers) must
    not run recipes on for no one; they go by themselves (PR_SET_PDEATHSIG, and a watch on the parent)."""
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for name in ("first", "second"):
        outputs = {"fp32": {"stages": ["tflite"]}, "int8": {"stages": [{"tflite": {"quantize": "int8"}}]}}
        data = digits_data(zoo, limit=64)
        recipe_file(recipes, name=name, source=zoo.keras3, data=data, outputs=outputs, file=f"{name}.yaml")
    out = tmp_path / "out"
    process = _start(recipes, out, tmp_path / "cache", "--jobs", "2")
    deadline, pool, busy = time.monotonic() + 180, [], []
    while time.monotonic() < deadline and len(busy) < 2:  # each pool process is running a recipe in its worker
        pool = _spawned(process.pid)
        busy = [pid for pid in pool if _spawned(pid)]
        time.sleep(0.2)
    assert len(pool) == 2 and len(busy) == 2, (pool, busy, process.poll())
    family = sorted({*_children(process.pid), *(worker for pid in pool for worker in _children(pid))})
    process.kill()
    process.wait(timeout=30)
    started = time.monotonic()
    assert _gone(family, timeout=10), [pid for pid in family if Path(f"/proc/{pid}").exists()]
    assert time.monotonic() - started < 10
    assert not (out / "summary.json").exists() and not (out / "junit.xml").exists()
