import os

import pytest

from edgecore.errors import EdgeError
from edgecore.paths import check_id, check_relative, confine


@pytest.mark.parametrize("value", ["../x", "/etc/passwd", "a/../../b", "", "a\\b", "C:x", "./a", None, 3, "a/./b"])
def test_paths_that_could_leave_the_folder_are_refused(value):
    with pytest.raises(EdgeError, match="engines.path: expected a relative path"):
        check_relative(value, "engines.path")


def test_a_symlink_out_of_the_folder_is_refused_for_reading_and_writing(tmp_path):
    root, outside = tmp_path / "bundle", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (outside / "secret").write_text("x")
    os.symlink(outside / "secret", root / "link")
    os.symlink(outside, root / "latency")
    with pytest.raises(EdgeError, match="leaves"):
        confine(root, "link", "engine")
    with pytest.raises(EdgeError, match="leaves"):
        confine(root, "latency/table.json", "latency table")  # a write target through a linked folder
    (root / "engines").mkdir()
    assert confine(root, "engines/a.onnx", "engine") == (root / "engines" / "a.onnx").resolve()


@pytest.mark.parametrize(
    "kind, good, bad",
    [
        ("hex16", "0123456789abcdef", ["0123456789ABCDEF", "0123", "../0123456789abc", 16]),
        ("name", "cpu-x86_64", ["..", "a/b", "", "-rf", "x" * 200]),
    ],
)
def test_ids_match_their_pattern_in_full(kind, good, bad):
    assert check_id(good, kind, "f") == good
    for value in bad:
        with pytest.raises(EdgeError, match=f"f: expected {kind}"):
            check_id(value, kind, "f")
