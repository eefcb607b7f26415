"""Torch-free runtime for compiled controllable multi-task bundles.

    import runtime
    rt = runtime.load("bundles/scenes3")
    rt.set_preference([0.6, 0.2, 0.2], 0.5)
    outputs = rt(frame)

Imports only numpy here; optional backends (onnxruntime, tensorrt, cuda,
opencv) are imported lazily by the code that needs them, so `import runtime`
works on a bare CPU box.
"""

from edgecore.fold import fold_conv_bn
from edgecore.tree import canonical_tree, tree_signature
from runtime.core import Runtime, load
from runtime.errors import EdgeRuntimeError
from runtime.prefs import Preference, validate_preference

__all__ = [
    "EdgeRuntimeError",
    "Preference",
    "Runtime",
    "canonical_tree",
    "fold_conv_bn",
    "load",
    "tree_signature",
    "validate_preference",
]
