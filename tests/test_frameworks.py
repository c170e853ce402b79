"""Native output capture as lanes use it: blocks that overlap across threads share one redirection, each gets what
fds 1 and 2 received while it ran, the descriptors come back when the last block exits, and a log line another
thread writes meanwhile reaches the user instead of a capture's buffer."""

from __future__ import annotations

import os
import sys
import threading

from pipeline.frameworks import captured_native_output, console_log


def test_overlapping_captures_restore_the_descriptors_and_spare_log_lines(capfd, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)  # the process's own stderr (fd 2), as the CLI has it
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    captured: dict[str, list[str]] = {}

    def first() -> None:
        with captured_native_output() as lines:
            first_in.set()
            os.write(2, b"native from the first\n")
            second_in.wait(10)
            console_log("progress from the first")
        captured["first"] = lines
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with captured_native_output() as lines:  # opened inside the first, closed after it
            second_in.set()
            first_out.wait(10)
            os.write(1, b"native from the second\n")
        captured["second"] = lines

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    os.write(2, b"after both\n")
    out, err = capfd.readouterr()
    assert "native from the first" in captured["first"] and "native from the second" in captured["second"]
    assert "progress from the first" not in captured["first"] + captured["second"]
    assert "progress from the first" in err and "after both" in err  # fd 2 is the test's again
    assert "native from" not in out + err


def test_a_litert_interpreter_is_built_in_one_place() -> None:
    """Delegate, resolver and threads are decided by frameworks.litert_interpreter; a second construction site
    is where the settings would drift apart."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "pipeline"
    sites = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "Interpreter(" in line and not line.lstrip().startswith("#")
    ]
    assert len(sites) == 1 and sites[0].startswith("frameworks.py:"), sites
