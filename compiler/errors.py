"""The compiler's exceptions: bad input (exit 2) and failed verification (exit 1)."""

from edgecore.errors import EdgeError


class CompilerError(EdgeError):
    """Bad input or environment: a message naming what was expected and found (CLI exit 2)."""


class ParityError(EdgeError):
    """A compiled engine disagrees with PyTorch beyond tolerance (CLI exit 1, nothing published)."""

    exit_code = 1
    label = "parity check failed"
