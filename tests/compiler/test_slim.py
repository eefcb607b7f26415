"""The compiler on the width-slimmable family: the same pipeline, bundle format and
cache as the tree family, through the family seam."""

import numpy as np

from edgecore.arrays import SUFFIX, load_arrays
from edgecore.widths import SlimAnchor
from runtime.manifest import load_manifest


def test_a_slim_bundle_holds_sliced_configurations_that_pass_parity(tiny_slim_bundle):
    bundle, report = tiny_slim_bundle
    m = load_manifest(bundle)
    assert m.family == "slim-width" and report.points == 21
    assert report.signatures == len(m.signatures) == len({e.signature for e in m.grid})
    assert all(err["rel"] <= 1e-4 for e in m.grid for err in e.parity.values())
    specs = [sig.tree for sig in m.signatures.values()]
    assert all(len(s) == 4 and all(w in (25, 50, 75, 100) for w in s) for s in specs)
    # c = 1 asks for the cheapest: its configurations are narrower than c = 0's
    by_c = {c: [m.signatures[e.signature].tree for e in m.grid if e.c == c] for c in {e.c for e in m.grid}}
    widest = max(by_c)
    assert max(sum(s) for s in by_c[widest]) <= max(sum(s) for s in by_c[min(by_c)])


def test_the_bundles_anchor_folds_every_configurations_weights(tiny_slim_bundle):
    bundle, _ = tiny_slim_bundle
    m = load_manifest(bundle)
    anchor = SlimAnchor(load_arrays(bundle / "anchor" / f"{m.anchor['id']}{SUFFIX}"), m.anchor["plan"])
    for sig in m.signatures.values():
        weights = anchor.weights(sig.tree)
        assert weights and all(np.isfinite(v).all() for v in weights.values())
