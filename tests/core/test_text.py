"""core.text: the one rule for untrusted text on its way out (printable, one_line, PrintableStream)."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import pytest

from pipeline.core.text import PrintableStream, is_one_line, one_line, printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J\x1b[1;32mverified", "\\x1b[2J\\x1b[1;32mverified"),  # clear screen, green
        ("a\rverified", "a\\rverified"),  # a carriage return overwrites the line it ends
        ("\x00\x07\x08\x7f", "\\x00\\x07\\x08\\x7f"),
        ("\x9b31m", "\\x9b31m"),  # C1 CSI: some terminals take it for ESC [
        ("abc\u202edcba", "abc\\u202edcba"),  # a bidi override reverses what follows on screen
        ("name\udcff", "name\\udcff"),  # a lone surrogate: a file name that is not UTF-8; unencodable as it is
        ("x\u2028y\ufffe", "x\\u2028y\\ufffe"),
    ],
)
def test_printable_escapes_what_a_reader_would_obey(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert one_line(text) == shown
    printable(text).encode("utf-8")  # encodable, unlike a lone surrogate


def test_printable_keeps_lines_and_ordinary_unicode_one_line_does_not() -> None:
    text = "✓ fp32\tmax_abs → 1e-5 × ü 漢字 🙂\nPASSED"
    assert printable(text) == text
    assert one_line(text) == "✓ fp32\\tmax_abs → 1e-5 × ü 漢字 🙂\\nPASSED"
    assert is_one_line(one_line(text)) and not is_one_line(text)


def test_escaping_is_idempotent() -> None:
    text = "a\x1b[0m\nb\\x1b"
    assert printable(printable(text)) == printable(text)
    assert one_line(one_line(text)) == one_line(text)


def test_every_escaped_text_is_well_formed_xml_and_json() -> None:
    everything = "".join(chr(code) for code in range(0x0, 0x250)) + "\ud800\udfff\ufffe\uffff\u202e"
    element = ET.Element("case", message=printable(everything))
    element.text = printable(everything)
    parsed = ET.fromstring(ET.tostring(element, encoding="unicode"))
    assert parsed.text == printable(everything)
    assert json.loads(json.dumps(one_line(everything))) == one_line(everything)


def test_the_stream_escapes_all_it_is_given_and_passes_the_rest_through() -> None:
    target = io.StringIO()
    stream = PrintableStream(target)
    print("edgeport: error: \x1b[2Jname\x07", file=stream, flush=True)
    stream.writelines(["a\r", "b\n"])
    assert target.getvalue() == "edgeport: error: \\x1b[2Jname\\x07\na\\rb\n"
    assert stream.getvalue() == target.getvalue()  # anything else is the stream's own
