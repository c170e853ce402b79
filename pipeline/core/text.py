"""The one rule for untrusted text on its way out: names, paths and messages that came from a model, its data, a
recipe or a report.json reach a terminal, a Markdown or HTML page, an XML file or a YAML comment only as
characters that show as themselves.

A terminal obeys control characters: ESC starts a sequence that can clear the screen, move the cursor or recolour
what follows (a model name made `verify` print a fake green "verified" line), a carriage return overwrites the
line it ends, a newline starts a line that reads as edgeport's own (`PASSED: 7/7 outputs`). XML 1.0 forbids most
C0 characters even as references, and a lone surrogate (a file name that is not UTF-8) cannot be encoded at all.
So each such character is written as its visible Python escape (`\\x1b`, `\\r`, `\\u202e`): a reader still sees
that it was there, and which.

Knows nothing of reports or formats: plain functions of strings for every writer to call at its exit, and a
stream that applies the rule to all a command prints.
"""

from __future__ import annotations

import re
from typing import Any

# C0 but tab and newline, DEL, C1; bidirectional overrides and isolates (they reorder what a reader sees);
# line and paragraph separators (some readers break lines there); surrogates; the two non-characters XML forbids.
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff\ufffe\uffff"
_KEEP_LINES = re.compile(f"[{_UNSAFE}]")
_ONE_LINE = re.compile(f"[{_UNSAFE}\n\t]")
_SHORT = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: Any) -> str:
    """`text` with every control, reordering or unencodable character as its visible escape; newlines and tabs
    stay, for a writer that lays out lines (a whole console message, a whole report page). Idempotent: the
    escapes it writes are plain characters."""
    return _KEEP_LINES.sub(_escape, str(text))


def one_line(text: Any) -> str:
    """`printable`, with newlines and tabs escaped too: for one field (a tensor name, a path) set inside a line
    that a reader takes as edgeport's, where a newline would start a line of the attacker's."""
    return _ONE_LINE.sub(_escape, str(text))


def is_one_line(text: str) -> bool:
    """Whether `text` is already one printable line: nothing `one_line` would escape."""
    return _ONE_LINE.search(text) is None


class PrintableStream:
    """A text stream (the console's stdout or stderr) that writes everything through `printable`: what a command
    prints passes here whichever module composed it. Everything else (flush, fileno, isatty) is the stream's."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(printable(text))
        return len(text)  # what print() and TextIO callers count is what they gave

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
