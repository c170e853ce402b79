"""Where the tasks of a batch run: in this process one after another, in local worker processes (`--jobs N`), or
on a Dask cluster (`--executor dask`, `--scheduler ADDRESS`). Yields each task's result as it completes.

Knows tasks (a picklable function and its arguments) and where to send them; nothing of recipes, reports or the
summary (pipeline.run.batch). dask and distributed are an optional dependency (`pip install edgeport[cluster]`):
imported only here and only inside the functions that use them, so `validate`, `schema` and local runs never
import them. On a cluster every path a task reads or writes must be one each worker sees at the same name (a
shared filesystem): before any task is sent, each worker must find the files named in `Placement.files` and read
a token this process wrote into each folder of `Placement.shared_dirs`; a worker that cannot is named.

Whoever can submit a task to a cluster runs code in its workers, and a client runs what the scheduler sends back:
the local cluster edgeport starts therefore speaks TLS on 127.0.0.1 only, with a CA and certificates made for this
run (`Security.temporary()`), so another local user's client cannot join, and serves no HTTP (its scheduler and
workers start HTTP servers whatever `dashboard_address` says: their routes are emptied and the servers stopped as
each starts, by this module's `dask_setup`). A cluster given by `--scheduler` is secured by whoever runs it: the
client takes its TLS settings from dask's configuration (docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.errors import EdgeportError, first_line

EXECUTORS = ("local", "dask")
CONNECT_SECONDS = 10.0  # a scheduler that does not answer in this time is reported, not waited for
INSTALL = "pip install edgeport[cluster]"
NO_DAEMON = "DASK_DISTRIBUTED__WORKER__DAEMON=False"
# The local cluster's settings: workers start the conversion worker (no daemons); no HTTP routes, and this module
# as the preload of the scheduler and of each worker, whose `dask_setup` stops the HTTP server each starts.
LOCAL_SETTINGS = {
    "distributed.worker.daemon": False,
    "distributed.scheduler.http.routes": [],
    "distributed.worker.http.routes": [],
    "distributed.scheduler.preload": [__name__],
    "distributed.worker.preload": [__name__],
}

Task = Callable[..., Any]
Done = Iterator[tuple[int, Any]]  # (index of the task, its result, or the exception that ended it)


@dataclass(frozen=True)
class Placement:
    executor: str = "local"  # local | dask
    jobs: int = 1  # local processes; with dask and no scheduler, the workers of a LocalCluster
    scheduler: str | None = None  # a dask scheduler address (tcp://host:8786); None: a LocalCluster on loopback
    shared_dirs: tuple[Path, ...] = ()  # folders every worker must share with this process (--out, the cache)
    files: tuple[Path, ...] = ()  # files every worker must read (the recipes)
    children: bool = True  # tasks start processes of their own (the conversion worker): workers must not be daemons


def completed(task: Task, arguments: list[tuple[Any, ...]], placement: Placement) -> Done:
    """Run `task(*args)` for each entry; yield (index, result) as each finishes, in whatever order that is."""
    if placement.executor not in EXECUTORS:
        raise EdgeportError(f"--executor {placement.executor}: unknown; one of {', '.join(EXECUTORS)}")
    if placement.scheduler is not None and placement.executor != "dask":
        raise EdgeportError("--scheduler names a dask scheduler: it needs --executor dask")
    if placement.scheduler is not None and not placement.scheduler.strip():
        raise EdgeportError("--scheduler is empty: give the scheduler's address (tcp://host:8786), or leave it out")
    if placement.executor == "dask":
        yield from _on_dask(task, arguments, placement)
    elif placement.jobs > 1:
        yield from _in_processes(task, arguments, placement.jobs)
    else:
        for index, args in enumerate(arguments):
            yield index, task(*args)


def _in_processes(task: Task, arguments: list[tuple[Any, ...]], jobs: int) -> Done:
    context = multiprocessing.get_context("spawn")  # no TensorFlow state shared with the workers
    # The pool starts its processes from this thread (spawn: on submit): they die with it, or with this process.
    parent = (os.getpid(), threading.current_thread() is threading.main_thread())
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_pool_worker, initargs=parent) as pool:
        futures: dict[Future[Any], int] = {pool.submit(task, *args): n for n, args in enumerate(arguments)}
        for future in as_completed(futures):
            yield futures[future], _outcome(future.result)


def _on_dask(task: Task, arguments: list[tuple[Any, ...]], placement: Placement) -> Done:
    distributed = _import_distributed()
    with _client(distributed, placement) as client:
        check_workers(client, placement)
        run = uuid.uuid4().hex[:8]
        futures = {
            client.submit(task, *args, key=f"edgeport-{run}-{n}", pure=False, retries=0): n
            for n, args in enumerate(arguments)
        }
        for future in distributed.as_completed(futures):
            yield futures[future], _outcome(future.result)


def _pool_worker(parent: int, from_main_thread: bool) -> None:
    """A pool process's first act: a parent killed outright (SIGKILL) runs no shutdown, and its pool must not run
    recipes on, for no one, for minutes."""
    from pipeline.run.worker import _die_with_parent  # the conversion worker's own rule, for the same reason

    _die_with_parent(parent, from_main_thread)


def _outcome(result: Callable[[], Any]) -> Any:
    """A task that raised (a bug, a worker that died) is that task's outcome; the others go on."""
    try:
        return result()
    except Exception as error:
        return error


