"""Ship a training checkpoint as ``weights/*.pt``: EMA weights, folded, with the coring that does no harm.

    python -m kd.ship runs/student.best.pt weights/student.pt --coring auto
    python -m kd.ship runs/teacher.best.pt weights/teacher.pt --coring auto --fp16

Coring (``kd.models.core``) soft-thresholds a net's correction so undamaged pixels stay as they were. ``auto``
picks the smallest threshold that keeps the clean validation crops ≥ ``CORING_FLOOR`` dB from their input and
does not lower PSNR on the mild ones: the least correction given up for doing no harm.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kd.checkpoint import export_weights, load_model
from kd.data import load_validation, to_tensor
from kd.degrade import stream_condition
from kd.metrics import psnr
from kd.models import config_of, stream_aware

CORING_FLOOR = 43.0  # dB from the input on clean validation crops after coring: 1 dB above the 42 dB do-no-harm bar


@torch.no_grad()
def _saved(model: nn.Module, images: np.ndarray, stream: str | None = None) -> np.ndarray:
    """The model's output on NxHxWx3 uint8 images, as the 8-bit images a user would save."""
    out = model(to_tensor(images), stream=None if stream is None else stream_condition(stream))
    return (out.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def choose_coring(model: nn.Module, clean: np.ndarray, mild: tuple[np.ndarray, np.ndarray] | None = None,
                  floor: float = CORING_FLOOR, step: float = 0.5, most: float = 4.0) -> float:
    """The smallest soft threshold (levels, in ``step``s, at most ``most``) that does no harm: the output on the
    clean crops (NxHxWx3 uint8) stays ≥ ``floor`` dB from its input, pooled over the crops as training validates,
    and, given ``mild`` (degraded, clean) crops, lightly damaged frames are not made worse. A stream-aware net must
    pass both blind (an upload) and told (a receiver that knows its stream)."""
    mild_before = psnr(*mild) if mild is not None else None
    told = stream_aware(model)
    levels = 0.0
    while levels < most:
        model.config["coring"] = levels
        ok = all(psnr(_saved(model, clean, s), clean) >= floor for s in ((None, "clean") if told else (None,)))
        if ok and mild is not None:
            ok = all(psnr(_saved(model, mild[0], s), mild[1]) >= mild_before
                     for s in ((None, "mild") if told else (None,)))
        if ok:
            break
        levels += step
    model.config["coring"] = levels
    return levels


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.ship", description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--coring", default="auto",
                    help=f"levels, or 'auto': the smallest that keeps clean validation crops ≥ {CORING_FLOOR} dB from "
                         "their input and does not lower PSNR on the mild ones")
    ap.add_argument("--val", type=Path, default=Path("data/val"), help="held-out photos, or a packed shard (its validation crops), for --coring auto")
    ap.add_argument("--fp16", action="store_true", help="store float16 weights (half the size; the teacher)")
    a = ap.parse_args(argv)
    if a.coring == "auto":
        val = load_validation(a.val, presets=("clean", "mild"))
        if "clean" not in val or not len(val["clean"][1]):
            raise SystemExit(f"--coring auto needs clean validation crops: none in {a.val} (photos, or a packed shard)")
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
