"""Sharpen a video file frame by frame, optionally degrading it first to show the effect.

    python -m kd.video IN.mp4 OUT.mp4 [--model student] [--simulate medium] [--side-by-side]

Output is H.264 (yuv420p, CRF 18) at the input's frame rate. Audio is not copied.
"""
from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from kd.degrade import PRESETS, degrade
from kd.sharpen import sharpen


def process(src: Path | str, dst: Path | str, model: str = "student", simulate: str | None = None,
            side_by_side: bool = False, backend: str = "auto", max_frames: int | None = None) -> int:
    """Returns the number of frames written."""
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FileNotFoundError(f"no video at {src}")
    if simulate and simulate not in PRESETS:
        raise ValueError(f"unknown preset {simulate!r}; choose from {sorted(PRESETS)}")
    try:
        inp = av.open(str(src))
    except av.error.FFmpegError as e:
        raise ValueError(f"{src} is not a readable video: {e}") from None
    with inp:
        if not inp.streams.video:
            raise ValueError(f"{src} has no video stream")
        vin = inp.streams.video[0]
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        total = vin.frames or None
        dst.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with av.open(str(dst), "w") as out:
            vout = None
            for frame in tqdm(inp.decode(vin), total=total, desc=f"sharpening {src.name}", unit="frame"):
                rgb = frame.to_ndarray(format="rgb24")
                shown = degrade(rgb, simulate) if simulate else rgb
                restored = sharpen(shown, model=model, backend=backend)
                picture = np.concatenate([shown, restored], axis=1) if side_by_side else restored
                h, w = picture.shape[:2]
                picture = picture[: h - h % 2, : w - w % 2]  # yuv420p needs even sizes
                if vout is None:
                    vout = out.add_stream("libx264", rate=rate)
                    vout.width, vout.height = picture.shape[1], picture.shape[0]
                    vout.pix_fmt = "yuv420p"
                    vout.options = {"crf": "18", "preset": "veryfast"}
                for packet in vout.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")):
                    out.mux(packet)
                written += 1
                if max_frames and written >= max_frames:
                    break
            if vout is None:
                raise ValueError(f"{src} has no frames")
            for packet in vout.encode(None):
                out.mux(packet)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.video", description=__doc__.splitlines()[0])
    ap.add_argument("input", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("--model", default="student")
    ap.add_argument("--simulate", default=None, choices=sorted(PRESETS), help="degrade each frame first")
    ap.add_argument("--side-by-side", action="store_true", help="write degraded | sharpened next to each other")
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "openvino"])
    ap.add_argument("--max-frames", type=int, default=None)
    a = ap.parse_args(argv)
    try:
        n = process(a.input, a.output, a.model, a.simulate, a.side_by_side, a.backend, a.max_frames)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}")
    print(f"wrote {n} frames to {a.output}")


if __name__ == "__main__":
    main()
