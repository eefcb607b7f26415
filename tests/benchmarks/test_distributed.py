"""The data-parallel benchmark: its launch commands and its report."""

from pathlib import Path

from benchmarks import distributed


def test_commands_launch_torchrun_only_for_more_than_one_process():
    one = distributed.command("scenes3", Path("o"), 1, 2, 5)
    two = distributed.command("scenes3", Path("o"), 2, 1, 5, sync_bn=False)
    assert "torch.distributed.run" not in one and "threads=2" in one and "train.sync_batchnorm=false" in two
    assert two[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"] and "threads=1" in two
    assert all(f"train.{s}.steps=5" in two for s in distributed.STAGES)


def test_report_gives_speed_ups_against_one_process_on_every_core(tmp_path):
    rows = [
        {"mode": m, "wall_s": 10.0 * (k + 1), "stage_s": dict.fromkeys(distributed.STAGES, 2.0 * (k + 1))}
        for k, m in enumerate(distributed.MODES)
    ]
    res = {"machine": {"cpu": "cpu", "cores": 2}, "config": "scenes3", "steps": 5, "rows": rows}
    md = distributed.markdown(res)
    assert "| 2 processes x 1 thread (torchrun) | 6.0 (0.33x)" in md and "10.0 (1.00x)" in md
    distributed.plot(res, tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 0
