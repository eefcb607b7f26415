"""The one exception type that crosses the trainer's boundary."""

from edgecore.errors import EdgeError


class TrainerError(EdgeError):
    """Raised for bad configs, task names, datasets or checkpoints.

    Messages say what was expected and what was found; the CLI turns this
    exception into exit code 2.
    """
