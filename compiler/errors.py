"""The compiler's exceptions: bad input (exit 2) and failed verification (exit 1)."""


class CompilerError(Exception):
    """Bad input or environment: a message naming what was expected and found (CLI exit 2)."""


class ParityError(Exception):
    """A compiled engine disagrees with PyTorch beyond tolerance (CLI exit 1, nothing published)."""
