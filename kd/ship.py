"""Ship a training checkpoint as ``weights/*.pt``: EMA weights, folded, with the coring that does no harm.

    python -m kd.ship runs/student.best.pt weights/student.pt --coring auto
    python -m kd.ship runs/teacher.best.pt weights/teacher.pt --coring auto --fp16

Coring (``kd.models.core``) soft-thresholds a net's correction so undamaged pixels stay as they were. ``auto``
picks, among the thresholds that keep the clean validation crops ≥ ``CORING_FLOOR`` dB from their input and do not
lower PSNR on the mild ones, the one that gains most on the damaged validation crops (``choose_coring``). A
stream-aware net gets two, chosen apart: one for frames not told their stream and one (``told_coring``) for frames
that are.
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
                  floor: float = CORING_FLOOR, step: float = 0.5, most: float = 4.0, told: bool = False,
                  damaged: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> float:
    """The soft threshold (levels, in ``step``s, at most ``most``) that does no harm: the output on the clean crops
    (NxHxWx3 uint8) stays ≥ ``floor`` dB from its input, pooled over the crops as training validates, and, given
    ``mild`` (degraded, clean) crops, lightly damaged frames are not made worse. The smallest such threshold, or,
    given ``damaged`` crops per preset, raised from there step by step while the mean gain on them grows (coring also
    drops a net's smallest, least certain changes: measured, 0.5 level told adds +0.035 dB on the GPU teacher's
    `medium` validation crops).

    ``told=False``: for frames whose stream is not told (an upload), set as ``coring``; ``told=True`` (a
    stream-aware net): for frames told their stream (each preset's), set as ``told_coring``.
    """
    key = "told_coring" if told else "coring"
    mild_before = psnr(*mild) if mild is not None else None
    outputs = {}  # (levels, preset) -> saved output: the harm check and the gain both read the mild crops

    def saved(levels, images, preset):
        if (levels, preset) not in outputs:
            model.config[key] = levels
            outputs[levels, preset] = _saved(model, images, preset if told else None)
        return outputs[levels, preset]

    def harmless(levels):
        if psnr(saved(levels, clean, "clean"), clean) < floor:
            return False
        return mild is None or psnr(saved(levels, mild[0], "mild"), mild[1]) >= mild_before

    def gain(levels):
        return np.mean([psnr(saved(levels, d, p), c) - psnr(d, c) for p, (d, c) in damaged.items()])

    levels = 0.0
    while levels < most and not harmless(levels):
        levels += step
    if damaged and levels < most:
        best = gain(levels)
        while levels + step <= most and harmless(levels + step) and (g := gain(levels + step)) > best:
            levels, best = levels + step, g
    model.config[key] = levels
    return levels


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.ship", description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--coring", default="auto",
                    help=f"levels, or 'auto': the one that keeps clean validation crops ≥ {CORING_FLOOR} dB from "
                         "their input, does not lower PSNR on the mild ones and gains most on the damaged ones")
    ap.add_argument("--val", type=Path, default=Path("data/val"), help="held-out photos, or a packed shard (its validation crops), for --coring auto")
    ap.add_argument("--fp16", action="store_true", help="store float16 weights (half the size; the teacher)")
    a = ap.parse_args(argv)
    if a.coring == "auto":
        val = load_validation(a.val)
        if "clean" not in val or not len(val["clean"][1]):
            raise SystemExit(f"--coring auto needs clean validation crops: none in {a.val} (photos, or a packed shard)")
        net, damaged = load_model(a.checkpoint), {p: v for p, v in val.items() if p != "clean"}
        coring = choose_coring(net, val["clean"][1], val.get("mild"), damaged=damaged)
        told_coring = (choose_coring(net, val["clean"][1], val.get("mild"), told=True, damaged=damaged)
                       if stream_aware(net) else None)
    else:
        told_coring = None  # the same threshold told or not
        try:
            coring = float(a.coring)
        except ValueError:
            ap.error(f"--coring takes a number of levels or 'auto', not {a.coring!r}")
    export_weights(a.checkpoint, a.out, dtype=torch.float16 if a.fp16 else None, coring=coring,
                   told_coring=told_coring)
    print(f"{a.out}: {config_of(load_model(a.out))}")


if __name__ == "__main__":
    main()
