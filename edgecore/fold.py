"""BatchNorm folding (docs/design.md section 5), in numpy: the one implementation.
The trainer's standalone sub-networks, the compiler's weight sets and the
runtime's exact mode (weights for preferences the compiled grid does not hold)
all fold through these functions."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from edgecore.tree import canonical_tree, head_prefix, node_key, node_prefix, parse_node_key, used_nodes


def fold_conv_bn(
    weight: np.ndarray,
    bias: np.ndarray | None,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    eps: float,
    dgamma: np.ndarray | None = None,
    dbeta: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Folds BN(conv(x)) with hypernet deltas into one conv: returns (W_f, b_f).

    gamma' = gamma + dgamma, beta' = beta + dbeta, s = gamma' / sqrt(var + eps),
    W_f = W * s[:, None, None, None], b_f = (b - mu) * s + beta'.
    Computed in float64 and returned in the weight's dtype, so folding adds no
    rounding beyond the final cast.
    """
    out_ch = weight.shape[0]
    for name, arr in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)):
        if np.shape(arr) != (out_ch,):
            raise ValueError(f"fold_conv_bn: {name} must have shape ({out_ch},), found {np.shape(arr)}")
    g = np.asarray(gamma, np.float64) + (0.0 if dgamma is None else np.asarray(dgamma, np.float64))
    b_bn = np.asarray(beta, np.float64) + (0.0 if dbeta is None else np.asarray(dbeta, np.float64))
    scale = g / np.sqrt(np.asarray(var, np.float64) + eps)
    w_f = np.asarray(weight, np.float64) * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    b0 = np.zeros(out_ch) if bias is None else np.asarray(bias, np.float64)
    b_f = (b0 - np.asarray(mean, np.float64)) * scale + b_bn
    return w_f.astype(weight.dtype), b_f.astype(weight.dtype)


def fold_params(
    params: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str, float]],
    deltas: Mapping[str, np.ndarray] | None = None,
    prefix: str = "",
) -> dict[str, np.ndarray]:
    """Folds every (conv, bn, eps) pair of one module given by name.

    `params` holds the module's parameters and its BNs' running_mean/var (the
    compiler's `node_arrays`); `deltas` maps '<bn>.weight|bias' to hypernet
    deltas. Returns the folded module's parameters, named as
    `trainer.models.subnet.fold_module` names them (the conv keeps its name and gains
    a bias; the BN disappears), each prefixed with `prefix`.
    """
    deltas = deltas or {}
    out, consumed = {}, set()
    for conv, bn, eps in pairs:
        w, b = fold_conv_bn(
            params[f"{conv}.weight"],
            params.get(f"{conv}.bias"),
            params[f"{bn}.weight"],
            params[f"{bn}.bias"],
            params[f"{bn}.running_mean"],
            params[f"{bn}.running_var"],
            eps,
            deltas.get(f"{bn}.weight"),
            deltas.get(f"{bn}.bias"),
        )
        out[f"{prefix}{conv}.weight"], out[f"{prefix}{conv}.bias"] = w, b
        consumed |= {f"{conv}.weight", f"{conv}.bias"} | {
            f"{bn}.{k}" for k in ("weight", "bias", "running_mean", "running_var")
        }
    out.update({f"{prefix}{k}": v for k, v in params.items() if k not in consumed})
    return out


NodeFold = tuple[Mapping[str, np.ndarray], Sequence[tuple[str, str, float]]]  # (arrays, pairs) of one module


def fold_tree(
    nodes: Mapping[tuple[int, int], NodeFold],
    heads: Sequence[NodeFold],
    tree,
    deltas: Mapping[tuple[int, int], Mapping[str, np.ndarray]] | None = None,
) -> dict[str, np.ndarray]:
    """Folded weights of a tree's used nodes (+ BN deltas per node) and the heads,
    named as the compiled graphs' initializers (`nodes.n<l>_<i>.<param>`,
    `heads.<j>.<param>`). The compiler and the runtime's exact mode both call this."""
    deltas = deltas or {}
    used = used_nodes(canonical_tree(tree))
    out: dict[str, np.ndarray] = {}
    for l, row in enumerate(used):
        for i, u in enumerate(row):
            if u:
                arrays, pairs = nodes[(l, i)]
                out.update(fold_params(arrays, pairs, deltas.get((l, i)), prefix=node_prefix(l, i)))
    for j, (arrays, pairs) in enumerate(heads):
        out.update(fold_params(arrays, pairs, prefix=head_prefix(j)))
    return out


def tree_adaptation(tree, deltas: Mapping[tuple[int, int], Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """A tree's adaptation as one flat array dict (a bundle's `deltas/<id>.npz`): the BN
    deltas of its used nodes only, float32, keyed `n<l>_<i>/<bn>.weight|bias`."""
    used = used_nodes(canonical_tree(tree))
    return {
        f"{node_key(l, i)}/{name}": np.asarray(arr, np.float32)
        for (l, i), d in deltas.items()
        if l < len(used) and i < len(used[l]) and used[l][i]
        for name, arr in d.items()
    }


class TreeAnchor:
    """The anchor net in numpy, as a bundle stores it once for every grid point:
    each node's and head's raw arrays (`arrays`, keyed `<module>/<param>`, module
    `n<l>_<i>` or `heads.<j>`) and its (conv, bn, eps) pairs (`pairs`, by
    module). `weights(tree, adaptation)` folds any tree with its BN deltas: what
    the compiler's parity check, the runtime's loads and exact mode all run."""

    def __init__(self, arrays: Mapping[str, np.ndarray], pairs: Mapping[str, Sequence]):
        self.nodes: dict[tuple[int, int], NodeFold] = {}
        heads: dict[int, NodeFold] = {}
        by_module: dict[str, dict[str, np.ndarray]] = {}
        for key, arr in arrays.items():
            module, _, name = key.rpartition("/")
            by_module.setdefault(module, {})[name] = arr
        for module, module_pairs in pairs.items():
            fold = (by_module.get(module, {}), [_pair(p, module) for p in module_pairs])
            if module.startswith("heads."):
                heads[int(module.removeprefix("heads."))] = fold
            else:
                self.nodes[parse_node_key(module)] = fold
        if sorted(heads) != list(range(len(heads))):
            raise ValueError(f"heads must be numbered 0..{len(heads) - 1}, found {sorted(heads)}")
        self.heads = [heads[j] for j in range(len(heads))]

    def weights(self, tree, adaptation: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        deltas: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for key, arr in (adaptation or {}).items():
            module, _, name = key.rpartition("/")
            deltas.setdefault(parse_node_key(module), {})[name] = arr
        try:
            return fold_tree(self.nodes, self.heads, tree, deltas)
        except KeyError as exc:
            raise ValueError(f"the anchor lacks {exc} for this tree") from None


def _pair(p, module: str) -> tuple[str, str, float]:
    ok = isinstance(p, (list, tuple)) and len(p) == 3 and all(isinstance(s, str) for s in p[:2])
    if not ok or isinstance(p[2], bool) or not isinstance(p[2], (int, float)):
        raise ValueError(f"{module}: a fold pair is [conv, bn, eps], found {p!r}")
    return p[0], p[1], float(p[2])
