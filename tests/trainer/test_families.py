"""The tree family's torch half: derive, subnet, folder, cost and reference agree."""

import numpy as np
import pytest
import torch

from edgecore.family import get_family
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
    weights = fam.folder(m)(spec, deltas)
    state = {k: v.numpy() for k, v in fam.subnet(m, spec, deltas).state_dict().items()}
    assert set(weights) == set(state) and all(np.allclose(weights[k], state[k], atol=1e-6) for k in state)
    assert fam.cost(m, spec, 16) == tree_cost(m.anchor, spec, 16)
    assert fam.cost(m, fam.full_spec(m), 16)[0] > fam.cost(m, spec, 16)[0] or spec == fam.full_spec(m)


def test_an_unknown_family_is_a_trainer_error():
    with pytest.raises(TrainerError, match="unknown model family"):
        model_family("slim")
