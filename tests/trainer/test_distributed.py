"""Data-parallel training: N processes train what one process trains.

First-step gradients of every stage (two gloo processes, DistributedDataParallel
averaging, BatchNorm statistics across ranks) equal one process's to 1e-5
relative L2. End to end, real `torchrun -m trainer fit` jobs: every logged loss
(the global batch's) within 1e-4 relative, and each trained module within 1e-2
relative L2. Only float sums in another order differ, but Adam divides by the
gradient's magnitude, so a parameter whose gradient is ~0 moves by up to lr per
step in a direction rounding decides, and each stage starts from the last
(measured on the tiny config: losses within 1.4e-5, modules within 2.3e-3).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from trainer import train as train_module
from trainer.config import load_config
from trainer.distributed import Dist, Share
from trainer.train import Fit
from trainer.train import train_stage as real_train_stage

STAGES = ("pretrain", "single", "edge", "weight", "phn_bn")


def torchrun(out: Path, *overrides: str, env_tag: str = "", config: str = "tiny") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "trainer", "fit", "--config", config, "--out", str(out)]
    for item in overrides:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGEMTL_TEST_TAG": env_tag}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


def losses(run: Path) -> list[tuple[str, int, float]]:
    return [(r["stage"], r["step"], r["loss"]) for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())]


def assert_same_training(a: Path, b: Path, loss_rel: float = 1e-4, weight_rel: float = 1e-2) -> None:
    la = {(s, k): v for s, k, v in losses(a)}
    lb = {(s, k): v for s, k, v in losses(b)}
    assert la.keys() == lb.keys()
    for key, v in la.items():
        assert lb[key] == pytest.approx(v, rel=loss_rel), key
    sa = torch.load(a / "model.ckpt", weights_only=True)["states"]
    sb = torch.load(b / "model.ckpt", weights_only=True)["states"]
    for module, state in sa.items():
        floats = [n for n, t in state.items() if t.is_floating_point()]
        diff = sum(float(((state[n].double() - sb[module][n].double()) ** 2).sum()) for n in floats)
        norm = sum(float((state[n].double() ** 2).sum()) for n in floats)
        assert (diff / norm) ** 0.5 < weight_rel, module


def test_shares_partition_the_batch_and_weights_average_to_the_group_mean():
    for by_group in (True, False):
        parts = [Share(16, 4, rank, 2, by_group).parts() for rank in range(2)]
        positions = sorted(i for p in parts for _, sl, _ in p for i in range(sl.start, sl.stop))
        assert positions == list(range(16))
        # The ranks' mean of sum(weight * part mean) weighs each part by its share of
        # its group, over 4 groups: the single-process mean over groups.
        for p in parts:
            for _, sl, w in p:
                assert w / 2 == pytest.approx((sl.stop - sl.start) / 4 / 4)
    assert [g for g, _, _ in Share(16, 4, 1, 2, by_group=True).parts()] == [2, 3]
    assert [g for g, _, _ in Share(16, 4, 1, 2, by_group=False).parts()] == [0, 1, 2, 3]


class _Captured(Exception):
    pass


def _first_step(run, name, module, stage, step_fn, cfg, sparse=False):
    """train_stage for one step; then the gradients it applied, instead of saving the stage."""
    real_train_stage(run, name, module, dataclasses.replace(stage, steps=1), step_fn, cfg, sparse)
    raise _Captured({n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None})


def first_step_gradients(run: str, out: str) -> None:
    """Every stage's first-step gradients, each stage starting from `run`'s finished
    earlier stages (the same starting point for any number of processes)."""
    cfg = load_config("tiny")
    torch.manual_seed(cfg.seed)  # as fit() does: the same initial hypernets everywhere
    f = Fit(cfg, run, Dist.from_env())
    done, grads = f.run.done, {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "train_stage", _first_step)
        for target in STAGES:
            mp.setattr(f.run, "done", lambda name, target=target: None if name == target else done(name))
            for name in ("pretrain", "single", "scaling", "affinity", "edge", "weight", "phn_bn"):
                try:
                    getattr(f, f"stage_{name}")()
                except _Captured as grad:
                    grads[target] = grad.args[0]
                    break
    if f.dist.main:
        torch.save(grads, out)
    f.dist.close()


def _worker(rank: int, world: int, port: int, run: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    first_step_gradients(run, out)


def test_every_stage_computes_the_single_process_gradient_on_two_processes(tmp_path, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    first_step_gradients(str(run), str(tmp_path / "one.pt"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(_worker, (2, port, str(run), str(tmp_path / "two.pt")), nprocs=2, start_method="spawn")
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert sorted(one) == sorted(STAGES)
    for stage in STAGES:
        assert one[stage].keys() == two[stage].keys(), stage
        diff = sum(float((one[stage][n] - two[stage][n]).double().pow(2).sum()) for n in one[stage])
        norm = sum(float(g.double().pow(2).sum()) for g in one[stage].values())
        assert norm > 0 and (diff / norm) ** 0.5 < 1e-5, (stage, (diff / norm) ** 0.5)


@pytest.mark.slow
def test_two_processes_train_what_one_process_trains(tmp_path, tiny_run):
    finish(torchrun(tmp_path / "ddp"))
    assert_same_training(tiny_run, tmp_path / "ddp")


@pytest.mark.slow
def test_the_width_family_trains_on_two_processes_as_on_one(tmp_path, tiny_slim_run):
    """The slim family's unit skeletons (meta modules) get cross-rank BatchNorm too."""
    finish(torchrun(tmp_path / "ddp", config="tiny-slim"))
    assert_same_training(tiny_slim_run, tmp_path / "ddp")


def _rank_pid(tag: str, rank: int) -> int | None:
    """The pid of the torchrun worker of `rank` in the job tagged `tag` (Linux /proc)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            env = proc.joinpath("environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"EDGEMTL_TEST_TAG={tag}".encode() in env and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker to kill through /proc")
def test_a_job_killed_in_a_distributed_stage_resumes_where_it_stopped(tmp_path):
    """SIGKILL of rank 1 mid-stage (torchrun then stops rank 0); the same command
    resumes from rank 0's last partial checkpoint and ends where an uninterrupted
    job ends (to float rounding: the same sums in the same order)."""
    long = ("train.single.steps=40", "train.checkpoint_every=4")
    out, tag = tmp_path / "ddp", uuid.uuid4().hex
    job = torchrun(out, *long, env_tag=tag)
    partial = out / "stages" / "single.partial.pt"
    deadline = time.time() + 120
    while not partial.exists() and job.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    pid = _rank_pid(tag, 1)
    assert partial.exists() and pid is not None, "the job ended before a partial checkpoint of the single stage"
    os.kill(pid, signal.SIGKILL)
    job.communicate(timeout=120)
    assert job.returncode != 0 and not (out / "model.ckpt").exists()
    finish(torchrun(out, *long))
    single = [k for s, k, _ in losses(out) if s == "single"]
    assert single.count(0) == 1  # resumed, not restarted
    finish(torchrun(tmp_path / "whole", *long))
    assert_same_training(out, tmp_path / "whole", loss_rel=1e-6, weight_rel=1e-6)
