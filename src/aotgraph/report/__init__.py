"""Explanations of what a compile did: graphs, saved tensors and their bytes, time per stage."""
from .saved import SavedReport, saved_report
from .text import format_entry

__all__ = ["format_entry", "saved_report", "SavedReport"]
