"""Half-written files: each atomic write or copy stages under a name of its own (the file's, this process's id, a
random part), so two runs into one folder never remove each other's; a write that fails (a file-size limit gives
real EFBIG write errors, as a full disk gives ENOSPC) leaves neither its partial nor a damaged target; and a killed
process's partial is swept by the next write beside it once that process is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pipeline.artifacts import copy_atomic, write_bytes_atomic

from .cli import edgeport_env

_MB = 2**20


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = edgeport_env()
    command = [sys.executable, "-c", textwrap.dedent(code), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=300)


def _partials(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.rglob("*.partial"))


def test_two_runs_copying_into_one_folder_never_break_each_other(tmp_path: Path) -> None:
    """The probe's case: 30 MB artifacts published into one --out by two runs at once, which shared one partial."""
    sources = []
    for index in range(2):
        source = tmp_path / f"source{index}.tflite"
        source.write_bytes(bytes([index + 1]) * (30 * _MB))
        sources.append(source)
    target = tmp_path / "out" / "fp32" / "model.tflite"
    copy_again = """
        import sys
        from pathlib import Path
        from pipeline.artifacts import copy_atomic
        for _ in range(8):
            copy_atomic(Path(sys.argv[1]), Path(sys.argv[2]))
        """
    env = edgeport_env()
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(copy_again), str(source), str(target)],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for source in sources
    ]
    errors = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    assert target.read_bytes() in (sources[0].read_bytes(), sources[1].read_bytes())  # one of them, whole
    assert _partials(tmp_path / "out") == []


def test_a_failed_write_leaves_no_partial_and_the_old_file_whole(tmp_path: Path) -> None:
    """Under a 1 MiB file-size limit every write past it fails (EFBIG): a file, a folder, raw bytes."""
    big = tmp_path / "big.onnx"
    big.write_bytes(b"\x01" * (4 * _MB))
    folder = tmp_path / "saved_model"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x02" * (2 * _MB))
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"the earlier run's")
    code = """
        import resource, sys
        from pathlib import Path
        from pipeline.artifacts import copy_atomic, write_bytes_atomic
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
        big, folder, out = map(Path, sys.argv[1:])
        for name, write in (
            ("file", lambda: copy_atomic(big, out / "model.onnx")),
            ("folder", lambda: copy_atomic(folder, out / "saved_model")),
            ("bytes", lambda: write_bytes_atomic(out / "model.tflite", big.read_bytes())),
        ):
            try:
                write()
                print(name, "written")
            except OSError as error:
                print(name, "failed:", "File too large" in str(error))  # copytree's shutil.Error lists them
        """
    done = _python(code, str(big), str(folder), str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "file failed: True",
        "folder failed: True",
        "bytes failed: True",
    ]
    assert sorted(path.name for path in out.iterdir()) == ["model.onnx"]  # no partial, no half a target
    assert (out / "model.onnx").read_bytes() == b"the earlier run's"


def _killed_mid_write(target: Path) -> tuple[int, list[Path]]:
    """A process writing `target` over and over, SIGKILLed while a partial of its is there; its pid and partials."""
    code = """
        import sys
        from pathlib import Path
        from pipeline.artifacts import write_bytes_atomic
        data = bytes(64 * 2**20)
        while True:
            write_bytes_atomic(Path(sys.argv[1]), data)
        """
    env = edgeport_env()
    for _ in range(5):  # a kill between a rename and the next partial leaves none: again
        writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(target)], env=env)
        deadline = time.monotonic() + 60
        while not list(target.parent.glob("*.partial")) and time.monotonic() < deadline:
            time.sleep(0.005)
        writer.kill()
        writer.wait(timeout=30)
        left = list(target.parent.glob("*.partial"))
        if left:
            return writer.pid, left
    raise AssertionError("never killed mid-write")


def test_a_killed_writers_partial_names_it_and_the_next_write_sweeps_it(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    pid, (left,) = _killed_mid_write(target)
    assert left.name.startswith(f".report.json-{pid}-") and left.name.endswith(".partial")
    running = tmp_path / f".report.json-{os.getppid()}-abc123.partial"  # a run beside this one, still writing
    running.write_text("half")
    other = tmp_path / f".summary.md-{pid}-abc123.partial"  # another file's: swept by a write of that file
    other.write_text("half")
    write_bytes_atomic(target, b"done")
    assert target.read_bytes() == b"done"
    assert _partials(tmp_path) == sorted([running.name, other.name])
    copy_atomic(target, tmp_path / "summary.md")
    assert _partials(tmp_path) == [running.name]
