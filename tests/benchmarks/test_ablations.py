"""The ablation benchmark on a copy of the tiny run: variants reuse the frozen
stages and retrain only the hypernets; results are one row per variant."""

import json
import shutil

import pytest

pytest.importorskip("matplotlib")

from benchmarks import ablations  # noqa: E402


@pytest.mark.slow
def test_variants_reuse_frozen_stages_and_score_every_c(tiny_run, tmp_path, monkeypatch):
    base = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_run, base)
    monkeypatch.setattr(ablations, "ABLATIONS", {"ours": [], "no inactive loss": ["method.lambda_inactive=0.0"]})
    monkeypatch.setattr(ablations, "TAUS", (0.5,))
    res = ablations.main(str(base), quick=True, out=tmp_path / "results")
    assert list(res["variants"]) == ["ours", "no inactive loss", "tau=0.5"]
    for v in res["variants"].values():
        assert v["c"] == list(ablations.C_GRID) and len(v["hv"]) == len(ablations.C_GRID)
        assert all(0 < s <= 1 for s in v["param_share"]) and all(h >= 0 for h in v["hv"])
    variant = base.parent / "tiny-ablations-quick" / "no-inactive-loss"
    assert json.loads(json.dumps(res))  # plain JSON
    # The frozen stages are the base run's (hard links), the hypernets are retrained.
    for stage in ("pretrain", "single", "scaling", "affinity", "phn_bn"):
        assert (variant / "stages" / f"{stage}.pt").stat().st_ino == (base / "stages" / f"{stage}.pt").stat().st_ino
    assert (variant / "stages" / "edge.pt").stat().st_ino != (base / "stages" / "edge.pt").stat().st_ino
    assert (
        "method:\n" in (variant / "config.yaml").read_text()
        and "lambda_inactive: 0.0" in (variant / "config.yaml").read_text()
    )
    md = (tmp_path / "results" / "ablations.md").read_text()
    assert "| no inactive loss |" in md and (tmp_path / "results" / "fig8_tau_sweep.png").is_file()
