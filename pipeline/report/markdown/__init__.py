"""report.md: the table a person reads in a CI log or a job summary; `render` is the registered writer."""

from pipeline.report.markdown.page import render

__all__ = ["render"]
