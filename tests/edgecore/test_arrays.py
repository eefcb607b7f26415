import numpy as np
import pytest

from edgecore.arrays import arrays_id, load_arrays, save_arrays
from edgecore.errors import EdgeError


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return {"a.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "a.bias": np.zeros(4, np.float32)}


def test_id_is_content_not_order_and_roundtrips(tmp_path):
    w = _weights()
    assert arrays_id(w) == arrays_id(dict(reversed(list(w.items()))))
    assert arrays_id(w) != arrays_id(_weights(1))
    # Same bytes under another name or shape is another weight set.
    assert arrays_id(w) != arrays_id({"b.weight": w["a.weight"], "a.bias": w["a.bias"]})
    wid = save_arrays(w, tmp_path)
    back = load_arrays(tmp_path / f"{wid}.npz")
    assert set(back) == set(w) and all(np.array_equal(back[k], w[k]) for k in w)
    assert save_arrays(w, tmp_path) == wid and len(list(tmp_path.iterdir())) == 1


def test_corrupt_or_renamed_weights_are_refused(tmp_path):
    wid = save_arrays(_weights(), tmp_path)
    path = tmp_path / f"{wid}.npz"
    other = tmp_path / "0123456789abcdef.npz"
    other.write_bytes(path.read_bytes())
    with pytest.raises(EdgeError, match="hashes to"):
        load_arrays(other)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(EdgeError, match="corrupt"):
        load_arrays(path)
    with pytest.raises(EdgeError, match="missing"):
        load_arrays(tmp_path / "nope.npz")
