"""Checkpoints that carry their own architecture config, written atomically."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from kd.models import build, config_of


def save(path: Path | str, model: nn.Module, **extra) -> None:
    """Save ``{"config", "model", **extra}``; a crash mid-write never leaves a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"config": config_of(model), "model": state, **extra}, tmp)
    os.replace(tmp, path)


def load_state(path: Path | str) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path} is not a readable checkpoint: {e}") from e
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path} is not a sharpkd checkpoint (no config/model)")
    return ckpt


def load_model(path: Path | str) -> nn.Module:
    """Rebuild the network from the config stored in the checkpoint and load its weights (eval mode, fp32)."""
    ckpt = load_state(path)
    model = build(ckpt["config"])
    model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
    return model.eval()


def export_weights(ckpt_path: Path | str, out: Path | str, **meta) -> None:
    """Strip a training checkpoint down to what inference needs (config, weights, metadata) for shipping."""
    ckpt = load_state(ckpt_path)
    model = build(ckpt["config"])
    model.load_state_dict(ckpt["model"])
    save(out, model, meta={"step": ckpt.get("step"), "args": ckpt.get("args"), **meta})
