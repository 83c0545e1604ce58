"""Temporal stability of a per-frame restorer: does it flicker where the clean video does not?

    python -m kd.temporal [--clips data/video/*.mp4] [--pans astronaut coffee] [--preset call] [--frames 48]

A restorer that judges each frame alone can add detail that changes from frame to frame, which a viewer sees as
shimmer. We measure it against the motion of the clean clip: DIS optical flow (OpenCV) between consecutive clean
frames, checked forward-backward so occluded pixels are left out, then

- **warp error**: mean |O_t − warp(O_{t−1})| over the trusted pixels (8-bit levels). The clean clip's own value is
  the floor (interpolation, lighting); a restorer should stay near it.
- **flicker**: the same on the error signal, mean |(O_t − C_t) − warp(O_{t−1} − C_{t−1})|: how much the damage
  (or the restorer's correction) changes between frames once motion is accounted for. 0 for the clean clip.

Clips come from ``kd.clips``: video files, or slow pans with a slight zoom over still photos (so tests need no data).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from kd.clips import load_photo, pan_clip, parse_size, read_clip
from kd.degrade import PRESETS, Degradation, degrade, preset
from kd.registry import weights_note
from kd.runtime import BACKENDS


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def motion(clean: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per consecutive clean pair (t−1, t): (flow from t to t−1, mask of trusted pixels). Computed once per clip.

    DIS flow both ways; a pixel is trusted when the round trip comes back (Sundaram et al.'s test) and stays inside.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out = []
    grays = [_gray(f) for f in clean]
    for prev, cur in zip(grays, grays[1:]):
        back = dis.calc(cur, prev, None)  # cur(x) ≈ prev(x + back(x))
        fwd = dis.calc(prev, cur, None)
        fwd_at = _warp(fwd, back)  # fwd evaluated where each current pixel lands in prev
        roundtrip = back + fwd_at
        tol = 0.01 * ((back ** 2).sum(-1) + (fwd_at ** 2).sum(-1)) + 0.5
        h, w = back.shape[:2]
        gx, gy = np.meshgrid(np.arange(w), np.arange(h))
        x, y = gx + back[..., 0], gy + back[..., 1]
        inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        out.append((back, ((roundtrip ** 2).sum(-1) < tol) & inside))
    return out


def warp_error(frames: list[np.ndarray], flows: list[tuple[np.ndarray, np.ndarray]],
               reference: list[np.ndarray] | None = None) -> float:
    """Mean |F_t − warp(F_{t−1})| over trusted pixels, in 8-bit levels; with ``reference``, on F − reference."""
    if len(frames) != len(flows) + 1:
        raise ValueError(f"{len(frames)} frames but {len(flows)} flows (need one fewer)")
    if reference is not None:
        frames = [f.astype(np.float32) - r.astype(np.float32) for f, r in zip(frames, reference)]
    total, count = 0.0, 0
    for (flow, mask), prev, cur in zip(flows, frames, frames[1:]):
        diff = np.abs(cur.astype(np.float32) - _warp(prev.astype(np.float32), flow))
        total += float(diff[mask].sum())
        count += int(mask.sum()) * (diff.shape[2] if diff.ndim == 3 else 1)
    return total / count if count else math.nan


def restore(frames: list[np.ndarray], model: str, backend: str = "auto", desc: str = "",
            stream=None) -> list[np.ndarray]:
    """Each frame through ``kd.sharpen``; stream-aware nets are told ``stream`` (the clip's degradation)."""
    from kd.sharpen import sharpen

    return [sharpen(f, model=model, backend=backend, stream=stream)
            for f in tqdm(frames, desc=desc or model, unit="frame", leave=False)]


def clip_rows(clean: list[np.ndarray], d: Degradation, models: list[str], backend: str = "auto",
              name: str = "clip") -> list[dict]:
    """One row per method (clean, input, each model): mean PSNR/SSIM against clean, warp error and flicker."""
    from kd.metrics import capped_psnr, ssim

    flows = motion(clean)
    degraded = [degrade(f, d) for f in tqdm(clean, desc=f"{name}: degrade", unit="frame", leave=False)]
    versions = {"clean": clean, "input (degraded)": degraded}
    for m in models:
        versions[m] = restore(degraded, m, backend, desc=f"{name}: {m}", stream=d)
    rows = []
    for method, frames in versions.items():
        rows.append({
            "clip": name, "method": method,
            "PSNR": float(np.mean([capped_psnr(f, c) for f, c in zip(frames, clean)])),
            "SSIM": float(np.mean([ssim(f, c) for f, c in zip(frames, clean)])),
            "warp error": warp_error(frames, flows),
            "flicker": warp_error(frames, flows, reference=clean),
        })
    base = next(r for r in rows if r["method"] == "input (degraded)")
    for r in rows:
        r["flicker / input"] = r["flicker"] / base["flicker"] if base["flicker"] else math.nan
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.temporal", description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="*", default=None,
                    help="video files (default: every clip in data/video, if fetched)")
    ap.add_argument("--pans", nargs="*", default=["astronaut", "coffee"],
                    help="photos to pan over (scikit-image names or image files)")
    ap.add_argument("--preset", default="call", help=f"one of {sorted(PRESETS)} (call: {PRESETS['call'].describe()})")
    ap.add_argument("--models", nargs="+", default=["student", "teacher"], help="kd.sharpen models")
    ap.add_argument("--backend", default="auto", choices=["auto", *BACKENDS])
    ap.add_argument("--frames", type=int, default=48, help="frames per clip")
    ap.add_argument("--size", default="640x360", help="clips are fitted to this size (WxH)")
    ap.add_argument("--out", type=Path, default=Path("results/temporal.md"), help="Markdown table ('' for none)")
    a = ap.parse_args(argv)
    try:
        size = parse_size(a.size)
        d = preset(a.preset)
        if a.frames < 3:
            raise ValueError("--frames must be at least 3")
        clips = a.clips if a.clips is not None else sorted(str(p) for p in Path("data/video").glob("*") if p.is_file())
        sources = [(Path(c).stem, lambda c=c: read_clip(c, size, a.frames)[0]) for c in clips]
        sources += [(f"pan:{Path(p).stem}", lambda p=p: pan_clip(load_photo(p), size, a.frames)) for p in a.pans]
        if not sources:
            raise ValueError("nothing to evaluate: give --clips or --pans")
        rows = []
        for name, get in tqdm(sources, desc="clips", unit="clip"):
            rows += clip_rows(get(), d, a.models, a.backend, name)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}")
    import pandas as pd

    df = pd.DataFrame(rows)
    mean = df.groupby("method", sort=False)[["PSNR", "SSIM", "warp error", "flicker", "flicker / input"]].mean()
    title = (f"Temporal stability, preset `{a.preset}` ({d.describe()}), {size[0]}×{size[1]}, {a.frames} frames per clip"
             f"\n\nWeights: {weights_note(a.models) or 'none shipped'}.")
    text = (f"{title}\n\nPer clip:\n\n{df.to_markdown(index=False, floatfmt='.4f')}\n\n"
            f"Mean over {len(sources)} clips:\n\n{mean.to_markdown(floatfmt='.4f')}\n")
    print(text)
    if str(a.out):
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(f"# {text}")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
