"""The torch-free base layer every package may import: the tree and its
signature and naming, file I/O, the exception base with an exit code, and the
CLI wrapper. It imports nothing of the project (tests/test_layering.py checks),
so the rules it holds exist once, not once per package (tinygrad's helpers.py)."""

from edgecore.errors import EdgeError

__all__ = ["EdgeError"]
