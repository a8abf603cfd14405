"""Explanations of what a compile did: graphs, saved tensors and their bytes, time per stage."""
from .saved import SavedReport, saved_report
from .text import format_entry, format_graph_code

__all__ = ["format_entry", "format_graph_code", "saved_report", "SavedReport"]
