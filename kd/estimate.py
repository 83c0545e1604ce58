"""What a link probably did to a frame nobody described: its scale and codec strength, from the file and the pixels.

Why: a stream-aware net told its stream never harmed a held-out photo, while the same net restoring blind did
(halos on smooth portraits at light damage). An upload or a frame of unknown history has no stream to tell, so we
estimate one: a JPEG file's quantisation tables give its quality exactly, and a small learned net
(``kd.models.StreamEstimator``, weights ``weights/estimator.pt``, trained by ``python -m kd.train_estimator``)
guesses the scale and codec from a few textured crops. ``kd.sharpen(stream="auto")`` tells the net this guess,
leaning milder where the estimator is unsure: telling a net more damage than there was is what harms.
"""
from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from kd.degrade import CALL_LADDER, Degradation

CROP = 128  # side of each crop the estimator sees: eight 16-px blocks of a ÷2 JPEG
CROPS = 8  # crops per frame: the most textured cells of a grid (flat sky says nothing of the scale)
MIN_SIDE = 16  # below this there is nothing to estimate from: "unknown"
CODECS = ("none", "jpeg", "h264")  # the estimator's codec classes: clean, JPEG, intra video (H.264/H.265 alike)
# Estimated streams are snapped to a grid, so a runtime folds and exports a bounded number of nets (one per stream)
SCALES = tuple(sorted({1.0, 1.25, 1.5, 2.0, 2.5, 3.0, *CALL_LADDER}))
JPEG_STEP, QP_STEP = 5, 2
# How far an estimate leans toward milder damage, in units of its own uncertainty (the Laplace scale the estimator
# predicts): 0 tells the net the most likely stream, more tells it less damage when the estimator is unsure
# (README, "Auto": measured on the validation photos)
LEAN = 1.0
# The scale told is the estimate times this. A net told too large a scale over-sharpens (halos), told a smaller one
# it loses little (validation photos, told 0.8 of the true scale: +0.634 / +0.794 dB on mild / medium against
# +0.617 / +0.756 told the truth; 1.25 of it: +0.415 / +0.452). Yet 0.85 bought nothing on the evaluation photos
# (the one photo lost, lost as much) for 16 points of the told gain on mild and medium (README, "Auto"): 1.
SCALE_MARGIN = 1.0
# Below this probability of its codec, a damaged frame is told its scale alone: JPEG and intra video look alike, and
# told the wrong one a net over-restores (on the validation photos' `call` frames: −0.17 dB on one photo, −0.05 told
# the scale alone)
CODEC_SURE = 0.9
VERSION = 3  # bump when the same weights give other estimates (crops, snapping, leaning): cached scores key on it


@dataclass(frozen=True)
class Estimate:
    """A frame's estimated stream (``degradation``: None when unknown) and where it came from."""

    degradation: Degradation | None
    source: str  # "JPEG tables", "pixels", "JPEG tables + pixels", or why it is unknown
    unsure: float = 0.0  # the estimator's own uncertainty of the scale, in log2 units (0: from the file alone)
    codec_known: bool = True  # False: the codec is too uncertain to tell, so the net is told the scale alone

    @property
    def stream(self) -> Degradation | float | None:
        """What a stream-aware net is told (``kd.sharpen``'s ``stream``): the degradation, or its scale alone."""
        if self.degradation is None or self.codec_known or self.degradation.codec == "none":
            return self.degradation
        return self.degradation.scale

    def describe(self) -> str:
        """What the app shows: 'looks like ÷2, JPEG q≈30' (or why it cannot tell)."""
        d = self.degradation
        if d is None:
            return f"unknown ({self.source})"
        if d.codec == "none" and d.scale == 1:
            return f"looks undamaged ({self.source})"
        codec = {"jpeg": f"JPEG q≈{d.quality}", "none": "no codec"}.get(d.codec, f"{d.codec.upper()} QP≈{d.quality}")
        if not self.codec_known:
            codec = f"codec unsure ({codec}?)"
        size = f"÷{d.scale:.3g}, " if d.scale > 1 else "full size, "
        return f"looks like {size}{codec} ({self.source})"


# --- the file: a JPEG's quantisation tables ---------------------------------------------------------------------


@functools.cache
def _ijg_tables() -> np.ndarray:
    """The luma and chroma tables libjpeg writes at each quality 1-100 (as Pillow and OpenCV encode): 100×2×64."""
    tables = []
    for q in range(1, 101):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, "JPEG", quality=q)
        with Image.open(buf) as im:
            tables.append([im.quantization[0], im.quantization[1]])
    return np.asarray(tables, np.float64)


