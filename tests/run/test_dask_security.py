"""The local Dask cluster `--executor dask` starts admits no one else: it speaks TLS with certificates made for the
run, on 127.0.0.1 only, so a client without them (plain tcp://, tls:// without certificates, or with a certificate
of its own) cannot connect or run a function; and no port it opens answers HTTP (distributed starts an HTTP server
on the scheduler and on each worker whatever `dashboard_address` says: the probe read its info pages).
The cluster is started as edgeport starts it (pipeline.run.distribute), with real sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipeline.errors import EdgeportError
from pipeline.run import distribute

distributed = pytest.importorskip("distributed")

REFUSED_WITHIN = 10.0  # seconds; the attempts below use 3 s timeouts


def _listening(pids: list[int]) -> set[tuple[str, int]]:
    found = set()
    for pid in pids:
        for connection in psutil.Process(pid).net_connections(kind="inet"):
            if connection.status == psutil.CONN_LISTEN:
                found.add((connection.laddr.ip, connection.laddr.port))
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, set[tuple[str, int]]]]:
    """The run's cluster (two workers), its scheduler address and every address it listens on."""
    before = _listening([os.getpid()])
    with distribute._client(distributed, distribute.Placement("dask", jobs=2)) as client:
        client.wait_for_workers(2, timeout=30)
        workers = list(client.run(os.getpid).values())  # the worker processes (the nannies live in this one)
        ports = (_listening([os.getpid()]) - before) | _listening(workers)
        yield client.scheduler.address, ports


def test_the_cluster_speaks_tls_on_loopback_only(cluster) -> None:
    address, ports = cluster
    assert address.startswith("tls://127.0.0.1:")
    assert len(ports) >= 5, ports  # scheduler, two nannies, two workers: nothing else, and no HTTP server
    assert {host for host, _ in ports} == {"127.0.0.1"}, ports


def _ran_marker(path: str) -> str:
    Path(path).write_text("a stranger's function ran here")
    return path


@pytest.mark.parametrize("how", ["tcp", "tls without certificates", "tls with a certificate of its own"])
def test_a_client_without_the_runs_certificates_cannot_run_a_function(cluster, tmp_path: Path, how: str) -> None:
    address, _ = cluster
    port = address.rsplit(":", 1)[1]
    marker = tmp_path / "ran"
    target = f"tcp://127.0.0.1:{port}" if how == "tcp" else f"tls://127.0.0.1:{port}"
    security = distributed.security.Security.temporary() if how.endswith("of its own") else None
    started = time.monotonic()
    with (
        pytest.raises((OSError, TimeoutError, TypeError, ValueError)),
        distributed.Client(target, timeout=3, security=security) as stranger,
    ):
        stranger.run(_ran_marker, str(marker))
        stranger.run_on_scheduler(_ran_marker, str(marker))
    assert time.monotonic() - started < REFUSED_WITHIN
    assert not marker.exists()


async def _identity(address: str) -> object:
    comm = await distributed.comm.connect(address, timeout=3)
    try:
        await comm.write({"op": "identity"})
        return await comm.read()
    finally:
        comm.abort()


def test_no_port_of_the_cluster_answers_a_stranger(cluster) -> None:
    """Every port, the workers' and nannies' included (the probe ran functions in a worker directly)."""
    _, ports = cluster
    for host, port in sorted(ports):
        started = time.monotonic()
        with pytest.raises((OSError, TimeoutError)):
            asyncio.run(_identity(f"tcp://{host}:{port}"))
        assert time.monotonic() - started < REFUSED_WITHIN, port


def _http_answer(host: str, port: int, tls: bool) -> bytes:
    """What the port answers to an HTTP GET, over plain TCP or TLS (server certificate not checked, none of ours)."""
    request = f"GET /info/main/workers.html HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((host, port), timeout=3) as raw:
            if not tls:
                raw.sendall(request)
                return raw.recv(64)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            with context.wrap_socket(raw, server_hostname=host) as wrapped:
                wrapped.sendall(request)
                return wrapped.recv(64)
    except (OSError, ssl.SSLError):  # reset, refused, handshake refused: no answer
        return b""


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_no_port_of_the_cluster_answers_http(cluster, tls: bool) -> None:
    _, ports = cluster
    answers = {port: _http_answer(host, port, tls) for host, port in sorted(ports)}
    assert not [port for port, answer in answers.items() if answer.startswith(b"HTTP/")], answers


def test_without_cryptography_the_local_cluster_is_one_line_saying_how_to_install(monkeypatch) -> None:
    """No certificates, no cluster: never a fallback to a plain one anyone on the machine could use."""
    monkeypatch.setitem(sys.modules, "cryptography", None)  # import cryptography now raises ImportError
    before = _listening([os.getpid()])
    with pytest.raises(EdgeportError, match=r"needs cryptography .*pip install edgeport\[cluster\]"):
        list(distribute.completed(print, [("never",)], distribute.Placement("dask", jobs=1)))
    assert _listening([os.getpid()]) == before  # nothing was started
