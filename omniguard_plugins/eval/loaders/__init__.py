"""Loaders of the benchmark sets in their native formats, and of the files users bring."""

from .files import beavertails, golden, load_file, vlguard

__all__ = ["beavertails", "golden", "load_file", "vlguard"]