def _import_distributed() -> Any:
    try:
        import dask  # noqa: F401  (distributed needs it; a half install fails here with the same line)
        import distributed
    except ImportError as error:
        raise EdgeportError(f"--executor dask needs dask and distributed ({first_line(error)}): {INSTALL}") from None
    return distributed


@contextlib.contextmanager
def _client(distributed: Any, placement: Placement) -> Iterator[Any]:
    """A client of the given scheduler, or of a LocalCluster of `jobs` single-threaded worker processes."""
    if placement.scheduler is None:
        with _local_cluster(distributed, placement.jobs) as cluster, distributed.Client(cluster) as client:
            yield client  # the cluster's certificates: Client(cluster) takes cluster.security
        return
    try:
        client = distributed.Client(placement.scheduler, timeout=CONNECT_SECONDS)
    except (OSError, ValueError, TypeError) as error:  # unreachable, refused, timed out, malformed address
        raise EdgeportError(f"--scheduler {placement.scheduler}: cannot connect: {first_line(error)}") from None
    with client:
        yield client


def _local_cluster(distributed: Any, jobs: int) -> Any:
    """`jobs` single-threaded worker processes on 127.0.0.1: TLS with certificates made for this run, no HTTP."""
    import dask

    try:
        security = distributed.security.Security.temporary()
    except ImportError as error:  # it makes the certificates with `cryptography`, part of the cluster extra
        raise EdgeportError(f"--executor dask needs cryptography ({first_line(error)}): {INSTALL}") from None
    with dask.config.set(LOCAL_SETTINGS):
        return distributed.LocalCluster(
            n_workers=jobs,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            protocol="tls",
            security=security,
            dashboard_address=None,
        )


def dask_setup(server: Any) -> None:
    """Dask's preload hook, run in the local cluster's scheduler and in each worker once it has started: stop the
    HTTP server distributed starts on every node even with no dashboard (routes emptied too, for the moment before
    this runs). A node without one (a nanny) is left as it is."""
    http = getattr(server, "http_server", None)
    if http is not None:
        http.stop()
        getattr(server, "services", {}).pop("dashboard", None)


def check_workers(client: Any, placement: Placement) -> None:
    """Every worker runs this edgeport, one task at a time, may start processes and sees the shared paths."""
    try:
        client.wait_for_workers(1, timeout=CONNECT_SECONDS)
    except (TimeoutError, OSError):
        raise EdgeportError(f"{_where(placement)}: no dask worker joined in {CONNECT_SECONDS:g} s") from None
    threads = {address: info.get("nthreads", 1) for address, info in client.scheduler_info()["workers"].items()}
    crowded = sorted(address for address, count in threads.items() if count != 1)
    if crowded:
        raise EdgeportError(
            f"dask worker {crowded[0]} runs {threads[crowded[0]]} threads: edgeport runs one recipe per worker "
            "process (TensorFlow and captured converter output are per process); start workers with --nthreads 1"
        )
    tokens: list[str] = []
    try:
        _write_tokens(placement.shared_dirs, tokens)
        answers = client.run(_worker_sees, [str(path) for path in placement.files], tokens)
    except EdgeportError:
        raise
    except Exception as error:  # the worker could not import edgeport, or a path check failed in a way unforeseen
        raise EdgeportError(f"dask workers could not run edgeport ({first_line(error)}): {INSTALL} on each") from None
    finally:
        for token in tokens:
            Path(token).unlink(missing_ok=True)
    for address, (version, daemon, missing) in sorted(answers.items()):
        if version != __version__:
            raise EdgeportError(f"dask worker {address} runs edgeport {version}, this is {__version__}: {INSTALL}")
        if daemon and placement.children:
            raise EdgeportError(
                f"dask worker {address} is a daemon process and cannot start edgeport's conversion worker: "
                f"start it with {NO_DAEMON} (or run with --no-isolation)"
            )
        if missing:
            raise EdgeportError(
                f"dask worker {address} cannot see {missing[0]}: recipes, models, data, --out and the cache must be "
                "on a filesystem every worker shares, at the same path"
            )


def _where(placement: Placement) -> str:
    return f"--scheduler {placement.scheduler}" if placement.scheduler else "the local dask cluster"


def _write_tokens(folders: tuple[Path, ...], tokens: list[str]) -> None:
    """A token file in each folder, its path appended to `tokens` as soon as it exists (the caller removes them)."""
    for folder in folders:
        token = folder / f".edgeport-shared-{uuid.uuid4().hex}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            token.write_text("written by the edgeport client; each dask worker must see it\n")
        except OSError as error:
            raise EdgeportError(f"{folder}: cannot write there ({first_line(error)})") from None
        tokens.append(str(token))


def _worker_sees(files: list[str], tokens: list[str]) -> tuple[str, bool, list[str]]:
    """Run on each worker: its edgeport version, whether it is a daemon, the paths it cannot see."""
    missing = [path for path in files if not Path(path).is_file()]
    missing += [str(Path(token).parent) for token in tokens if not Path(token).is_file()]
    return __version__, bool(multiprocessing.current_process().daemon), missing
