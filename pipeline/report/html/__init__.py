"""report.html: one self-contained page (inline CSS and SVG, no scripts); `render` is the registered writer."""

from pipeline.report.html.page import render

__all__ = ["render"]
