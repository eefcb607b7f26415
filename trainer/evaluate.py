"""`trainer eval`: the paper's Tables 1-4 on our data (section 4.1, appendix J).

For Single-Task, PHN-BN, ours without adaptation and ours, at c = 0 and 1:
- hypervolume (moocore) of the scaled loss vectors w_i L_i of `n_prefs`
  preferences drawn uniformly from the simplex, against [hv_ref] * N;
- uniformity mu_r = 1 - KL(Lhat || 1/N), Lhat_j = r_j L_j / sum_i r_i L_i,
  averaged over the same preferences;
- inference params and GFLOPs (torch FlopCounterMode, batch 1) of the used
  nodes plus heads, averaged over `n_cost_prefs` preferences;
- control params (hypernet sizes) and per-task metrics (mean over preferences).
Also the trees of one-hot preferences (which should be one trunk).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import moocore
import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from edgecore.fileio import atomic_write_text
from edgecore.tree import canonical_tree, identity_tree, path, streams_per_layer, used_nodes
from trainer.checkpoint import load_checkpoint
from trainer.config import EvalConfig, FitConfig
from trainer.cost import flops as count_flops
from trainer.cost import tree_cost
from trainer.data import get_tasks, open_split
from trainer.models import Models
from trainer.models.blocks import count_params
from trainer.models.heads import set_output_size
from trainer.models.hypernets import response, simplex_points
from trainer.recalibrate import tree_statistics_deltas, with_own_statistics

_QUIET = not sys.stderr.isatty()  # transient bars print blank lines into logs


def uniformity(losses: np.ndarray, r: np.ndarray) -> float:
    """1 - KL(Lhat || uniform), with Lhat_j = r_j L_j / sum_i r_i L_i (0 log 0 = 0)."""
    lhat = r * losses / np.sum(r * losses)
    n = len(r)
    nz = lhat > 0
    return float(1.0 - np.sum(lhat[nz] * np.log(lhat[nz] * n)))


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Volume dominated by `points` (minimisation) and bounded by `ref` (moocore)."""
    pts = np.atleast_2d(np.asarray(points, dtype=float))
    pts = pts[np.all(pts < ref, axis=1)]  # points outside the box add nothing
    return float(moocore.hypervolume(pts, ref=ref)) if len(pts) else 0.0


def controllability(prefs, losses, cs, costs) -> dict:
    """Our controllability measure, for any family (the ICCV 2023 follow-up reports one
    without its definition): the mean of
    - task control: Spearman correlation between r_i and -L_i (task i's scaled loss)
      over the preferences, averaged over tasks and budgets: 1 when every task's loss
      falls as its importance rises;
    - cost control: Spearman correlation between -c and the network's FLOPs over every
      (preference, c) pair: 1 when cost falls whenever c asks for cheaper.
    losses[k] is (P, N) at cs[k], costs[k] the P FLOPs. A constant is no control (0)."""
    prefs = np.asarray(prefs)
    t = float(np.mean([task_control(prefs, l) for l in losses]))  # equal-sized groups: the mean of all
    c_all = np.concatenate([np.full(len(f), -c) for c, f in zip(cs, costs)])
    cost = _spearman(c_all, np.concatenate([np.asarray(f, float) for f in costs]))
    return {"task": t, "cost": cost, "score": (t + cost) / 2}


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


class Evaluator:
    """Scores forward functions on one split and prices trees."""

    def __init__(self, cfg: FitConfig, models: Models, payload: dict, split: str):
        self.cfg, self.models = cfg, models
        self.tasks = get_tasks(cfg.data.tasks, cfg.data.dataset)
        self.n = len(self.tasks)
        self.w = np.array(payload["loss_weights"])
        self.data = open_split(cfg.data, split)
        for module in models.modules().values():  # outputs at the split's frame size
            set_output_size(module, self.data.hw)
        self.anchor = models.anchor
        self.full_params = count_params(self.anchor)
        self._flops: dict = {}

    @torch.no_grad()
    def score(self, forward) -> tuple[np.ndarray, list[float]]:
        """Scaled losses w_i L_i over the split and each task's metric."""
        sums, count = np.zeros(self.n), 0
        metrics = [t.metric() for t in self.tasks]
        for x, ys in self.data.batches(128):
            outs = forward(x)
            for i, (t, o, y) in enumerate(zip(self.tasks, outs, ys)):
                sums[i] += float(t.loss(o, y)) * len(x)
                metrics[i].update(o, y)
            count += len(x)
        return self.w * sums / count, [m.value() for m in metrics]

    def tree_cost(self, tree) -> tuple[int, float]:
        """(params, FLOPs) of the used nodes + heads for a batch-1 frame (cached per tree)."""
        key = canonical_tree(tree)
        if key not in self._flops:
            self._flops[key] = tree_cost(self.anchor, tree, self.data.hw)
        return self._flops[key]


