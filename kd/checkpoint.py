"""Checkpoints that carry their own architecture config, written atomically."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from kd.models import build, config_of, widen_stream_inputs


def save(path: Path | str, model: nn.Module, dtype: torch.dtype | None = None, **extra) -> None:
    """Save ``{"config", "model", **extra}``; a crash mid-write never leaves a truncated checkpoint.

    ``dtype=torch.float16`` halves the file (weights are widened back to float32 on load).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().to(dtype or v.dtype) for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"config": config_of(model), "model": state, **extra}, tmp)
    os.replace(tmp, path)


def load_state(path: Path | str, prefer_ema: bool = False) -> dict:
    """The checkpoint dict; with ``prefer_ema``, its "model" holds the EMA weights where the run kept them."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path} is not a readable checkpoint: {e}") from e
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path} is not a sharpkd checkpoint (no config/model)")
    if prefer_ema and ckpt.get("ema"):
        ckpt["model"] = {k[len("module."):]: v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    ckpt["model"] = widen_stream_inputs(ckpt["model"])  # nets told an older stream vector load as they were
    return ckpt


def load_model(path: Path | str) -> nn.Module:
    """Rebuild the network from the config stored in the checkpoint, load its (EMA) weights, fp32, eval mode, and fold
    re-parameterised blocks into the plain convolutions that inference runs."""
    ckpt = load_state(path, prefer_ema=True)
    model = build(ckpt["config"])
    model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
    return (model.fold() if hasattr(model, "fold") else model).eval()


def export_weights(ckpt_path: Path | str, out: Path | str, dtype: torch.dtype | None = None,
                   coring: float | None = None, told_coring: float | None = None, **meta) -> None:
    """Strip a training checkpoint down to what inference needs for shipping: config, EMA weights (folded), metadata.

    ``coring`` sets the shipped net's soft threshold on its correction (levels; see ``kd.models.core``),
    ``told_coring`` a stream-aware net's threshold for frames told their stream (``kd.models.coring_levels``).
    """
    ckpt = load_state(ckpt_path)
    model = load_model(ckpt_path)
    if coring is not None:
        model.config["coring"] = float(coring)
    if told_coring is not None:
        model.config["told_coring"] = float(told_coring)
    save(out, model, dtype=dtype,
         meta={"step": ckpt.get("step"), "args": ckpt.get("args"), **(ckpt.get("meta") or {}), **meta})
