"""Torch-free runtime for compiled controllable multi-task bundles.

Imports only numpy here; optional backends (onnxruntime, tensorrt, cuda,
opencv) are imported lazily by the code that needs them, so `import runtime`
works on a bare CPU box.
"""

from runtime.errors import EdgeRuntimeError
from runtime.fold import fold_conv_bn
from runtime.prefs import Preference, validate_preference
from runtime.signature import canonical_tree, tree_signature

__all__ = ["EdgeRuntimeError", "Preference", "canonical_tree", "fold_conv_bn", "tree_signature",
           "validate_preference"]
