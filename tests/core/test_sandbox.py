"""pipeline.core.sandbox: a real child Python process confines itself and then tries what a hostile model would.

Each probe runs in its own interpreter (Landlock cannot be undone, and the test process must stay free): it confines
itself to a read root and a write root, then reads, writes, connects and opens sockets, and prints what happened.
Nothing is mocked: the kernel decides.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.core.sandbox import landlock_abi

from ..cli import edgeport_env

ABI, WHY_NOT = landlock_abi()
needs_landlock = pytest.mark.skipif(ABI == 0, reason=f"no Landlock here: {WHY_NOT}")
needs_seccomp = pytest.mark.skipif(
    ABI == 0 or platform.machine() not in ("x86_64", "aarch64"),
    reason="the socket filter needs Landlock, x86_64 or aarch64",
)

_PROBE = """\
import ctypes, json, multiprocessing, os, shutil, socket, sys
from pathlib import Path
from pipeline.core.sandbox import confine

def io_uring_setup():
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    fd = libc.syscall(425, 1, params)  # the same number on x86_64 and aarch64
    if fd < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    os.close(fd)

def spawned(ours):
    child = multiprocessing.get_context("spawn").Process(target=ours.send, args=("spawned",))
    child.start()
    child.join(60)

if __name__ == "__main__":
    reads, writes, own, actions = json.loads(sys.argv[1])
    mine, ours = multiprocessing.get_context("spawn").Pipe()  # before confine, as a worker's link to its parent
    state = confine(reads, writes, own=own)
    print("state", state.describe(), flush=True)
    for kind, target in actions:
        try:
            if kind == "read":
                Path(target).read_text()
            elif kind == "write":
                Path(target).write_text("written by the confined process")
            elif kind == "remove":
                shutil.rmtree(target)
            elif kind == "connect":
                socket.create_connection(("127.0.0.1", int(target)), timeout=5).close()
            elif kind == "udp":
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", int(target)))
            elif kind == "unix":
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()
            elif kind == "unix-connect":
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.connect(target)
                    client.sendall(b"confined")
            elif kind == "socketpair":
                left, right = socket.socketpair()
                left.sendall(b"x")
                assert right.recv(1) == b"x"
            elif kind == "pipe":
                ours.send(target)
                assert mine.recv() == target
            elif kind == "spawn":
                spawned(ours)
                assert mine.poll(60) and mine.recv() == "spawned"
            elif kind == "io_uring":
                io_uring_setup()
            print(kind, target, "ok", flush=True)
        except OSError as error:
            print(kind, target, type(error).__name__, flush=True)
