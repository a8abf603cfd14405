"""Explanations of what a compile did: graphs, saved tensors and their bytes, time per stage,
memory timelines; as text (`format_entry`), as a `Report` object (`build_report`), as one
self-contained HTML page (`write_html`) or JSON (`Report.to_json`)."""
from .build import build_report
from .data import Report
from .html import format_html, write_html
from .saved import SavedReport, saved_report
from .text import format_entry, format_graph_code

__all__ = ["format_entry", "format_graph_code", "saved_report", "SavedReport", "Report", "build_report",
           "format_html", "write_html"]
