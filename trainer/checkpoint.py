"""The self-describing run checkpoint (`RUN_DIR/model.ckpt`) the compiler reads.

One file, loadable with `torch.load(weights_only=True)`: resolved config, task
specs, input spec, affinity, loss weights, every state dict, and a format
name + version checked on load. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from trainer.config import FitConfig, from_dict
from trainer.errors import TrainerError
from trainer.models import Models, build_models

FORMAT = "edgemtl.trainer.checkpoint"
FORMAT_VERSION = 3  # 2: the BN hypernets' architecture changed (issue 23): GELU, tree input; 3: the edge hypernet's too
STATE_KEYS = ("anchor", "edge_hypernet", "weight_hypernet", "phn_bn")


def atomic_torch_save(obj: Any, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_payload(cfg_dict: dict, models: Models, **extra: Any) -> dict:
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": cfg_dict,
        # on CPU: a checkpoint trained on a GPU loads anywhere
        "states": {k: {n: t.detach().cpu() for n, t in m.state_dict().items()} for k, m in models.modules().items()},
    }
    payload.update(extra)
    return payload


def read_checkpoint(path: str | Path) -> dict:
    """Loads and validates a checkpoint payload; TrainerError says what is wrong."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.ckpt"
    if not path.is_file():
        raise TrainerError(f"checkpoint {path} does not exist (expected RUN_DIR/model.ckpt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler errors vary by cause
        raise TrainerError(f"{path} is not a model checkpoint: torch.load failed ({exc.__class__.__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TrainerError(
            f"{path} is not a model checkpoint: expected format {FORMAT!r}, "
            f"found {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r}"
        )
    if payload.get("format_version") != FORMAT_VERSION:
        raise TrainerError(
            f"{path}: checkpoint format version {payload.get('format_version')!r} is not "
            f"supported; this trainer reads version {FORMAT_VERSION} (versions 2 and 3 changed the "
            f"hypernets' architecture: retrain with trainer fit)"
        )
    slim = (payload.get("config", {}).get("model") or {}).get("family") == "slim-width"
    missing = [k for k in (("anchor",) if slim else STATE_KEYS) if k not in payload.get("states", {})]
    if missing:
        raise TrainerError(f"{path}: checkpoint lacks state(s) {missing}")
    return payload


def load_checkpoint(path: str | Path) -> tuple[FitConfig, Models, dict]:
    """Config, models with trained weights (eval mode) and the raw payload."""
    payload = read_checkpoint(path)
    cfg = from_dict(FitConfig, payload["config"], where="checkpoint config")
    models = build_models(cfg)
    for key, module in models.modules().items():
        try:
            module.load_state_dict(payload["states"][key])
        except RuntimeError as exc:  # shapes or names differ from this code's models
            first = str(exc).strip().splitlines()[-1].strip()[:300]
            raise TrainerError(
                f"{path}: the {key} weights do not fit the model this trainer builds from "
                f"the checkpoint's config (made by another version?): {first}"
            ) from None
        module.eval()
    return cfg, models, payload