"""


def _probe(
    reads: list[Path], writes: list[Path], actions: list[tuple[str, str]], own: Path | None = None, **env: str
) -> dict[tuple[str, str], str]:
    """What each action gave in a child confined to `reads`, `writes` and its `own` folder: "ok" or the OSError's
    class name."""
    plan = json.dumps([[str(p) for p in reads], [str(p) for p in writes], own and str(own), actions])
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, plan], capture_output=True, text=True, env=edgeport_env(**env), timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    outcomes = {tuple(line.split(" ")[:2]): line.split(" ")[2] for line in lines[1:]}
    outcomes[("state", "")] = lines[0].removeprefix("state ")
    return outcomes


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    folders = {name: tmp_path / name for name in ("readable", "writable", "outside")}
    for folder in folders.values():
        folder.mkdir()
        (folder / "file.txt").write_text(f"the {folder.name} file")
    return folders


@needs_landlock
def test_a_confined_process_reads_and_writes_only_its_roots(places: dict[str, Path]) -> None:
    actions = [
        ("read", str(places["readable"] / "file.txt")),
        ("read", str(places["writable"] / "file.txt")),
        ("write", str(places["writable"] / "new.txt")),
        ("read", str(places["outside"] / "file.txt")),
        ("write", str(places["outside"] / "canary.txt")),
        ("write", str(places["readable"] / "canary.txt")),
        ("read", f"/proc/{os.getpid()}/environ"),  # this test's environment: a CI job's secrets
        ("read", "/proc/self/status"),
    ]
    outcomes = _probe([places["readable"]], [places["writable"]], actions)
    assert outcomes[("state", "")].startswith(f"landlock ABI {ABI}: reads ")
    assert outcomes[("read", str(places["readable"] / "file.txt"))] == "ok"
    assert outcomes[("read", str(places["writable"] / "file.txt"))] == "ok"
    assert outcomes[("write", str(places["writable"] / "new.txt"))] == "ok"
    assert outcomes[("read", str(places["outside"] / "file.txt"))] == "PermissionError"
    assert outcomes[("write", str(places["outside"] / "canary.txt"))] == "PermissionError"
    assert outcomes[("write", str(places["readable"] / "canary.txt"))] == "PermissionError"
    assert outcomes[("read", f"/proc/{os.getpid()}/environ")] == "PermissionError"
    assert outcomes[("read", "/proc/self/status")] == "ok"
    assert (places["writable"] / "new.txt").read_text() == "written by the confined process"
    assert not (places["outside"] / "canary.txt").exists()
    assert not (places["readable"] / "canary.txt").exists()


@needs_landlock
def test_a_confined_process_removes_its_own_folder_and_no_full_one(places: dict[str, Path], tmp_path: Path) -> None:
    own = tmp_path / "own"
    (own / "deep").mkdir(parents=True)
    (own / "deep" / "module.py").write_text("# what autograph leaves")
    actions = [("remove", str(places["readable"])), ("remove", str(own))]
    outcomes = _probe([places["readable"]], [], actions, own=own)
    assert outcomes[("remove", str(places["readable"]))] == "PermissionError"
    assert (places["readable"] / "file.txt").exists()
    assert outcomes[("remove", str(own))] == "ok"
    assert not own.exists()


@pytest.mark.skipif(ABI < 4, reason=f"Landlock ABI {ABI} has no network rules (ABI 4, Linux 6.7)")
def test_a_confined_process_opens_no_tcp_connection(places: dict[str, Path]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = str(server.getsockname()[1])
        outcomes = _probe([], [places["writable"]], [("connect", port)])
    assert outcomes[("connect", port)] == "PermissionError"
    assert "no TCP" in outcomes[("state", "")]


@needs_seccomp
def test_a_confined_process_opens_no_socket_but_keeps_its_pipes(places: dict[str, Path]) -> None:
    """Landlock lets UDP and named unix sockets (a daemon's, /var/run/docker.sock) through: the seccomp filter does
    not. What the process already holds, and socketpair, still carry messages; a spawned child still starts."""
    with _unix_listener() as (path, server), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = str(udp.getsockname()[1])
        actions = [("udp", port), ("unix", ""), ("unix-connect", path), ("io_uring", "")]
        actions += [("socketpair", ""), ("pipe", "a-message"), ("spawn", "")]
        outcomes = _probe([], [places["writable"]], actions)
        server.settimeout(0)
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody came
    assert outcomes[("state", "")].endswith(", no new sockets")
    for denied in ("udp", "unix", "unix-connect", "io_uring"):
        assert outcomes[(denied, dict(actions)[denied])] == "PermissionError", denied
    assert outcomes[("socketpair", "")] == "ok"
    assert outcomes[("pipe", "a-message")] == "ok"
    assert outcomes[("spawn", "")] == "ok"


def test_without_the_sandbox_the_same_sockets_open(places: dict[str, Path]) -> None:
    """The diagnostic switch: the unix socket above is reachable, so the test above sees the filter, not a dud."""
    with _unix_listener() as (path, server):
        outcomes = _probe([], [], [("unix-connect", path), ("unix", "")], EDGEPORT_SANDBOX="off")
        server.settimeout(30)
        accepted, _ = server.accept()
        accepted.close()
    assert outcomes[("unix-connect", path)] == "ok"
    assert outcomes[("unix", "")] == "ok"


@contextlib.contextmanager
def _unix_listener() -> Iterator[tuple[str, socket.socket]]:
    """A named unix socket the (unconfined) test listens on, under /tmp: a socket's path has at most 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="edgeport-sock-") as folder:
        path = os.path.join(folder, "daemon.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(path)
            server.listen(1)
            yield path, server


def test_the_diagnostic_switch_leaves_the_process_free_and_says_so(places: dict[str, Path]) -> None:
    target = places["outside"] / "canary.txt"
    outcomes = _probe([], [], [("write", str(target))], EDGEPORT_SANDBOX="off")
    assert outcomes[("state", "")] == "none (EDGEPORT_SANDBOX=off, a diagnostic switch)"
    assert outcomes[("write", str(target))] == "ok"
    assert target.exists()


_TF_PROBE = """\
import sys
from pipeline.frameworks import import_tensorflow
tf = import_tensorflow()
from pipeline.core.sandbox import confine
confine([], [sys.argv[2]])

@tf.function
def leak():
    return tf.io.read_file(sys.argv[1])

for attempt in (lambda: tf.io.write_file(sys.argv[3], "x"), leak):
    try:
        attempt()
        print("ok")
    except tf.errors.PermissionDeniedError:
        print("denied")
"""


@needs_landlock
def test_tensorflow_ops_run_confined_in_the_threads_tensorflow_starts(places: dict[str, Path]) -> None:
    """TensorFlow runs graph ops in thread pools: those it starts after `confine` are confined too."""
    secret, canary = places["outside"] / "file.txt", places["outside"] / "canary.txt"
    done = subprocess.run(
        [sys.executable, "-c", _TF_PROBE, str(secret), str(places["writable"]), str(canary)],
        capture_output=True,
        text=True,
        env=edgeport_env(TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300,
    )
    assert done.stdout.split() == ["denied", "denied"], done.stderr[-2000:]
    assert not canary.exists()
