import struct

import numpy as np
import pytest

from edgecore.arrays import SUFFIX, arrays_id, load_arrays, save_arrays
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
    back = load_arrays(tmp_path / f"{wid}{SUFFIX}")
    assert set(back) == set(w) and all(np.array_equal(back[k], w[k]) for k in w)
    assert save_arrays(w, tmp_path) == wid and [p.name for p in tmp_path.iterdir()] == [f"{wid}.safetensors"]


def test_files_are_plain_safetensors_with_the_id_of_npz_days(tmp_path):
    """The id is the format-2 content hash (names, dtype.str, shape, bytes), and the file
    is what any safetensors reader (the C++ runtime's) reads: a little-endian u64 header
    length, a JSON header with dtype, shape and data offsets, the raw bytes."""
    import json

    w = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.arange(3, dtype=np.int64)}
    assert arrays_id(w) == "c57db2017f8cbded"  # unchanged from bundle format 2
    raw = (tmp_path / f"{save_arrays(w, tmp_path)}{SUFFIX}").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert header["x"]["dtype"] == "F32" and header["x"]["shape"] == [2, 3]
    start, end = header["x"]["data_offsets"]
    assert raw[8 + n + start : 8 + n + end] == w["x"].tobytes()


def test_big_endian_arrays_keep_their_id_through_a_save(tmp_path):
    """safetensors stores little-endian: the id is taken of what is stored, so it verifies on load."""
    w = {"x": np.arange(4, dtype=">f4")}
    wid = save_arrays(w, tmp_path)
    np.testing.assert_array_equal(load_arrays(tmp_path / f"{wid}{SUFFIX}")["x"], w["x"])


def test_corrupt_or_renamed_weights_are_refused(tmp_path):
    wid = save_arrays(_weights(), tmp_path)
    path = tmp_path / f"{wid}{SUFFIX}"
    other = tmp_path / f"0123456789abcdef{SUFFIX}"
    other.write_bytes(path.read_bytes())
    with pytest.raises(EdgeError, match="hashes to"):
        load_arrays(other)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(EdgeError, match="corrupt"):
        load_arrays(path)
    with pytest.raises(EdgeError, match="missing"):
        load_arrays(tmp_path / f"nope{SUFFIX}")


def _tampered(raw: bytes) -> dict[str, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    flipped = bytearray(raw)
    flipped[-5] ^= 0xFF
    return {
        "a data byte changed": bytes(flipped),
        "header truncated": raw[: 8 + n // 2],
        "header length past the end": struct.pack("<Q", len(raw) * 4) + raw[8:],
        "header length huge": struct.pack("<Q", 2**63) + raw[8:],
        "data truncated": raw[:-3],
        "empty": b"",
        "an npz": b"PK\x03\x04" + raw[4:],
        "header not JSON": struct.pack("<Q", 4) + b"{{{{",
    }


@pytest.mark.parametrize("case", list(_tampered(b"\0" * 64)))
def test_a_tampered_file_is_refused_with_one_clear_error(tmp_path, case):
    wid = save_arrays(_weights(), tmp_path)
    path = tmp_path / f"{wid}{SUFFIX}"
    path.write_bytes(_tampered(path.read_bytes())[case])
    with pytest.raises(EdgeError, match=r"corrupt or not a safetensors file|corrupt: its content hashes to"):
        load_arrays(path)