def jpeg_quality(quantization: dict | None) -> int | None:
    """The libjpeg quality (1-100) whose tables are nearest to a JPEG's (Pillow's ``img.quantization``): exact for
    files written by libjpeg, Pillow or OpenCV; the nearest in log ratio for a camera's own tables. None if absent."""
    if not quantization or len(quantization.get(0, ())) != 64:
        return None
    ours = [np.asarray(quantization[i], np.float64) for i in sorted(quantization)[:2]]
    ref = _ijg_tables()[:, :len(ours)]
    dist = sum(np.abs(np.log(ref[:, i] / np.maximum(t, 1))).mean(1) for i, t in enumerate(ours))
    return int(np.argmin(dist)) + 1


# --- the pixels: the learned estimator --------------------------------------------------------------------------


def pick_crops(rgb: np.ndarray, k: int = CROPS, size: int = CROP, rng: np.random.Generator | None = None):
    """K×3×size×size float32 crops of an HxWx3 float image in [0, 1]: the ``k`` most textured cells of a grid of
    size×size cells (``rng``: a random grid origin, for training). Sides under ``size`` are edge-padded."""
    h, w = rgb.shape[:2]
    if h < size or w < size:
        rgb = np.pad(rgb, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="edge")
        h, w = rgb.shape[:2]
    y0, x0 = (int(rng.integers(0, h % size + 1)), int(rng.integers(0, w % size + 1))) if rng is not None else (
        h % size // 2, w % size // 2)
    ny, nx = (h - y0) // size, (w - x0) // size
    luma = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y0 + ny * size, x0:x0 + nx * size]), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(luma, (nx * size // 4, ny * size // 4), interpolation=cv2.INTER_AREA)  # texture, cheaply
    grad = np.abs(np.diff(small, axis=0))[:, :-1] + np.abs(np.diff(small, axis=1))[:-1]
    grad = np.pad(grad, ((0, 1), (0, 1)))
    texture = grad.reshape(ny, size // 4, nx, size // 4).mean((1, 3)).ravel()
    order = np.argsort(-texture, kind="stable")
    cells = order[np.arange(k) % len(order)]  # fewer cells than k: repeat the best
    crops = [rgb[y0 + c // nx * size: y0 + (c // nx + 1) * size, x0 + c % nx * size: x0 + (c % nx + 1) * size]
             for c in cells]
    return np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2), dtype=np.float32)


@dataclass(frozen=True)
class Guess:
    """The estimator's raw reading of one frame: each value with its uncertainty (a Laplace scale, same units)."""

    log_scale: float  # log2 of the scale
    log_scale_unsure: float
    codec_probs: tuple[float, float, float]  # of CODECS
    jpeg_strength: float  # (100 − quality) / 90
    jpeg_unsure: float
    video_strength: float  # QP / 51
    video_unsure: float


def read_outputs(out: torch.Tensor) -> list[Guess]:
    """The estimator's N×9 outputs as ``Guess``es (the training targets' units, see ``targets``)."""
    o = out.detach().double()
    probs = torch.softmax(o[:, 2:5], 1)
    return [Guess(2 * float(r[0]), 2 * math.exp(float(r[1])), tuple(float(p) for p in pr), float(r[5]),
                  math.exp(float(r[6])), float(r[7]), math.exp(float(r[8]))) for r, pr in zip(o, probs)]


def targets(d: Degradation) -> tuple[float, int, float, float]:
    """What the estimator learns for a degradation: (log2(scale)/2, codec class, JPEG strength, video strength)."""
    codec = CODECS.index({"h265": "h264"}.get(d.codec, d.codec))
    jpeg = (100 - d.quality) / 90 if d.codec == "jpeg" else 0.0
    video = d.quality / 51 if d.codec in ("h264", "h265") else 0.0
    return math.log2(d.scale) / 2, codec, jpeg, video


def _snap_scale(log_scale: float) -> float:
    return min(SCALES, key=lambda s: abs(math.log2(s) - log_scale))


def degradation_of(guess: Guess, file_quality: int | None = None, lean: float = LEAN,
                   scale_margin: float = SCALE_MARGIN) -> Degradation:
    """The stream to tell a net, from a guess (and a JPEG file's own quality): the most likely codec, the scale and
    strength moved ``lean`` uncertainties toward milder damage, the scale times ``scale_margin``, snapped to the grid
    of ``SCALES`` and quality steps.

    A JPEG file's quality is a fact about its last coding, so the damage told is at least that; the pixels may show
    more (a damaged frame re-saved at a high quality): then theirs. A video frame re-saved as JPEG stays video.
    """
    seen = CODECS[int(np.argmax(guess.codec_probs))]
    codec = "jpeg" if file_quality is not None and seen != "h264" else seen
    if codec == "none":
        return Degradation(scale=1.0, codec="none")
    scale = _snap_scale(max(0.0, guess.log_scale - lean * guess.log_scale_unsure + math.log2(scale_margin)))
    if codec == "jpeg":
        q = round((100 - 90 * max(0.0, guess.jpeg_strength - lean * guess.jpeg_unsure)) / JPEG_STEP) * JPEG_STEP
        if file_quality is not None:
            q = file_quality if seen == "none" else min(q, file_quality)
        return Degradation(scale=scale, codec="jpeg", quality=int(np.clip(q, 5, 100)))
    qp = 51 * max(0.0, guess.video_strength - lean * guess.video_unsure)
    return Degradation(scale=scale, codec="h264", quality=int(np.clip(round(qp / QP_STEP) * QP_STEP, 0, 51)))


def estimator_path():
    from kd.registry import WEIGHTS_DIR

    return WEIGHTS_DIR / "estimator.pt"


def load_estimator(path=None) -> torch.nn.Module | None:
    """The shipped estimator (or the one at ``path``), loaded once; None if its weights are missing."""
    from kd.registry import load

    path = estimator_path() if path is None else path
    return load(path) if path.exists() else None


@torch.inference_mode()
def guess(rgb: np.ndarray, model: torch.nn.Module) -> Guess:
    """The estimator's reading of an HxWx3 float RGB frame in [0, 1]."""
    return read_outputs(model(torch.from_numpy(pick_crops(rgb))[None]))[0]


def estimate(image, quantization: dict | None = None, lean: float = LEAN, model: torch.nn.Module | None = None,
             ) -> Estimate:
    """Estimate a frame's stream. ``image``: anything ``kd.sharpen`` takes (a Pillow JPEG brings its own tables);
    ``quantization``: a JPEG file's tables when the pixels came from one (``kd.imagefile.jpeg_quantization``).

    Never raises for a bad image: a frame with nothing to read (too small, not an image) is "unknown".
    """
    from kd.imagefile import as_array, to_float_rgb

    if quantization is None and isinstance(image, Image.Image):
        quantization = getattr(image, "quantization", None)
    file_quality = jpeg_quality(quantization)
    try:  # a float RGB frame (kd.sharpen's own) is read as it is: converting a 720p frame again took 6 ms
        plain = isinstance(image, np.ndarray) and image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
        rgb = image if plain else to_float_rgb(as_array(image)[0])[0]
    except (ValueError, TypeError) as e:
        return Estimate(None, f"not an image: {e}")
    model = load_estimator() if model is None else model
    if min(rgb.shape[:2]) < MIN_SIDE or model is None:
        if file_quality is not None:  # the file's quality is a fact; its scale is unknown, so assume none (milder)
            return Estimate(Degradation(scale=1.0, codec="jpeg", quality=file_quality), "JPEG tables")
        return Estimate(None, f"smaller than {MIN_SIDE} px" if model is not None else "no estimator weights")
    g = guess(rgb, model)
    if not all(map(math.isfinite, (g.log_scale, g.log_scale_unsure, g.jpeg_strength, g.video_strength))):
        return Estimate(None, "not a finite image")
    source = "pixels" if file_quality is None else "JPEG tables + pixels"
    codec_known = file_quality is not None or max(g.codec_probs) >= CODEC_SURE
    return Estimate(degradation_of(g, file_quality, lean), source, g.log_scale_unsure, codec_known)


def for_model(model: str, image, quantization: dict | None = None) -> Estimate | None:
    """The estimate ``stream="auto"`` tells ``model``: None for a blind net or a classical method such as "unsharp"
    (they take no stream: nothing is estimated)."""
    from kd.models import stream_aware
    from kd.registry import load, weights_path

    try:
        weights_path(model)
    except ValueError:  # not a net's name: a classical method
        return None
    return estimate(image, quantization) if stream_aware(load(model)) else None


def main(argv=None) -> int:
    """``python -m kd.estimate FILE...``: what each file's stream looks like (its JPEG tables and pixels)."""
    import argparse
    from pathlib import Path

    from kd import imagefile

    ap = argparse.ArgumentParser(prog="python -m kd.estimate", description=main.__doc__.split(":", 1)[1].strip())
    ap.add_argument("files", nargs="+", type=Path)
    a = ap.parse_args(argv)
    for path in a.files:
        try:
            image, _ = imagefile.read(path)
        except ValueError as e:
            print(f"{path}: unknown ({e})")
            continue
        print(f"{path}: {estimate(image, imagefile.jpeg_quantization(path)).describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
