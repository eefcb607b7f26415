"""The family comparison's pieces on the tiny runs of both families."""

import numpy as np

from benchmarks import families
from trainer.evaluate import simplex_points


def test_both_families_are_scored_compiled_and_swept_by_budget(tiny_run, tiny_slim_run, tmp_path):
    prefs = simplex_points(3, 3, 0)
    res = {"machine": {"cpu": "cpu", "cores": 2}, "hv_ref": 2.0, "families": {}}
    grid = {"lattice": {"r_step": 0.5, "c": [0.0, 1.0]}}
    for name, run, score in (
        ("dymu-tree", tiny_run, families.tree_scores),
        ("slim-width", tiny_slim_run, families.slim_scores),
    ):
        scores = score(str(run), prefs)
        assert set(scores["by_c"]) == set(families.BUDGETS) and all(len(v) == 3 for v in scores["by_c"].values())
        rows, control = families.table_rows(scores, prefs, 2.0)
        assert -1 <= control["score"] <= 1 and all(r["gflops"] > 0 for r in rows)
        bundle, latency = families.compile_and_calibrate(str(run), tmp_path, name, grid, repeats=2)
        sweep = families.budget_sweep(bundle, n=3, calls=2)
        assert all(b["signature"] in latency and b["ms"] > 0 for b in sweep)
        assert all(b["calibrated_ms"] <= b["budget_ms"] + 1e-9 for b in sweep)  # the choice fits its calibration
        for row in rows:
            row["latency_ms"] = float(np.mean(list(latency.values())))
        res["families"][name] = {"rows": rows, "controllability": control, "latency_range_ms": [1.0, 2.0],
                                 "flops_range_g": [0.1, 0.2], "budget_sweep": sweep}  # fmt: skip
    slim_flops = [
        p["flops"] for c in families.BUDGETS for p in families.slim_scores(str(tiny_slim_run), prefs)["by_c"][c]
    ]
    assert max(slim_flops) > min(slim_flops)  # the budget moves the width family's cost
    md = families.markdown(res)
    assert "| slim-width | 0.00 |" in md and "| dymu-tree |" in md
    families.plot(res, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0
