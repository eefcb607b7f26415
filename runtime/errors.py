"""The one exception type that crosses the runtime's boundary."""

from edgecore.errors import EdgeError


class EdgeRuntimeError(EdgeError):
    """Bad preferences, budgets, frames or bundles; messages say what was
    expected and what was found. CLIs turn it into exit code 2."""