def task_control(prefs, losses) -> float:
    """Spearman correlation between r_i and -L_i over the preferences, averaged over
    tasks: 1 when every task's loss falls as its importance rises, 0 for a method whose
    losses ignore r (a constant loss vector scores 0, not a perfect uniformity)."""
    prefs, losses = np.asarray(prefs), np.asarray(losses)
    return float(np.mean([_spearman(prefs[:, i], -losses[:, i]) for i in range(prefs.shape[1])]))


def _row(name, losses, metrics, prefs, ref, params, flops, control, with_unif=True) -> dict:
    return {
        "method": name,
        "hv": hypervolume(np.array(losses), ref),
        "uniformity": float(np.mean([uniformity(l, r) for l, r in zip(losses, prefs)])) if with_unif else None,
        "task_control": task_control(prefs, losses) if with_unif else None,
        "params": float(params),
        "gflops": float(flops) / 1e9,
        "control_params": control,
        "metrics": np.mean(np.array(metrics), axis=0).tolist(),
        "losses": np.array(losses).tolist(),
    }


def _ours_rows(ev: Evaluator, prefs: np.ndarray, ref, ecfg: EvalConfig) -> list[dict]:
    m = ev.models
    cost_prefs = simplex_points(ev.n, ecfg.n_cost_prefs, ecfg.seed + 1)
    rows, cache = [], {}
    for adapt in (False, True):
        control = count_params(m.edge) + (count_params(m.weight) if adapt else 0)
        for c in (0.0, 1.0):
            losses, metrics = [], []
            label = f"{'ours' if adapt else 'w/o adapt'} c={c:.0f}"
            for r in track(prefs, description=f"{label:>14}", transient=True, disable=_QUIET):
                rt = torch.tensor(r, dtype=torch.float32)
                tree = m.edge.tree(rt, c)
                if adapt:
                    deltas = m.adaptation(rt, c, tree)
                    lo, me = ev.score(lambda x: ev.anchor.forward_tree(x, tree, deltas))
                else:  # the unadapted score depends on the tree only
                    key = canonical_tree(tree)
                    if key not in cache:
                        cache[key] = ev.score(lambda x: ev.anchor.forward_tree(x, tree))
                    lo, me = cache[key]
                losses.append(lo)
                metrics.append(me)
            costs = np.array([ev.tree_cost(m.edge.tree(torch.tensor(r, dtype=torch.float32), c)) for r in cost_prefs])
            name = f"Ours{'' if adapt else ' w/o adaptation'}, c={c:.1f}"
            share = costs[:, 0] / ev.full_params
            rows.append(
                _row(name, losses, metrics, prefs, ref, costs[:, 0].mean(), costs[:, 1].mean(), control)
                | {
                    "c": c,
                    "adapted": adapt,
                    "param_share": float(share.mean()),
                    "share_range": [float(share.min()), float(share.max())],
                    # how many different sizes c can buy at this c over the simplex
                    "share_levels": len(np.unique(np.round(share, 6))),
                }
            )
    return rows


