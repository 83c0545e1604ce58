"""``sharpen(image)``: restore one degraded frame, whatever its type, size or channels.

Image plumbing around the networks: numpy or PIL in, the same out; grayscale, RGBA and 16-bit kept
as they came; any height and width (padded to the model's multiple); big images cut into overlapping
tiles so memory stays bounded.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from kd.baselines import unsharp_mask
from kd.degrade import PRESETS, stream_condition
from kd.imagefile import as_array, to_float_rgb

CLASSICAL = {"unsharp": unsharp_mask, "none": lambda img: img}


def _from_float(rgb: np.ndarray, alpha: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    channels = like.shape[2] if like.ndim == 3 else 0
    if channels in (0, 1):
        out = rgb @ np.array([0.299, 0.587, 0.114], np.float32)  # back to one channel (BT.601 luma)
        out = out if channels == 0 else out[:, :, None]
    else:
        out = np.concatenate([rgb, alpha], axis=2) if channels == 4 else rgb
    if like.dtype == np.uint8:
        return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
    if like.dtype == np.uint16:
        return (np.clip(out, 0, 1) * 65535 + 0.5).astype(np.uint16)
    return out.astype(like.dtype)


def _run_padded(run, multiple: int, tile: np.ndarray) -> np.ndarray:
    """Run the net on one HxWx3 float tile, padding to the model's multiple by edge reflection."""
    h, w = tile.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    mode = "reflect" if min(h, w) > max(ph, pw) else "edge"
    x = np.pad(tile, ((0, ph), (0, pw), (0, 0)), mode=mode) if ph or pw else tile
    y = run(np.ascontiguousarray(x.transpose(2, 0, 1))[None])[0].transpose(1, 2, 0)
    return y[:h, :w]


ENSEMBLES = (1, 2, 4, 8)


def _dihedral(x: np.ndarray, k: int, inverse: bool = False) -> np.ndarray:
    """The k-th of the 8 flips and transposes of an N×C×H×W batch (bit 0: left-right, 1: up-down, 2: transpose)."""
    ops = [(1, lambda a: a[..., ::-1]), (2, lambda a: a[..., ::-1, :]), (4, lambda a: a.swapaxes(-1, -2))]
    for bit, op in reversed(ops) if inverse else ops:
        if k & bit:
            x = op(x)
    return np.ascontiguousarray(x)


def self_ensemble(run, x: np.ndarray, n: int) -> np.ndarray:
    """The mean of ``run`` over the first ``n`` flips/transposes of ``x``, each turned back (EDSR's "+" models).

    Why: a net's errors differ between mirrored views of a frame, so their mean is closer to the truth (measured on
    the GPU teacher's validation crops, `medium`: +0.018 dB with 2 views, +0.033 with 4, +0.037 with 8) at n times
    the cost: for the offline teacher, never for the live student.
    """
    if n not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {n}")
    return sum(_dihedral(run(_dihedral(x, k)), k, inverse=True) for k in range(n)) / n


