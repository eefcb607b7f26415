import numpy as np
import pytest

from runtime.errors import EdgeRuntimeError
from runtime.weights import load_weights, save_weights, weights_id


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return {"a.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "a.bias": np.zeros(4, np.float32)}


def test_id_is_content_not_order_and_roundtrips(tmp_path):
    w = _weights()
    assert weights_id(w) == weights_id(dict(reversed(list(w.items()))))
    assert weights_id(w) != weights_id(_weights(1))
    # Same bytes under another name or shape is another weight set.
    assert weights_id(w) != weights_id({"b.weight": w["a.weight"], "a.bias": w["a.bias"]})
    wid = save_weights(w, tmp_path)
    back = load_weights(tmp_path / f"{wid}.npz")
    assert set(back) == set(w) and all(np.array_equal(back[k], w[k]) for k in w)
    assert save_weights(w, tmp_path) == wid and len(list(tmp_path.iterdir())) == 1


def test_corrupt_or_renamed_weights_are_refused(tmp_path):
    wid = save_weights(_weights(), tmp_path)
    path = tmp_path / f"{wid}.npz"
    other = tmp_path / "0123456789abcdef.npz"
    other.write_bytes(path.read_bytes())
    with pytest.raises(EdgeRuntimeError, match="hashes to"):
        load_weights(other)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(EdgeRuntimeError, match="corrupt"):
        load_weights(path)
    with pytest.raises(EdgeRuntimeError, match="missing"):
        load_weights(tmp_path / "nope.npz")