def _baseline_rows(ev: Evaluator, prefs: np.ndarray, ref, calib: torch.Tensor) -> list[dict]:
    ident = identity_tree(ev.anchor.n_layers, ev.n)
    lo, me = ev.score(lambda x: ev.anchor.forward_tree(x, ident))
    params, flops = ev.tree_cost(ident)
    single = _row("Single-Task", [lo], [me], prefs[:1], ref, params, flops, None, with_unif=False)
    phn, scored = ev.models.phn_bn, []
    for r in track(prefs, description=f"{'PHN-BN':>14}", transient=True, disable=_QUIET):
        rt = torch.tensor(r, dtype=torch.float32)
        # each preference's network with its own BatchNorm statistics (trainer.recalibrate)
        net = with_own_statistics(phn, lambda m, x, rt=rt: m(x, rt), calib)
        scored.append(ev.score(lambda x, net=net, rt=rt: net(x, rt)))
    net = torch.nn.Sequential(*phn.network_modules())
    p_params = count_params(net)
    p_flops = count_flops(lambda x: _phn_static(phn, x), ev.data.hw)
    phn_row = _row(
        "PHN-BN",
        [s[0] for s in scored],
        [s[1] for s in scored],
        prefs,
        ref,
        p_params,
        p_flops,
        count_params(phn.hypernet),
    )
    single["param_share"] = 1.0
    phn_row["param_share"] = p_params / ev.full_params
    return [single, phn_row]


def _phn_static(phn, x):
    """PHN-BN's inference network once its BN parameters are set (no hypernet)."""
    for module in phn.trunk:
        x = module(x)
    return [h(x) for h in phn.heads]


def fixed_tree_adaptation(ev: Evaluator, ecfg: EvalConfig) -> list[dict]:
    """Figure 7 with the tree held fixed: at c = 0 and 1, the tree that most of the
    simplex maps to, and up to n_prefs preferences that map to it (from 400 drawn
    uniformly). Unadapted, the tree's losses are one vector whatever r is; adapted, a
    task's loss should fall as its importance rises (task control within the tree) and
    the r-weighted loss sum_i r_i w_i L_i should be below the unadapted one (what the
    weight hypernet is trained to lower). Why: across trees the edge hypernet alone
    already moves losses with r, which hides a weight hypernet that does nothing."""
    m, out = ev.models, []
    pool = simplex_points(ev.n, 400, ecfg.seed + 2)
    for c in (0.0, 1.0):
        trees = [m.edge.tree(torch.tensor(r, dtype=torch.float32), c) for r in pool]
        keys = [canonical_tree(t) for t in trees]
        top = max(set(keys), key=keys.count)
        tree = trees[keys.index(top)]
        prefs = pool[[k == top for k in keys]][: ecfg.n_prefs]
        plain = ev.score(lambda x: ev.anchor.forward_tree(x, tree))[0]
        adapted = []
        for r in track(prefs, description=f"{'fixed tree':>14}", transient=True, disable=_QUIET):
            deltas = m.adaptation(torch.tensor(r, dtype=torch.float32), c, tree)
            adapted.append(ev.score(lambda x, d=deltas: ev.anchor.forward_tree(x, tree, d))[0])
        weighted = np.array([(r * a).sum() / (r * plain).sum() for r, a in zip(prefs, adapted)])
        out.append(
            {
                "c": c,
                "tree": [list(row) for row in top],
                "share_of_simplex": keys.count(top) / len(keys),
                "param_share": ev.tree_cost(tree)[0] / ev.full_params,
                "preferences": prefs.tolist(),
                "task_control": task_control(prefs, adapted) if len(prefs) > 2 else None,
                "weighted_loss_ratio": float(weighted.mean()),
                "adapted_better": float((weighted < 1).mean()),
                "unadapted_losses": plain.tolist(),
                "adapted_losses": np.array(adapted).tolist(),
            }
        )
    return out


RECALIBRATION_IMAGES = 256


def recalibration_images(cfg: FitConfig) -> torch.Tensor:
    """The first RECALIBRATION_IMAGES training images, as training sees them."""
    return open_split(cfg.data, "train", train=True).head(RECALIBRATION_IMAGES)[0]


def responses(models: Models) -> dict:
    """How much each hypernet's output moves with r and c (trainer.models.hypernets.response)."""
    n = models.anchor.n_tasks
    return {
        "edge hypernet": response(models.edge, n, uses_cost=True),
        "weight hypernet": response(models.adaptation, n, uses_cost=True),
        "PHN-BN hypernet": response(models.phn_bn.hypernet, n, uses_cost=False),
    }