def _starts(length: int, tile: int, multiple: int) -> list[int]:
    """Tile starts along one side: as few tiles as ``tile`` allows, of near-equal size, on the model's grid."""
    n = -(-length // tile)
    step = -(-(-(-length // n)) // multiple) * multiple
    return list(range(0, length, step))


def _run_tiled(run, multiple: int, rgb: np.ndarray, tile: int, overlap: int) -> np.ndarray:
    """Cut into tiles that overlap by ``overlap`` px on each side; keep each tile's centre so seams vanish.

    Tile starts and the overlap are multiples of the model's unshuffle factor: a tile off that grid would see
    the image through a shifted unshuffle and give a visibly different result.
    """
    h, w = rgb.shape[:2]
    if h <= tile and w <= tile:
        return _run_padded(run, multiple, rgb)
    overlap = -(-overlap // multiple) * multiple
    out = np.empty_like(rgb)
    ys, xs = _starts(h, tile, multiple), _starts(w, tile, multiple)
    for y0, y1 in zip(ys, ys[1:] + [h]):
        for x0, x1 in zip(xs, xs[1:] + [w]):
            ya, xa = max(0, y0 - overlap), max(0, x0 - overlap)
            yb, xb = min(h, y1 + overlap), min(w, x1 + overlap)
            res = _run_padded(run, multiple, rgb[ya:yb, xa:xb])
            out[y0:y1, x0:x1] = res[y0 - ya: y1 - ya, x0 - xa: x1 - xa]
    return out


def _reporting(r, progress, units: int):
    """``r`` that reports ``progress(fraction)`` after each of ``units`` calls, and within a call where it can."""
    done = 0

    def run(x):
        nonlocal done
        with r.reporting(lambda i, n: progress((done + i / n) / units)):
            y = r(x)
        done += 1
        progress(done / units)
        return y
    return run


def sharpen(image, model: str = "student", backend: str = "auto", tile: int = 2048, overlap: int | None = None,
            stream="auto", ensemble: int = 1, progress=None):
    """Restore a degraded frame. ``image``: HxW[xC] uint8/uint16/float numpy array or PIL image (L, RGB, RGBA, I;16...).

    ``model``: "student" (real-time), "teacher" (best quality), "seed", "unsharp" (classical), or a checkpoint path.
    ``backend``: "auto" (the fastest lossless runtime, timed once), "torch", "onnx", "openvino", "openvino-int8".
    ``stream``: what the receiver knows of the frame's stream, a ``kd.degrade.Degradation`` or preset name (its
    scale and codec strength), or a number (the scale alone: displayed / decoded size); stream-aware nets use it,
    blind ones ignore it. "auto" (default): estimated from the frame (``kd.estimate``: a Pillow JPEG's tables, the
    pixels), or a ``kd.estimate.Estimate`` made beforehand. None: unknown (restore blind).
    Returns the same type, size, channels and dtype. Sides above ``tile`` px are cut into overlapping tiles (memory
    stays bounded; 1080p frames go whole); ``overlap`` defaults to the model's measured receptive field.
    ``ensemble``: average the net over 1, 2, 4 or 8 flips/transposes of each tile (``self_ensemble``: n times slower).
    ``progress``: called as ``progress(fraction_done)`` as tiles, views and (on torch) the net's blocks finish: the
    teacher takes tens of seconds on a photo on a CPU, and a person waiting should see it move.
    """
    from kd.runtime import runner

    arr, mode = as_array(image)
    rgb, alpha = to_float_rgb(arr)
    if model in CLASSICAL:
        u8 = (rgb * 255 + 0.5).astype(np.uint8)
        out = CLASSICAL[model](u8).astype(np.float32) / 255
    else:
        if tile < 64 or (overlap is not None and overlap < 0):
            raise ValueError("tile must be >= 64 and overlap >= 0")
        from kd.estimate import Estimate, for_model

        if isinstance(stream, str) and stream == "auto":
            stream = for_model(str(model), rgb, getattr(image, "quantization", None))
        if isinstance(stream, Estimate):
            stream = stream.stream
        r = runner(str(model), backend, None, None if stream is None else tuple(stream_condition(stream).tolist()))
        big = rgb.shape[0] > tile or rgb.shape[1] > tile
        tiles = len(_starts(rgb.shape[0], tile, r.multiple)) * len(_starts(rgb.shape[1], tile, r.multiple)) if big else 1
        net = r if progress is None else _reporting(r, progress, tiles * ensemble)
        run = net if ensemble == 1 else (lambda x: self_ensemble(net, x, ensemble))
        out = _run_tiled(run, r.multiple, rgb, tile, (r.radius if overlap is None else overlap) if big else 0)
    result = _from_float(out, alpha, arr)
    if mode is not None:
        return Image.fromarray(result, mode="I;16" if result.dtype == np.uint16 else None)
    return result


def main(argv=None) -> int:
    """``python -m kd.sharpen -i FILE_OR_FOLDER -o OUT``: sharpen image files, with a progress bar over folders."""
    import argparse
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from kd import imagefile
    from kd.runtime import BACKENDS

    ap = argparse.ArgumentParser(prog="python -m kd.sharpen", description="Sharpen degraded frames (image files).",
                                 epilog="Example: python -m kd.sharpen -i frames/ -o sharp/ --model teacher")
    ap.add_argument("-i", "--input", type=Path, required=True, help="an image file or a folder of images")
    ap.add_argument("-o", "--output", type=Path, default=Path("results"),
                    help="output folder (default results/), or a file name when the input is one file")
    ap.add_argument("--model", default="student", help="student, teacher, seed, unsharp or a checkpoint path")
    ap.add_argument("--backend", default="auto", choices=["auto", *BACKENDS],
                    help="auto: the fastest lossless runtime on this machine, timed once")
    ap.add_argument("--tile", type=int, default=2048, help="sides above this many px are cut into tiles (memory)")
    ap.add_argument("--stream", default="auto", choices=["auto", "unknown", *sorted(PRESETS)],
                    help="what happened to the frames (a preset), if known; auto (default): estimated per frame from "
                         "its JPEG tables and pixels; unknown: restore blind. Stream-aware models use it")
    ap.add_argument("--ensemble", type=int, default=1, choices=ENSEMBLES,
                    help="average over this many flips/transposes of each frame (n times slower; for the teacher)")
    ap.add_argument("--suffix", default="out", help="added to output names: NAME_SUFFIX.EXT ('' for none)")
    ap.add_argument("--ext", default="auto", choices=["auto", "png", "jpg", "webp", "tif"],
                    help="output format; auto keeps the input's")
    a = ap.parse_args(argv)

    if a.input.is_dir():
        files = sorted(p for p in a.input.iterdir() if p.suffix.lower() in imagefile.EXTENSIONS)
        if not files:
            ap.error(f"no images ({', '.join(imagefile.EXTENSIONS)}) in {a.input}")
    elif a.input.is_file():
        files = [a.input]
    else:
        ap.error(f"no such file or folder: {a.input}")
    one_file_out = len(files) == 1 and a.input.is_file() and a.output.suffix.lower() in imagefile.EXTENSIONS

    if a.model not in CLASSICAL:
        from kd.runtime import runner

        try:
            runner(a.model, a.backend)  # a wrong model or backend fails once, here, not once per image
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            ap.error(str(e))

    failed = 0
    for path in tqdm(files, desc="sharpening", unit="image", disable=len(files) == 1):
        ext = path.suffix if a.ext == "auto" else "." + a.ext
        dst = a.output if one_file_out else a.output / f"{path.stem}{'_' + a.suffix if a.suffix else ''}{ext}"
        if dst.resolve() == path.resolve():
            ap.error(f"{dst} would overwrite its input: give another --output or a --suffix")
        try:
            image, _ = imagefile.read(path)
            stream = None if a.stream == "unknown" else a.stream
            if stream == "auto":
                from kd.estimate import for_model

                stream = for_model(a.model, image, imagefile.jpeg_quantization(path))
                if stream is not None:
                    tqdm.write(f"{path.name}: {stream.describe()}")
            imagefile.write(dst, sharpen(image, model=a.model, backend=a.backend, tile=a.tile, stream=stream,
                                          ensemble=a.ensemble))
        except (ValueError, OSError) as e:
            tqdm.write(f"skipped: {e}", file=sys.stderr)
            failed += 1
    done = len(files) - failed
    print(f"wrote {done} image{'s' * (done != 1)} to {a.output}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
