"""Checkpoints that carry their own architecture config, written atomically; shipping one as ``weights/*.pt``.

    python -m kd.checkpoint runs/student.best.pt weights/student.pt --coring auto
    python -m kd.checkpoint runs/teacher.best.pt weights/teacher.pt --coring auto --fp16
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kd.data import load_images, to_tensor, validation_pairs
from kd.models import build, config_of

CORING_FLOOR = 43.0  # dB from the input on clean validation crops after coring: 1 dB above the 42 dB do-no-harm bar


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
    return ckpt


def load_model(path: Path | str) -> nn.Module:
    """Rebuild the network from the config stored in the checkpoint, load its (EMA) weights, fp32, eval mode, and fold
    re-parameterised blocks into the plain convolutions that inference runs."""
    ckpt = load_state(path, prefer_ema=True)
    model = build(ckpt["config"])
    model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
    return (model.fold() if hasattr(model, "fold") else model).eval()


def export_weights(ckpt_path: Path | str, out: Path | str, dtype: torch.dtype | None = None,
                   coring: float | None = None, **meta) -> None:
    """Strip a training checkpoint down to what inference needs for shipping: config, EMA weights (folded), metadata.

    ``coring`` sets the shipped net's soft threshold on its correction (levels; see ``kd.models.core``).
    """
    ckpt = load_state(ckpt_path)
    model = load_model(ckpt_path)
    if coring is not None:
        model.config["coring"] = float(coring)
    save(out, model, dtype=dtype,
         meta={"step": ckpt.get("step"), "args": ckpt.get("args"), **(ckpt.get("meta") or {}), **meta})


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / max(float(((a - b) ** 2).mean()), 1e-12))


@torch.no_grad()
def choose_coring(model: nn.Module, clean: np.ndarray, mild: tuple[np.ndarray, np.ndarray] | None = None,
                  floor: float = CORING_FLOOR, step: float = 0.5, most: float = 4.0) -> float:
    """The smallest soft threshold (levels, in ``step``s) that does no harm: the output on the clean crops
    (NxHxWx3 uint8) stays ≥ ``floor`` dB from its input, pooled over the crops as training validates, and, given
    ``mild`` (degraded, clean) crops, lightly damaged frames are not made worse. The least correction given up."""
    x = to_tensor(clean)
    if mild is not None:
        m_in, m_clean = to_tensor(mild[0]), to_tensor(mild[1])
    levels = 0.0
    while levels < most:
        model.config["coring"] = levels
        out = (model(x).clamp(0, 1) * 255).round() / 255
        ok = _psnr(out, x) >= floor
        if ok and mild is not None:
            restored = (model(m_in).clamp(0, 1) * 255).round() / 255
            ok = _psnr(restored, m_clean) >= _psnr(m_in, m_clean)
        if ok:
            break
        levels += step
    model.config["coring"] = levels
    return levels


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.checkpoint",
                                 description="Ship a training checkpoint: EMA weights, folded, with its coring.")
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--coring", default="auto",
                    help=f"levels, or 'auto': the smallest that keeps clean validation crops ≥ {CORING_FLOOR} dB from "
                         "their input and does not lower PSNR on the mild ones")
    ap.add_argument("--val", type=Path, default=Path("data/val"), help="held-out photos for --coring auto")
    ap.add_argument("--fp16", action="store_true", help="store float16 weights (half the size; the teacher)")
    a = ap.parse_args(argv)
    if a.coring == "auto":
        val = validation_pairs(load_images(a.val), presets=("clean", "mild"))
        coring = choose_coring(load_model(a.checkpoint), val["clean"][1], val["mild"])
    else:
        try:
            coring = float(a.coring)
        except ValueError:
            ap.error(f"--coring takes a number of levels or 'auto', not {a.coring!r}")
    export_weights(a.checkpoint, a.out, dtype=torch.float16 if a.fp16 else None, coring=coring)
    print(f"{a.out}: {config_of(load_model(a.out))}")


if __name__ == "__main__":
    main()
