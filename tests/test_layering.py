"""The import rules of docs/design.md, read from the source (ast), so a change
that breaks the layering fails here before it reaches a device without torch."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"edgecore", "trainer", "compiler", "runtime", "benchmarks"}


def imports(package: str) -> list[tuple[str, str, bool]]:
    """(file, top-level module, at module level?) for every import in a package."""
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        top = {id(n) for n in tree.body} | {id(n) for s in tree.body if isinstance(s, ast.If) for n in s.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            out += [(path.relative_to(ROOT).as_posix(), n.split(".")[0], id(node) in top) for n in names]
    return out


# package -> modules it must never import, anywhere
FORBIDDEN = {
    "edgecore": PROJECT - {"edgecore"} | {"torch", "onnx", "onnxruntime", "tensorrt", "cv2"},
    "runtime": {"trainer", "compiler", "benchmarks", "torch"},
    "trainer": {"compiler", "runtime", "benchmarks"},
    "compiler": {"benchmarks"},
}
# package -> heavy optional modules it may import only inside the function that needs them
LAZY = {"runtime": {"onnx", "onnxruntime", "tensorrt", "cuda", "cv2", "filelock"}}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_what_the_layering_allows(package):
    bad = [(f, m) for f, m, _ in imports(package) if m in FORBIDDEN[package]]
    assert not bad, f"{package} imports {bad}"


def test_the_runtime_imports_heavy_backends_lazily():
    eager = [(f, m) for f, m, top in imports("runtime") if top and m in LAZY["runtime"]]
    assert not eager, f"module-level imports of optional backends: {eager}"


def test_the_rules_see_imports():
    """The checker itself: it finds the trainer's module-level torch import."""
    assert ("trainer/train.py", "torch", True) in imports("trainer")
