"""One exported tree graph with two weight sets, shared by the backend tests."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

TREE = ((0, 0, 0), (0, 1, 1), (0, 1, 2), (2, 1, 2))
SHAPE = (1, 3, 16, 16)


class TreeGraph(NamedTuple):
    dir: Path  # holds graph.onnx; tests build their engines beside it
    weight_names: tuple[str, ...]
    anchor: object
    deltas: dict  # the adapted set's BN deltas
    base: dict[str, np.ndarray]  # folded weights, unadapted
    adapted: dict[str, np.ndarray]  # folded weights with `deltas`


@pytest.fixture(scope="module")
def tree_graph(tmp_path_factory) -> TreeGraph:
    """TREE of a tiny anchor with random BN statistics, exported to ONNX, and two weight sets."""
    pytest.importorskip("onnx")
    import torch

    from compiler.export import export_graph
    from tests.conftest import randomise_bn
    from trainer.config import load_config
    from trainer.models import build_models
    from trainer.models.subnet import TreeFolder

    torch.manual_seed(0)
    m = build_models(load_config("tiny"))
    randomise_bn(m.anchor)
    m.anchor.eval()
    d = tmp_path_factory.mktemp("tree-graph")
    info = export_graph(m.anchor.subnet(TREE), SHAPE[1:], m.anchor.task_names, d / "graph.onnx")
    r = torch.tensor([0.2, 0.3, 0.5])
    deltas = {k: {n: torch.randn_like(v) * 0.2 for n, v in dd.items()} for k, dd in m.adaptation(r, 0.5).items()}
    folder = TreeFolder(m.anchor)
    return TreeGraph(d, info.weight_names, m.anchor, deltas, folder.weights(TREE), folder.weights(TREE, deltas))
