"""Training of controllable dynamic multi-task networks (anchor net, edge and
weight hypernets, PHN-BN baseline) and the paper's evaluation metrics."""

from trainer.errors import TrainerError

__all__ = ["TrainerError"]
