"""The tree family's torch half: derive, subnet, stored anchor + adaptation, cost and reference agree."""

import numpy as np
import pytest
import torch

from edgecore.family import get_family
from edgecore.tree import used_nodes
from trainer.config import load_config
from trainer.cost import tree_cost
from trainer.errors import TrainerError
from trainer.families import family_of, model_family
from trainer.models import build_models


def test_dymu_tree_operations_agree(randomise_bn):
    torch.manual_seed(0)
    m = build_models(load_config("tiny"))
    randomise_bn(m.anchor)
    m.anchor.eval()
    fam = model_family(family_of({"model": {}}))
    spec, deltas = fam.derive(m, torch.tensor([0.2, 0.3, 0.5]), 0.7)
    assert get_family(fam.name).canonical(spec) == spec
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = fam.reference(m, x, spec, deltas)
        sub = fam.subnet(m, spec, deltas)(x)
    for a, b in zip(sub, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # Stored as a bundle stores them: the anchor once, the point's deltas of its used nodes only.
    arrays, plan = fam.anchor_arrays(m)
    adaptation = fam.adaptation_arrays(spec, deltas)
    used = {f"n{l}_{i}" for l, row in enumerate(used_nodes(spec)) for i, u in enumerate(row) if u}
    assert adaptation and {k.split("/")[0] for k in adaptation} <= used
    weights = fam.info.anchor(arrays, plan).weights(spec, adaptation)
    state = {k: v.numpy() for k, v in fam.subnet(m, spec, deltas).state_dict().items()}
    assert set(weights) == set(state) and all(np.allclose(weights[k], state[k], atol=1e-6) for k in state)
    assert fam.cost(m, spec, 16) == tree_cost(m.anchor, spec, 16)
    assert fam.cost(m, fam.full_spec(m), 16)[0] > fam.cost(m, spec, 16)[0] or spec == fam.full_spec(m)


def test_an_unknown_family_is_a_trainer_error():
    with pytest.raises(TrainerError, match="unknown model family"):
        model_family("slim")