def donor_tree(n_layers: int, n_tasks: int, task: int, donor: int, depth: int):
    """The anchor, except that task `task` runs stream `donor`'s nodes for node
    layers 0..depth-1 and its own from layer `depth` on (depth = 1..L)."""
    tree = [list(row) for row in identity_tree(n_layers, n_tasks)]
    tree[depth - 1][task] = donor
    return tuple(tuple(row) for row in tree)


def sharing_costs(ev: Evaluator, recalibrate_on: torch.Tensor | None = None) -> list[list[list[float]]]:
    """cost[task][donor][depth - 1] = the task's loss when it shares the donor
    stream's first `depth` node layers, over its own-stream loss (unadapted anchor;
    1.0 on the diagonal). What a cross-stream edge costs, before any adaptation:
    the trade-off the edge hypernet has to control. With `recalibrate_on` (images),
    each donor tree runs with its own BatchNorm statistics measured on them
    (trainer.recalibrate); the denominator stays the deployed anchor's own stream."""
    L, n = ev.anchor.n_layers, ev.n
    own = ev.score(lambda x: ev.anchor.forward_tree(x, identity_tree(L, n)))[0]
    out = [[[1.0] * L for _ in range(n)] for _ in range(n)]
    for task in range(n):
        for donor in (d for d in range(n) if d != task):
            for depth in range(1, L + 1):
                tree = donor_tree(L, n, task, donor, depth)
                deltas = None if recalibrate_on is None else tree_statistics_deltas(ev.anchor, tree, recalibrate_on)
                out[task][donor][depth - 1] = float(
                    ev.score(lambda x, d=deltas: ev.anchor.forward_tree(x, tree, d))[0][task] / own[task]
                )
    return out


def one_hot_trees(ev: Evaluator) -> list[dict]:
    """Tree, streams per layer and param share for every one-hot preference."""
    out = []
    for k, task in enumerate(ev.tasks):
        for c in (0.0, 1.0):
            tree = ev.models.edge.tree(torch.eye(ev.n)[k], c)
            params, flops = ev.tree_cost(tree)
            used = used_nodes(tree)
            spl = streams_per_layer(tree)
            out.append(
                {
                    "task": task.name,
                    "c": c,
                    "tree": [list(r) for r in canonical_tree(tree)],
                    "streams_per_layer": spl,
                    # the preferred task runs its own stream all the way (the best tree for it)
                    "own_stream": path(tree, k) == [k] * (len(tree) + 1),
                    # one node per layer below the last: the cheapest tree there is
                    "minimal": all(v == 1 for v in spl[:-1]),
                    "own_trunk": all(row == [i == k for i in range(ev.n)] for row in used[:-1]),
                    "param_share": params / ev.full_params,
                    "gflops": flops / 1e9,
                }
            )
    return out


def evaluate(run_dir: str | Path, ecfg: EvalConfig | None = None, console: Console | None = None) -> dict:
    """Evaluates RUN_DIR/model.ckpt, writes RUN_DIR/eval.json, prints the table."""
    cfg, models, payload = load_checkpoint(Path(run_dir) / "model.ckpt")
    ecfg = ecfg or cfg.eval
    ev = Evaluator(cfg, models, payload, ecfg.split)
    ref = np.full(ev.n, ecfg.hv_ref)
    prefs = simplex_points(ev.n, ecfg.n_prefs, ecfg.seed)
    calib = recalibration_images(cfg)
    rows = _baseline_rows(ev, prefs, ref, calib) + _ours_rows(ev, prefs, ref, ecfg)
    one_hot = one_hot_trees(ev)
    fixed = fixed_tree_adaptation(ev, ecfg)
    resp = responses(models)
    result = {
        "run": str(run_dir),
        "split": ecfg.split,
        "hv_ref": ref.tolist(),
        "tasks": [t.describe() for t in ev.tasks],
        "full_anchor_params": ev.full_params,
        "preferences": prefs.tolist(),
        "rows": rows,
        "one_hot": one_hot,
        "sharing_cost": sharing_costs(ev),
        "sharing_cost_recalibrated": sharing_costs(ev, calib),
        "fixed_tree": fixed,
        "response": resp,
        "goals": goals(rows, one_hot, fixed, resp),
    }
    atomic_write_text(Path(run_dir) / "eval.json", json.dumps(result, indent=1))
    atomic_write_text(Path(run_dir) / "eval.md", markdown_tables(result))
    print_tables(result, console or _console())
    return result


