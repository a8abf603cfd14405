"""Explanations of what a compile did: graphs, saved tensors and their bytes, time per stage."""
from .text import format_entry, format_saved

__all__ = ["format_entry", "format_saved"]
