"""How much should stream="auto" lean toward milder damage? Measured on the validation photos (never the evaluation
set): per preset, the student told the true stream, blind, and told the estimate at several leans, and an estimate
blended halfway toward the input. Prints mean ΔPSNR, the worst photo and photos lost per variant.

    nice python tools/auto_policy.py --val data/val --side 1024
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

import kd
from kd.data import load_images
from kd.degrade import PRESETS, degrade
from kd.estimate import degradation_of, guess, load_estimator
from kd.metrics import psnr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", type=Path, default=Path("data/val"))
    ap.add_argument("--side", type=int, default=1024, help="photos shrunk to this long side (call-frame density)")
    ap.add_argument("--leans", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    ap.add_argument("--codec-leans", type=float, nargs="*", default=[],
                    help="also lean this much more per unit of the chance that the codec is another")
    ap.add_argument("--codec-sure", type=float, nargs="*", default=[],
                    help="also tell the scale alone when the codec is less likely than this")
    ap.add_argument("--scale-margins", type=float, nargs="+", default=[1.0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--model", default="student")
    a = ap.parse_args(argv)
    estimator = load_estimator()
    rows = []
    for i, photo in enumerate(load_images(a.val)):
        f = a.side / max(photo.shape[:2])
        clean = cv2.resize(photo, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else photo
        for preset in a.presets:
            frame = degrade(clean, preset)
            base = psnr(frame, clean)
            g = guess(frame.astype(np.float32) / 255, estimator)
            outs = {}

            def run(stream):
                key = str(stream)
                if key not in outs:
                    outs[key] = kd.sharpen(frame, model=a.model, backend="torch", stream=stream)
                return outs[key]

            variants = {"told": run(preset), "blind": run(None)}
            for lean in a.leans:
                variants[f"lean {lean:g}"] = run(degradation_of(g, None, lean))
                for codec_lean in a.codec_leans:
                    variants[f"lean {lean:g} + {codec_lean:g}·(1 − p codec)"] = run(
                        degradation_of(g, None, lean, codec_lean=codec_lean))
            p_codec = max(g.codec_probs)
            for lean in a.leans:
                for margin in a.scale_margins:
                    d = degradation_of(g, None, lean, margin)
                    for sure in a.codec_sure:
                        variants[f"lean {lean:g}, scale ×{margin:g}, scale only if p codec < {sure:g}"] = run(
                            d.scale if p_codec < sure and d.codec != "none" else d)
            half = (frame.astype(np.float32) + run(degradation_of(g, None, 0.0))) / 2
            variants["lean 0, half blend"] = np.clip(half + 0.5, 0, 255).astype(np.uint8)
            for name, out in variants.items():
                score = psnr(out, clean) if preset != "clean" else psnr(out, frame)
                rows.append({"photo": i, "preset": preset, "variant": name,
                             "gain": score - base if preset != "clean" else score,
                             })
    df = pd.DataFrame(rows)
    df.to_csv("runs/auto_policy.csv", index=False)
    summary = df.groupby(["preset", "variant"], sort=False).gain.agg(
        mean="mean", worst="min", lost=lambda g: int((g < 0).sum()))
    print(summary.to_string(float_format=lambda v: f"{v:+.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