def goals(rows: list[dict], one_hot: list[dict], fixed: list[dict], resp: dict) -> list[dict]:
    """Issue 23's goals, measured from the tables (none of them tunes what it measures)."""
    by = {r["method"]: r for r in rows}
    single, phn = by["Single-Task"], by["PHN-BN"]
    ours0, ours1 = by["Ours, c=0.0"], by["Ours, c=1.0"]
    unif = min(ours0["uniformity"], ours1["uniformity"])  # both c = 0 and c = 1 count
    ctrl = min(ours0["task_control"], ours1["task_control"])
    hv_ratio = ours0["hv"] / single["hv"] if single["hv"] > 0 else float("nan")
    p_ratio = ours1["params"] / ours0["params"]
    lo, hi = ours0["share_range"]
    own = [o["task"] for o in one_hot if o["c"] == 0 and o["own_stream"]]
    minimal = [o["task"] for o in one_hot if o["c"] == 1 and o["minimal"]]
    n_tasks = len({o["task"] for o in one_hot})
    w, p = resp["weight hypernet"], resp["PHN-BN hypernet"]
    pays = [f["weighted_loss_ratio"] for f in fixed]
    return [
        {
            "goal": "weight hypernet and PHN-BN: output spread over preferences >= 1%; weight(c=1) != weight(c=0)",
            "measured": f"weight {w['spread_r']:.2%} (c: {w['spread_c']:.2%}), PHN-BN {p['spread_r']:.2%}",
            "met": bool(w["spread_r"] >= 0.01 and p["spread_r"] >= 0.01 and w["spread_c"] > 0),
        },
        {
            "goal": "task control: PHN-BN >= 0.3, ours >= 0.5 (c = 0 and 1)",
            "measured": f"PHN-BN {phn['task_control']:.2f}, ours c=0 {ours0['task_control']:.2f}, "
            f"c=1 {ours1['task_control']:.2f}",
            "met": bool(phn["task_control"] >= 0.3 and ctrl >= 0.5),
        },
        {
            "goal": "HV(ours, c=0) >= 1.01 x HV(Single-Task) and > HV(PHN-BN)",
            "measured": f"{ours0['hv']:.4f} vs {single['hv']:.4f} ({hv_ratio:.3f}x) and {phn['hv']:.4f}",
            "met": bool(ours0["hv"] >= 1.01 * single["hv"] and ours0["hv"] > phn["hv"]),
        },
        {
            "goal": "uniformity(ours) >= uniformity(PHN-BN) + 0.03",
            "measured": f"c=0 {ours0['uniformity']:.3f}, c=1 {ours1['uniformity']:.3f} vs {phn['uniformity']:.3f}",
            "met": bool(unif >= phn["uniformity"] + 0.03),
        },
        {"goal": "params(c=1) <= 0.85 x params(c=0)", "measured": f"{p_ratio:.3f} x", "met": bool(p_ratio <= 0.85)},
        {
            "goal": "param share at c=0: >= 5 distinct levels over the simplex, spanning 0.55-0.95",
            "measured": f"{ours0['share_levels']} levels, {lo:.3f}-{hi:.3f}",
            "met": bool(ours0["share_levels"] >= 5 and lo <= 0.55 and hi >= 0.95),
        },
        {
            "goal": "one-hot: the preferred task on its own stream at c=0 (every task)",
            "measured": f"{len(own)} of {n_tasks}",
            "met": len(own) == n_tasks,
        },
        {
            "goal": "one-hot: the minimal tree at c=1 (at least N-1 tasks)",
            "measured": f"{len(minimal)} of {n_tasks}",
            "met": len(minimal) >= n_tasks - 1,
        },
        {
            "goal": "adaptation pays at a fixed tree: r-weighted loss adapted / unadapted < 1 (c = 0 and 1)",
            "measured": ", ".join(f"c={f['c']:.0f} {f['weighted_loss_ratio']:.3f}" for f in fixed),
            "met": bool(max(pays) < 1),
        },
    ]


