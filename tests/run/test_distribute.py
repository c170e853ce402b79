"""`edgeport run --executor dask`: recipes as tasks on a Dask cluster (a LocalCluster on loopback, started here
once for the module), gathered into the same summary, junit.xml, exit code and progress lines as a local batch;
the cache shared by every worker; a missing dask and an unreachable scheduler as one line each."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import EdgeportError
from pipeline.run import distribute

from ..conftest import ROOT
from ..helpers import assert_batch_summary
from ..recipes import digits_data, recipe_file, write_recipe


@pytest.fixture(scope="module")
def scheduler() -> str:
    """Two single-threaded worker processes on 127.0.0.1, no dashboard: the cluster every test here shares."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.worker.daemon": False}):  # workers start edgeport's conversion worker
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
    with cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder recipes, outputs and the cache share (one filesystem, as a real cluster's must be)."""
    return tmp_path_factory.mktemp("cluster")


def _recipes(zoo, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = digits_data(zoo, calibration=False)
    fp32 = {"stages": ["tflite"]}
    recipe_file(folder, name="first", source=zoo.keras3, data=data, outputs={"fp32": fp32}, file="a.yaml")
    recipe_file(
        folder,
        name="second",
        source=zoo.keras3,
        data=data,
        outputs={"fp32": fp32, "onnx": {"stages": ["onnx"]}},
        file="b.yaml",
    )
    strict = {"stages": ["tflite"], "gates": {"max_abs": 0.0}}
    recipe_file(folder, name="strict", source=zoo.keras3, data=data, outputs={"fp32": strict}, file="c.yaml")
    write_recipe(folder, "name: broken\nsource: [unclosed\n", "d.yaml")
    return folder


def _run(shared: Path, out: str, *extra: str) -> list[str]:
    return ["run", str(shared / "recipes"), "--out", str(shared / out), "--cache-dir", str(shared / "cache"), *extra]


def test_recipes_run_as_dask_tasks_into_one_summary(zoo, shared: Path, scheduler: str, capsys) -> None:
    _recipes(zoo, shared / "recipes")
    code = main(_run(shared, "out", "--executor", "dask", "--scheduler", scheduler))
    out = shared / "out"
    summary = assert_batch_summary(out, code)  # d cannot be read: reported while the others ran
    assert summary["executor"] == f"dask {scheduler}"
    assert all(" pid " in recipe["worker"] for recipe in summary["recipes"])
    assert (out / "strict" / "junit.xml").is_file() and not (out / "d").exists()
    err = capsys.readouterr().err
    assert "    second/onnx: passed" in err and "    strict/fp32: failed (max_abs = " in err
    assert "  d: error: " in err and "YAML syntax error" in err


def test_a_second_run_on_the_cluster_reuses_what_the_workers_cached(zoo, shared: Path, scheduler: str) -> None:
    if not (shared / "out").is_dir():  # run alone: the first run fills the cache here
        _recipes(zoo, shared / "recipes")
        main(_run(shared, "out", "--executor", "dask", "--scheduler", scheduler))
    assert main(_run(shared, "again", "--executor", "dask", "--scheduler", scheduler)) == 2
    for name in ("first", "second", "strict"):
        report = json.loads((shared / "again" / name / "report.json").read_text())
        stages = [stage for output in report["outputs"] for stage in output["stages"]]
        assert stages and all(stage["cache"] == "hit" for stage in stages), (name, stages)
        assert report["cache"]["dir"].startswith(str(shared / "cache"))


def test_without_a_scheduler_edgeport_starts_a_local_cluster(zoo, shared: Path, capsys) -> None:
    recipe = _recipes(zoo, shared / "recipes") / "a.yaml"  # one recipe with --executor dask still runs as a batch
    args = ["run", str(recipe), "--out", str(shared / "own"), "--cache-dir", str(shared / "cache")]
    assert main([*args, "--executor", "dask", "--jobs", "1"]) == 0
    summary = json.loads((shared / "own" / "summary.json").read_text())
    assert summary["executor"] == "dask" and summary["recipes"][0]["name"] == "first"
    assert "    first/fp32: passed" in capsys.readouterr().err


def test_a_worker_that_cannot_see_a_recipe_is_named(shared: Path, scheduler: str) -> None:
    from distributed import Client

    placement = distribute.Placement("dask", files=(shared / "elsewhere.yaml",), shared_dirs=(shared / "cache",))
    with Client(scheduler) as client, pytest.raises(EdgeportError, match=r"cannot see .*elsewhere\.yaml.* shares"):
        distribute.check_workers(client, placement)
    assert not list((shared / "cache").glob(".edgeport-shared-*"))  # the token files are removed


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        ({"threads_per_worker": 2, "processes": False}, "runs 2 threads: .* --nthreads 1"),  # inproc://, no socket
        (
            {"threads_per_worker": 1, "processes": True, "host": "127.0.0.1"},
            "is a daemon process .*DASK_DISTRIBUTED__WORKER__DAEMON=False",
        ),
    ],
    ids=["threads", "daemon"],
)
def test_workers_that_cannot_run_a_recipe_are_refused(cluster: dict, message: str) -> None:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, dashboard_address=None, **cluster) as local,
        Client(local) as client,
        pytest.raises(EdgeportError, match=message),
    ):
        distribute.check_workers(client, distribute.Placement("dask"))


def test_without_dask_installed_one_line_says_how_to_install_it(zoo, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    recipe = recipe_file(tmp_path, name="one", source=zoo.keras3, outputs={"fp32": {"stages": ["tflite"]}})
    assert main(["run", str(recipe), "--out", str(tmp_path / "out"), "--executor", "dask"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install edgeport[cluster]" in err[0], err


@pytest.mark.parametrize("address", ["unreachable", "nonsense"])
def test_a_bad_scheduler_address_is_one_line_and_exit_2(zoo, tmp_path: Path, monkeypatch, capsys, address) -> None:
    monkeypatch.setattr(distribute, "CONNECT_SECONDS", 1.0)
    if address == "unreachable":
        with socket.socket() as probe:  # a loopback port nothing listens on
            probe.bind(("127.0.0.1", 0))
            address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    recipe = recipe_file(tmp_path, name="one", source=zoo.keras3, outputs={"fp32": {"stages": ["tflite"]}})
    assert main(["run", str(recipe), "--out", str(tmp_path / "out"), "--executor", "dask", "--scheduler", address]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"edgeport: error: --scheduler {address}: cannot connect"), err
    assert not (tmp_path / "out" / "one").exists()


def test_validate_and_schema_do_not_import_dask(zoo, tmp_path: Path) -> None:
    recipe = recipe_file(tmp_path, name="one", source=zoo.keras3, outputs={"fp32": {"stages": ["tflite"]}})
    code = (
        "import sys; from pipeline.cli import main; import pipeline.run.batch; "
        f"assert main(['validate', {str(recipe)!r}]) == 0 and main(['schema']) == 0; "
        "loaded = [m for m in ('dask', 'distributed') if m in sys.modules]; assert not loaded, loaded"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
