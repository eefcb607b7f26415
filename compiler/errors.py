"""The one exception type that crosses the compiler's boundary."""


class CompilerError(Exception):
    """Bad grid files, checkpoints, caches or failed parity; the CLI maps it to exit code 2."""