def _summary_cells(row: dict) -> list[str]:
    """Method, HV, uniformity, task control, params, share, GFLOPs and control params of one row."""
    unif = "-" if row["uniformity"] is None else f"{row['uniformity']:.3f}"
    tctl = "-" if row.get("task_control") is None else f"{row['task_control']:.2f}"
    ctrl = "-" if row["control_params"] is None else _fmt_params(row["control_params"])
    return [row["method"], f"{row['hv']:.4f}", unif, tctl, _fmt_params(row["params"]), f"{row['param_share']:.3f}",
            f"{row['gflops']:.4f}", ctrl]  # fmt: skip


def markdown_tables(result: dict) -> str:
    """The eval tables as GitHub Markdown (RUN_DIR/eval.md)."""
    ref = ",".join(f"{v:g}" for v in result["hv_ref"])
    tasks = [f"{t['name']} {t['metric']} {'↑' if t['higher_is_better'] else '↓'}" for t in result["tasks"]]
    head = [
        "Method",
        f"HV ↑ [{ref}]",
        "Unif. ↑",
        "Task ctrl ↑",
        "Inf. params ↓",
        "share of anchor",
        "GFLOPs ↓",
        "Control params",
        *tasks,
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        cells = [*_summary_cells(row), *[f"{v:.3f}" for v in row["metrics"]]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| one-hot task | c | used nodes per layer (stems .. last block) | own stream | minimal | param share |",
        "|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(_one_hot_cells(o)) + " |" for o in result["one_hot"]]
    lines += ["", "| hypernet | spread over r | c=1 vs c=0 | entries that vary |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in _response_rows(result)]
    lines += ["", "Adaptation at a fixed tree (the tree most of the simplex maps to at that c)", ""]
    lines += ["| c | tree share of simplex | param share | prefs | task ctrl (adapted) | "
              "r-weighted loss adapted / unadapted | adapted better |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += ["| " + " | ".join(cells) + " |" for cells in _fixed_rows(result)]
    lines += ["", *sharing_markdown(result)]
    lines += ["", "| goal | measured | met |", "|---|---|---|"]
    lines += [f"| {g['goal']} | {g['measured']} | {'yes' if g['met'] else 'no'} |" for g in result["goals"]]
    return "\n".join(lines) + "\n"


def _one_hot_cells(o: dict) -> list[str]:
    yes = lambda v: "yes" if v else "no"  # noqa: E731
    spl = " ".join(map(str, o["streams_per_layer"]))
    return [o["task"], f"{o['c']:.0f}", spl, yes(o["own_stream"]), yes(o["minimal"]), f"{o['param_share']:.3f}"]


def _response_rows(result: dict):
    for name, r in result["response"].items():
        c = "-" if r["spread_c"] is None else f"{r['spread_c']:.2%}"
        yield [name, f"{r['spread_r']:.2%}", c, f"{r['varying']:.0%}"]


def _fixed_rows(result: dict):
    for f in result["fixed_tree"]:
        ctrl = "-" if f["task_control"] is None else f"{f['task_control']:.2f}"
        shares = [f"{f['c']:.0f}", f"{f['share_of_simplex']:.2f}", f"{f['param_share']:.3f}"]
        shares.append(str(len(f["preferences"])))
        yield [*shares, ctrl, f"{f['weighted_loss_ratio']:.3f}", f"{f['adapted_better']:.0%}"]


def _sharing_rows(result: dict, key: str = "sharing_cost"):
    """(task, donor, [ratio per depth]) for every task and every other stream."""
    names = [t["name"] for t in result["tasks"]]
    for i, per_donor in enumerate(result[key]):
        for d, ratios in enumerate(per_donor):
            if d != i:
                yield names[i], names[d], ratios


def sharing_markdown(result: dict) -> list[str]:
    depth = len(result["sharing_cost"][0][0])
    head = ["task", "donor stream", *[f"k={k}" for k in range(1, depth + 1)]]
    lines = []
    for key, stats in (("sharing_cost", "the anchor's statistics"),
                       ("sharing_cost_recalibrated", "BatchNorm statistics recalibrated per tree")):  # fmt: skip
        if key not in result:
            continue
        lines += [
            "Sharing cost: task loss when the task runs the donor stream's first k node layers, "
            f"over its own-stream loss (unadapted anchor; donor tree with {stats})",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        lines += [
            f"| {t} | {d} | " + " | ".join(f"{v:.3f}" for v in ratios) + " |"
            for t, d, ratios in _sharing_rows(result, key)
        ]
        lines.append("")
    return lines[:-1]


def _console() -> Console:
    # Logs and CI are not terminals; rich would wrap the tables at 80 columns.
    console = Console()
    return console if console.is_terminal else Console(width=120)


def _fmt_params(p: float) -> str:
    return f"{p / 1e6:.3f}M" if p >= 1e5 else f"{p / 1e3:.1f}K"


def print_tables(result: dict, console: Console) -> None:
    ref = ",".join(f"{v:g}" for v in result["hv_ref"])
    table = Table(title=f"Evaluation on {result['split']} (scaled losses w_i L_i)")
    for col in ["Method", f"HV ↑ [{ref}]", "Unif. ↑", "Task ctrl ↑", "Inf. params ↓", "share", "GFLOPs ↓", "Control"]:
        table.add_column(col, justify="right" if col != "Method" else "left")
    metrics = Table(title="Per-task metrics (mean over the preferences)")
    metrics.add_column("Method")
    for t in result["tasks"]:
        metrics.add_column(f"{t['name']} {t['metric']} {'↑' if t['higher_is_better'] else '↓'}", justify="right")
    for row in result["rows"]:
        table.add_row(*_summary_cells(row))
        metrics.add_row(row["method"], *[f"{v:.3f}" for v in row["metrics"]])
    trees = Table(title="One-hot preferences: used nodes per layer (stems .. last block)")
    for col in ("task", "c", "streams per layer", "own stream", "minimal", "param share"):
        trees.add_column(col)
    for o in result["one_hot"]:
        trees.add_row(*_one_hot_cells(o))
    resp = Table(title="Hypernet response (relative output spread over 64 + N probe preferences)")
    for col in ("hypernet", "spread over r", "c=1 vs c=0", "entries that vary"):
        resp.add_column(col)
    for cells in _response_rows(result):
        resp.add_row(*cells)
    fixed = Table(title="Adaptation at a fixed tree")
    for col in ("c", "tree's share", "params", "prefs", "task ctrl", "r-weighted loss ad./unad.", "ad. better"):
        fixed.add_column(col)
    for cells in _fixed_rows(result):
        fixed.add_row(*cells)
    goal_table = Table(title="Goals")
    for col in ("goal", "measured", "met"):
        goal_table.add_column(col)
    for g in result["goals"]:
        goal_table.add_row(g["goal"], g["measured"], "yes" if g["met"] else "no")
    depth = len(result["sharing_cost"][0][0])
    sharing = Table(
        title="Sharing cost: task loss on the donor's first k node layers / own-stream loss "
        "(anchor statistics -> per-tree statistics)"
    )
    for col in ("task", "donor", *[f"k={k}" for k in range(1, depth + 1)]):
        sharing.add_column(col)
    recal = _sharing_rows(
        result, "sharing_cost_recalibrated" if "sharing_cost_recalibrated" in result else "sharing_cost"
    )
    for (t, d, ratios), (_, _, recal_ratios) in zip(_sharing_rows(result), recal):
        sharing.add_row(t, d, *[f"{v:.2f} -> {w:.2f}" for v, w in zip(ratios, recal_ratios)])
    for t in (table, metrics, trees, resp, fixed, sharing, goal_table):
        console.print(t)
