"""The edge-stage benchmark on a copy of the tiny run: every variant retrains only the
edge hypernet, in its own folder beside the run, and is scored from the path table."""

import json
import shutil

import pytest

from benchmarks import edge_stage


@pytest.mark.slow
def test_variants_retrain_the_edge_stage_and_score_its_trees(tiny_run, tmp_path):
    base = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_run, base)
    before = (base / "stages" / "edge.pt").read_bytes()
    res = edge_stage.main(str(base), quick=True, out=tmp_path / "results")
    assert list(res["variants"]) == list(edge_stage.VARIANTS) and res["tasks"] == 3
    for name, v in res["variants"].items():
        folder = base.parent / "tiny-edge-quick" / name.replace(" ", "-").replace(",", "")
        assert (folder / "stages" / "edge.pt").is_file()
        assert not (folder / "stages" / "weight.pt").exists()  # only the edge stage ran
        for c in edge_stage.C_GRID:
            row = v[f"c={c}"]
            assert 0 < row["share_mean"] <= 1 and row["rel_loss"] > 0 and row["trees"] >= 1
        assert 0 <= v["own_stream_c0"] <= 3 and 0 <= v["minimal_c1"] <= 3
    former = base.parent / "tiny-edge-quick" / "former-conditioning" / "config.yaml"
    assert "lambda_inactive: 0.1" in former.read_text()
    assert (base / "stages" / "edge.pt").read_bytes() == before  # the base run is never touched
    assert json.loads(json.dumps(res))
    assert "| former conditioning |" in (tmp_path / "results" / "edge_stage.md").read_text()


def test_a_run_without_a_path_table_is_refused(tmp_path, capsys):
    (tmp_path / "stages").mkdir()
    with pytest.raises(SystemExit) as exc:
        edge_stage.main(str(tmp_path), out=tmp_path / "results")
    assert exc.value.code == 2 and "paths" in capsys.readouterr().err
