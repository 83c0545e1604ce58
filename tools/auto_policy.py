"""How should stream="auto" turn the estimator's reading into the stream it tells the net? Measured on the validation
photos (never the evaluation set): per preset, the student told the true stream, blind, and told the stream of each
``kd.estimate.Policy`` variant below. Prints mean ΔPSNR, the worst photo and photos lost per variant (on `clean`
and `kept`, the PSNR of the output against the input instead: harm shows as a low number).

`kept` is a preset of this tool only: each photo as photos are kept, saved once as a JPEG at ``--kept-quality``
and then counted as undamaged (the evaluation's `clean` photos are mostly such JPEGs).

    nice python tools/auto_policy.py --val data/val --side 1024
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

import kd
from kd.data import load_images
from kd.degrade import PRESETS, Degradation, degrade
from kd.estimate import POLICY, Policy, block_grid, guess, load_estimator, pick_crops, read_outputs, told
from kd.metrics import psnr

V3 = Policy(grid_z=None, clean_when_unsure=False, grid_sure=None, unsure_lean=0.0)  # before the block grid
PREVIOUS = replace(POLICY, grid_sure=None, unsure_lean=0.0)  # v4: the grid only lowered the scale
VARIANTS = {
    "v3": V3,
    "v3 + clean when unsure": replace(V3, clean_when_unsure=True),
    "v3 + block grid": replace(V3, grid_z=POLICY.grid_z),
    "previous (v4)": PREVIOUS,
    "previous + grid sure ≥ 8": replace(PREVIOUS, grid_sure=8.0),
    "shipped": POLICY,
    "shipped, grid also raises": replace(POLICY, grid_raises=True),
    "shipped, no unsure lean": replace(POLICY, unsure_lean=0.0),
    "shipped, unsure lean 2": replace(POLICY, unsure_lean=2.0),
    **{f"shipped, grid z ≥ {z:g}": replace(POLICY, grid_z=z) for z in (6.0, 8.0)},
    **{f"shipped, grid reach {r:g}": replace(POLICY, grid_reach=r) for r in (0.5, 0.8)},
    "shipped, lean 0.5": replace(POLICY, lean=0.5),
    "shipped, codec sure 0.8": replace(POLICY, codec_sure=0.8),
    "shipped, codec sure 0.6": replace(POLICY, codec_sure=0.6),
    **{f"shipped, grid sure ≥ {z:g}": replace(POLICY, grid_sure=z) for z in (6.0, 12.0)},
    "shipped, lean 0.75": replace(POLICY, lean=0.75),
    "shipped, grid vouches for JPEG only": replace(POLICY, grid_codecs="jpeg"),
    "shipped, grid vouches for JPEG only, no unsure lean": replace(POLICY, grid_codecs="jpeg", unsure_lean=0.0),
    "shipped, a sure grid vouches for the likelier codec": replace(POLICY, grid_codecs="any"),
}


def reading(frame: np.ndarray, estimator, crops: int):
    """The estimator's reading of a uint8 frame from ``crops`` crops, as ``kd.estimate.guess`` does with its own."""
    rgb = frame.astype(np.float32) / 255
    if crops == 0:
        return guess(rgb, estimator)
    import torch

    with torch.inference_mode():
        return read_outputs(estimator(torch.from_numpy(pick_crops(rgb, crops))[None]))[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", type=Path, default=Path("data/val"))
    ap.add_argument("--side", type=int, default=1024, help="photos shrunk to this long side (call-frame density)")
    ap.add_argument("--presets", nargs="+", default=[*PRESETS, "kept"], choices=[*PRESETS, "kept"])
    ap.add_argument("--kept-quality", type=int, nargs="+", default=[75, 90])
    ap.add_argument("--crops", type=int, default=0, help="crops the estimator reads (0: kd.estimate's own)")
    ap.add_argument("--model", default="student")
    ap.add_argument("--estimator", type=Path, default=None, help="estimator weights (default: the shipped ones)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT")
    ap.add_argument("--out", type=Path, default=Path("runs/auto_policy.csv"))
    a = ap.parse_args(argv)
    estimator = load_estimator(a.estimator)
    rows = []
    for i, photo in enumerate(load_images(a.val)):
        f = a.side / max(photo.shape[:2])
        clean = cv2.resize(photo, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else photo
        cases = [(p, PRESETS[p], clean, degrade(clean, p)) for p in a.presets if p != "kept"]
        for q in a.kept_quality if "kept" in a.presets else ():
            kept = degrade(clean, Degradation(1.0, "jpeg", q))
            cases.append((f"kept q{q}", PRESETS["clean"], kept, kept))
        for preset, truth, reference, frame in cases:
            undamaged = truth.codec == "none"
            base = 0.0 if undamaged else psnr(frame, reference)
            g, grid = reading(frame, estimator, a.crops), block_grid(frame.astype(np.float32) / 255)
            outs = {}

            def run(stream):
                key = repr(stream)
                if key not in outs:
                    outs[key] = kd.sharpen(frame, model=a.model, backend="torch", stream=stream)
                return outs[key]

            variants = {"told": run(truth), "blind": run(None)}
            for name, policy in ((v, VARIANTS[v]) for v in a.variants):
                d, codec_known = told(g, None, grid, policy)
                variants[name] = run(d if codec_known or d.codec == "none" else d.scale)
            for name, out in variants.items():
                rows.append({"photo": i, "preset": preset, "variant": name,
                             "gain": psnr(out, frame) if undamaged else psnr(out, reference) - base})
    df = pd.DataFrame(rows)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out, index=False)
    summary = df.groupby(["preset", "variant"], sort=False).gain.agg(
        mean="mean", worst="min", lost=lambda g: int((g < 0).sum()), under_45_dB=lambda g: int((g < 45).sum()))
    print(summary.to_string(float_format=lambda v: f"{v:+.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
