"""`trainer` console script: thin argparse front end over fit() and evaluate()."""

from __future__ import annotations

import argparse
import os
import sys

from edgecore.cli import run_main
from trainer.errors import TrainerError

EPILOG = """examples:
  trainer fit --config scenes3 --out runs/scenes3          # shipped config by name
  trainer fit --config my.yaml --out runs/x --set train.edge.steps=2000
  trainer eval --run runs/scenes3                          # writes runs/scenes3/eval.json
  trainer fit --config nyud-resnet34 --set data.root=/data/NYUD_MT --out runs/nyud
  torchrun --nproc-per-node 2 -m trainer fit --config scenes3 --out runs/ddp   # data parallel

Ctrl-C during fit keeps a partial checkpoint: rerun the same command to resume."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trainer",
        description="Train and evaluate controllable dynamic multi-task networks (anchor net + edge/weight hypernets).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="run every training stage and write RUN_DIR/model.ckpt")
    f.add_argument("--config", required=True, help=f"shipped config name ({', '.join(_shipped())}) or a YAML file")
    f.add_argument("--out", required=True, help="run directory (created; reused to resume)")
    f.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. train.edge.steps=500 (repeatable)",
    )
    e = sub.add_parser("eval", help="evaluate a run: writes RUN_DIR/eval.json and prints the tables")
    e.add_argument("--run", required=True, help="run directory holding model.ckpt")
    e.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an eval setting, e.g. n_prefs=50 or split=val (repeatable)",
    )
    return p


def _shipped() -> list[str]:
    from trainer.config import CONFIG_DIR

    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _eval_config(run: str, overrides: list[str]):
    import yaml

    from trainer.checkpoint import read_checkpoint
    from trainer.config import EvalConfig, from_dict, to_dict

    base = to_dict(from_dict(EvalConfig, read_checkpoint(f"{run}/model.ckpt")["config"].get("eval", {}), "eval"))
    for item in overrides:
        if "=" not in item:
            raise TrainerError(f"--set {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        base[key.removeprefix("eval.")] = yaml.safe_load(raw)
    return from_dict(EvalConfig, base, where="eval")


def _run(args) -> None:
    if args.cmd == "fit":
        from trainer.config import load_config
        from trainer.train import fit

        path = fit(load_config(args.config, args.set), args.out)
        if os.environ.get("RANK", "0") == "0":  # torchrun: one line, from rank 0
            print(f"wrote {path}")
    else:
        from trainer.checkpoint import read_checkpoint
        from trainer.evaluate import evaluate
        from trainer.families import family_of

        slim = family_of(read_checkpoint(f"{args.run}/model.ckpt")["config"]) == "slim-width"
        if slim:
            from trainer.slim.evaluate import evaluate_slim as evaluate
        evaluate(args.run, _eval_config(args.run, args.set))
        print(f"wrote {args.run}/eval.json")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_main(
        "trainer", lambda: _run(args), "interrupted; partial checkpoints kept, rerun the same command to resume"
    )


if __name__ == "__main__":
    sys.exit(main())
