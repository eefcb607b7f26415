"""A bundle's weights (format 2 on): the anchor stored once, per grid point only its
adaptation, folded into a sub-network's weight set when it is loaded.

    anchor/<id>.safetensors    every node's and head's raw arrays (BN unfolded), shared by all points
    deltas/<id>.safetensors    one point's adaptation: the BN deltas of its tree's used nodes (KBs)

Both are content-addressed (`edgecore.arrays`): a file whose content does not
hash to its name is rejected. Folding runs in numpy through the family's
`anchor(...).weights(spec, adaptation)`, the one implementation the compiler's
parity check also uses, so what was verified at build time is what runs.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Mapping

import numpy as np

from edgecore.arrays import SUFFIX, load_arrays
from edgecore.family import get_family
from edgecore.paths import confine
from runtime.errors import EdgeRuntimeError

ANCHOR_DIR, DELTAS_DIR = "anchor", "deltas"


class WeightStore:
    """Folds grid points' weights from a bundle; the anchor is read (and verified) once."""

    def __init__(self, bundle: str | Path, manifest):
        self.bundle, self.manifest = Path(bundle), manifest
        self._anchor = None
        self._lock = threading.Lock()  # background loads and the caller may both ask first

    def anchor(self):
        with self._lock:
            if self._anchor is None:
                ref = self.manifest.anchor
                arrays = self._read(f"{ANCHOR_DIR}/{ref['id']}{SUFFIX}", "anchor")
                try:
                    self._anchor = get_family(self.manifest.family).anchor(arrays, ref["plan"])
                except (ValueError, TypeError) as exc:
                    raise EdgeRuntimeError(f"bundle anchor plan is malformed: {exc}") from None
            return self._anchor

    def adaptation(self, adaptation_id: str) -> dict[str, np.ndarray]:
        return self._read(f"{DELTAS_DIR}/{adaptation_id}{SUFFIX}", "adaptation")

    def weights(self, spec, adaptation: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The folded weight set of sub-network `spec` with `adaptation`, by initializer name."""
        try:
            return self.anchor().weights(spec, adaptation)
        except (ValueError, TypeError) as exc:
            raise EdgeRuntimeError(f"bundle weights do not fit signature spec {spec}: {exc}") from None

    def entry_weights(self, entry, adaptation: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The folded weight set of grid entry `entry`, with its stored adaptation or, for
        an exact-mode entry, the given one."""
        if adaptation is None:
            adaptation = self.adaptation(entry.adaptation)
        return self.weights(self.manifest.signatures[entry.signature].tree, adaptation)

    def _read(self, rel: str, what: str) -> dict[str, np.ndarray]:
        """A weight file of the bundle; every array float32, as the format says and the C++
        runtime requires (folding would otherwise convert other dtypes silently)."""
        arrays = load_arrays(confine(self.bundle, rel, what, EdgeRuntimeError), error=EdgeRuntimeError)
        for name, a in arrays.items():
            if a.dtype != np.float32:
                raise EdgeRuntimeError(f"bundle {what} array '{name}': expected float32, found {a.dtype}")
        return arrays


__all__ = ["ANCHOR_DIR", "DELTAS_DIR", "WeightStore"]
