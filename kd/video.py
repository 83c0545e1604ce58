"""Sharpen a video file frame by frame, optionally degrading it first to show the effect.

    python -m kd.video IN.mp4 OUT.mp4 [--model student] [--simulate medium] [--side-by-side]

An H.264 or VP8 input (a recorded call, say) is sharpened told each frame's quantiser, read from its bitstream as a
call's receiver reads it (``kd.callcodec``), at its own size. Any other input (HEVC, VP9, AV1, MPEG-4, a screen
recording of a call) is told what ``kd.estimate`` reads from its pixels, every 15th frame (``kd.estimate.Tracker``);
``--tell pixels`` reads the pixels of every input so, ``--tell nothing`` restores blind.

Output is H.264 (yuv420p, CRF 18) with the input's timestamps (variable frame rates stay variable) and its
colour tags: matrix, range, primaries and transfer are read from the input, used to convert to RGB and back, and
written to the output, so colours do not shift. Audio is not copied.
"""
from __future__ import annotations

import argparse
import functools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from kd.callcodec import CALL_CODECS, h264_frame_qp, received, told_step, vp8_q_index
from kd.clips import open_video
from kd.degrade import PRESETS, degrade
from kd.estimate import Tracker, for_model
from kd.runtime import BACKENDS
from kd.sharpen import sharpen

TEXT_AS_VIDEO = {"tty", "ansi", "bintext", "xbin", "idf"}  # FFmpeg would render a text file as a video of its letters
SWS_MATRICES = {1, 4, 5, 6, 7, 9}  # colour matrices swscale knows by their AVColorSpace number (BT.709, 601, 2020...)


def colour(frame: av.VideoFrame) -> dict:
    """How a decoded frame's YUV maps to RGB; an untagged stream is read as BT.601, limited range, as FFmpeg does."""
    return dict(matrix=frame.colorspace if frame.colorspace in SWS_MATRICES else 5,
                range=frame.color_range if frame.color_range in (1, 2) else 1,
                tags=(frame.colorspace, frame.color_range, frame.color_primaries, frame.color_trc))


def to_rgb(frame: av.VideoFrame, c: dict) -> np.ndarray:
    return frame.reformat(format="rgb24", src_colorspace=c["matrix"], dst_colorspace=c["matrix"],
                          src_color_range=c["range"], dst_color_range=2).to_ndarray()


def from_rgb(rgb: np.ndarray, c: dict) -> av.VideoFrame:
    """yuv420p in the input's matrix and range, tagged with its primaries and transfer."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    out = frame.reformat(format="yuv420p", src_colorspace=c["matrix"], dst_colorspace=c["matrix"],
                         src_color_range=2, dst_color_range=c["range"], dst_color_trc=c["tags"][3],
                         dst_color_primaries=c["tags"][2])
    out.colorspace = c["tags"][0]
    return out


TELL = ("auto", "pixels", "nothing")  # what a video's net is told: see the module's docstring


def frames_and_quantisers(container, stream, tell: bool):
    """(decoded frame, the stream its net is told) in order: for H.264 and VP8 with ``tell``, the frame's quantiser
    in its codec's steps at scale 1 (the file is shown at its decoded size); otherwise None (not in the bitstream)."""
    codec = stream.codec_context.name if tell and stream.codec_context.name in CALL_CODECS else None
    if codec == "h264":
        stream.codec_context.options = {"export_side_data": "venc_params"}
    for packet in container.demux(stream):
        header_qp = vp8_q_index(bytes(packet)) if codec == "vp8" and packet.size else None
        for frame in packet.decode():
            qp = h264_frame_qp(frame) if codec == "h264" else header_qp
            yield frame, (received(codec, 1.0, told_step(codec, qp)) if qp is not None else None)


def process(src: Path | str, dst: Path | str, model: str = "student", simulate: str | None = None,
            side_by_side: bool = False, backend: str = "auto", max_frames: int | None = None, tell: str = "auto") -> int:
    """Returns the number of frames written. ``tell``: one of ``TELL`` (the module's docstring); ignored with
    ``simulate``, whose preset is told."""
    src, dst = Path(src), Path(dst)
    if simulate and simulate not in PRESETS:
        raise ValueError(f"unknown preset {simulate!r}; choose from {sorted(PRESETS)}")
    if tell not in TELL:
        raise ValueError(f"tell must be one of {TELL}, got {tell!r}")
    pixels = Tracker(functools.partial(for_model, model)) if tell != "nothing" and not simulate else None
    inp, vin = open_video(src)
    with inp:
        if inp.format.name in TEXT_AS_VIDEO or vin.codec_context.name in TEXT_AS_VIDEO:
            raise ValueError(f"{src} is a text file, not a video")
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        total = vin.frames or None
        dst.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with av.open(str(dst), "w") as out:
            vout, c = None, None
            decoded = frames_and_quantisers(inp, vin, tell == "auto" and not simulate)
            for frame, known in tqdm(decoded, total=total, desc=f"sharpening {src.name}", unit="frame"):
                c = c or colour(frame)
                rgb = to_rgb(frame, c)
                shown = degrade(rgb, simulate) if simulate else rgb
                if simulate:
                    known = simulate
                elif known is None and pixels is not None:
                    known = pixels(rgb)
                restored = sharpen(shown, model=model, backend=backend, stream=known)
                picture = np.concatenate([shown, restored], axis=1) if side_by_side else restored
                h, w = picture.shape[:2]
                picture = picture[: h - h % 2, : w - w % 2]  # yuv420p needs even sizes
                if vout is None:
                    vout = out.add_stream("libx264", rate=rate)
                    vout.width, vout.height = picture.shape[1], picture.shape[0]
                    vout.pix_fmt = "yuv420p"
                    cc = vout.codec_context
                    vout.time_base = cc.time_base = vin.time_base  # the input's clock: no timestamp is rounded
                    cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = c["tags"]
                    vout.options = {"crf": "18", "preset": "veryfast"}
                encoded = from_rgb(picture, c)
                encoded.time_base = vin.time_base
                encoded.pts = frame.pts if frame.pts is not None else round(written / rate / vin.time_base)  # VFR stays VFR
                for packet in vout.encode(encoded):
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
    ap.add_argument("--backend", default="auto", choices=["auto", *BACKENDS])
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--tell", default="auto", choices=TELL,
                    help="auto: each H.264/VP8 frame's quantiser from the bitstream, other inputs' stream estimated "
                         "from the pixels every 15th frame; pixels: estimated for every input; nothing: blind")
    a = ap.parse_args(argv)
    try:
        n = process(a.input, a.output, a.model, a.simulate, a.side_by_side, a.backend, a.max_frames, a.tell)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}")
    print(f"wrote {n} frames to {a.output}")


if __name__ == "__main__":
    main()
