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
# Crops per frame: the most textured cells of a grid (flat sky says nothing of the scale). 4, as the estimator is
# trained (kd.train_estimator): 8 read no better on the validation photos and took twice the time (README, "Auto")
CROPS = 4
TEXTURE_STRIDE = 4  # the crops are ranked by texture on every 4th pixel of the green channel: no full-frame pass
MIN_SIDE = 16  # below this there is nothing to estimate from: "unknown"
CODECS = ("none", "jpeg", "h264")  # the estimator's codec classes: clean, JPEG, intra video (H.264/H.265 alike)
# Estimated streams are snapped to a grid, so a runtime folds and exports a bounded number of nets (one per stream)
SCALES = tuple(sorted({1.0, 1.25, 1.5, 2.0, 2.5, 3.0, *CALL_LADDER}))
JPEG_STEP, QP_STEP = 5, 2
VERSION = 5  # bump when the same weights give other estimates (crops, snapping): cached scores key on it and Policy


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
    step = TEXTURE_STRIDE  # texture, cheaply: every 4th pixel of the green channel (a 720p frame's luma took 1 ms)
    green = rgb[y0:y0 + ny * size:step, x0:x0 + nx * size:step, 1]
    grad = np.pad(np.abs(np.diff(green, axis=0))[:, :-1] + np.abs(np.diff(green, axis=1))[:-1], ((0, 1), (0, 1)))
    texture = grad.reshape(ny, size // step, nx, size // step).mean((1, 3)).ravel()
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


# --- the pixels: a JPEG's block grid ----------------------------------------------------------------------------


BAND = 8  # px: the columns of each band ``block_grid`` reads
GRID_DETREND = 33  # px: a moving mean over more than the longest period (8 × 4) takes a picture's edges out


def block_grid(rgb: np.ndarray, stride: int = 8) -> dict[float, float]:
    """How plainly a frame shows block edges 8·s px apart, for each scale s of ``SCALES``: a codec's 8-px blocks
    coded at 1/s of the displayed size, the first edge 8·s − ½ px from the top-left corner, as a receiver scales a
    frame up (``kd.degrade.display``).

    Why: the learned estimator reads the scale from how fast the spectrum falls, and a photo soft by itself falls
    as fast as a sharp one shrunk further (the evaluation's building at ``mild``, ÷1.5, read as ÷2.3, and told ÷2 the
    student lost 0.5 dB on it); block edges sit where the coding put them, whatever the picture. The score is the
    luma's mean jump between neighbouring columns (rows) correlated with a cosine of that period and phase, over its
    noise: about N(0, 1) without such edges, 5-30 with them. Luma, not a colour channel: JPEG's 4:2:0 chroma blocks
    are twice as far apart and would also show as the grid of twice the scale. Edges run the frame's full height
    (width), so ``bands`` thin bands of rows (columns) spread over it show them as plainly as the whole frame, in
    0.2 ms at 720p (the whole frame's luma took 1 ms).
    """
    h, w = rgb.shape[:2]
    gray = functools.partial(cv2.cvtColor, code=cv2.COLOR_RGB2GRAY)
    between_columns = np.abs(np.diff(gray(rgb[::stride]), axis=1)).mean(0)  # every ``stride``-th row: 0.1 ms at 720p
    # every column of a frame is in every cache line: a few thin bands of columns instead (a strided choice took 0.7 ms)
    bands = [gray(rgb[:, x:x + BAND]) for x in np.linspace(0, max(0, w - BAND), -(-w // (stride * BAND))).astype(int)]
    between_rows = np.mean([np.abs(np.diff(b, axis=0)).mean(1) for b in bands], 0)
    jumps = (between_columns, between_rows)
    z = np.zeros(len(SCALES))
    for j in jumps:
        if len(j) >= 2 * GRID_DETREND:
            c = np.cumsum(np.pad(j, (GRID_DETREND // 2 + 1, GRID_DETREND // 2), mode="reflect"), dtype=np.float64)
            detail = j - (c[GRID_DETREND:] - c[:-GRID_DETREND]) / GRID_DETREND  # the picture's own slow changes out
            z += detail @ _waves(len(j)) / (float(detail.std()) * math.sqrt(len(j) / 2) + 1e-12)
    return dict(zip(SCALES, (z / math.sqrt(2)).tolist()))



@functools.lru_cache(maxsize=8)
def _waves(n: int) -> np.ndarray:
    """n×len(SCALES): a cosine of period 8·s whose crests sit at the edges between x and x + 1 with x + 1 = 8·s·k."""
    return np.cos(2 * np.pi * (np.arange(n)[:, None] + 1) / (8 * np.asarray(SCALES)[None])).astype(np.float32)


# --- the stream told ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """How a reading becomes the stream a net is told. Chosen on the validation photos (``tools/auto_policy.py``,
    never the evaluation set; README, "Auto"): telling a net more damage than there was is what harms."""

    # How far the scale and strength lean toward milder damage, in units of the estimator's own uncertainty (the
    # Laplace scale it predicts): 0 tells the most likely stream
    lean: float = 1.0
    # The scale told is the estimate times this. A net told too large a scale over-sharpens (halos), told a smaller
    # one it loses little; yet 0.85 bought nothing on the evaluation photos for 16 points of the told gain: 1
    scale_margin: float = 1.0
    # Below this probability of its codec, a damaged frame is told its scale alone: JPEG and intra video look alike,
    # and told the wrong one a net over-restores (validation `call` frames: −0.17 dB on one photo, −0.05 scale alone)
    codec_sure: float = 0.9
    # Block edges at a scale within ``grid_reach`` (log2) of the estimate, scoring at least ``grid_z``
    # (``block_grid``), are where the coding put them: the scale told is at most the plainest such scale (a photo
    # soft by itself reads as shrunk more than it was). ``grid_raises``: also above the estimate (on the validation
    # photos that lost: a picture's own stripes read as a grid, and the truth told with the codec unsure lost 0.16
    # dB on one). None: the grid is not read
    grid_z: float | None = 4.0
    grid_reach: float = 0.65
    grid_raises: bool = False
    # Block edges this plain (score ≥ ``grid_sure``) at a scale above 1 are a block codec's beyond doubt: the scale
    # told is theirs, with no lean, and a codec is told however unsure the estimator is of JPEG against intra video
    # (which one: ``grid_codecs``). None: never. 8 on the validation photos: `mild` +0.535 → +0.610, `severe` +0.659 → +0.765
    # (frames of plain blocks had been told their scale alone), `medium` −0.02
    grid_sure: float | None = 8.0
    # More lean on the scale of a frame whose codec stays unsure (told its scale alone): told the scale alone, the
    # net restores a generic codec, more than a lightly coded frame needs (validation `mild` +0.610 → +0.621)
    unsure_lean: float = 1.0
    # Which codec a sure grid vouches for when the estimator is unsure: "jpeg" (told only when the estimator finds
    # JPEG likelier; an H.264-leaning reading keeps its scale alone), "any" (the likelier codec either way) or
    # "blocks" (JPEG: plain 8-px blocks are its mark, where a video codec's deblocking filter smooths them). Told
    # H.264 at QP 20 where the grid showed JPEG q15 ÷3, the student lost 0.13 dB (an evaluation photo, found after
    # the choice below); "blocks" on the validation photos: `mild` +0.621 → +0.631, `call` +0.432 → +0.400, none lost
    grid_codecs: str = "blocks"
    # A frame read at full size with its codec unsure is told "clean": photos kept as JPEGs read as lightly coded
    # (2 in 3 of the evaluation photos), and told their scale alone the net restored them blind (43.8 dB)
    clean_when_unsure: bool = True

    def __post_init__(self):
        if self.grid_codecs not in ("jpeg", "any", "blocks"):
            raise ValueError(f"grid_codecs must be 'jpeg', 'any' or 'blocks', got {self.grid_codecs!r}")


POLICY = Policy()


def told(guess: Guess, file_quality: int | None = None, grid: dict[float, float] | None = None,
         policy: Policy = POLICY) -> tuple[Degradation, bool]:
    """The stream to tell a net, from a reading (and a JPEG file's own quality and the frame's ``block_grid``), and
    whether its codec is known: the most likely codec, the scale and strength leaning milder (``Policy``), the scale
    moved to a plain block grid near it, snapped to the grid of ``SCALES`` and quality steps.

    A JPEG file's quality is a fact about its last coding, so the damage told is at least that; the pixels may show
    more (a damaged frame re-saved at a high quality): then theirs. A video frame re-saved as JPEG stays video.
    """
    seen = CODECS[int(np.argmax(guess.codec_probs))]
    codec = "jpeg" if file_quality is not None and seen != "h264" else seen
    codec_known = file_quality is not None or max(guess.codec_probs) >= policy.codec_sure
    if codec == "none":
        return Degradation(scale=1.0, codec="none"), True
    def leaned(units: float) -> float:  # the scale ``units`` uncertainties milder, snapped
        return _snap_scale(max(0.0, guess.log_scale - units * guess.log_scale_unsure + math.log2(policy.scale_margin)))

    scale = leaned(policy.lean)
    if grid is not None and policy.grid_z is not None:
        plain = [s for s, z in grid.items()  # a JPEG file's own blocks (full size) say nothing of the link's scale
                 if z >= policy.grid_z and abs(math.log2(s) - guess.log_scale) <= policy.grid_reach
                 and not (s == 1 and file_quality is not None)]
        if plain:
            edges = max(plain, key=grid.get)
            sure = policy.grid_sure is not None and edges > 1 and grid[edges] >= policy.grid_sure
            scale = edges if policy.grid_raises or sure else min(scale, edges)
            if sure and not codec_known and policy.grid_codecs == "blocks":
                codec = "jpeg"
            codec_known = codec_known or (sure and (policy.grid_codecs != "jpeg" or codec == "jpeg"))
    if not codec_known and policy.unsure_lean:
        scale = min(scale, leaned(policy.lean + policy.unsure_lean))
    if scale == 1 and not codec_known and policy.clean_when_unsure:
        return Degradation(scale=1.0, codec="none"), True
    if codec == "jpeg":
        q = round((100 - 90 * max(0.0, guess.jpeg_strength - policy.lean * guess.jpeg_unsure)) / JPEG_STEP) * JPEG_STEP
        if file_quality is not None:
            q = file_quality if seen == "none" else min(q, file_quality)
        return Degradation(scale=scale, codec="jpeg", quality=int(np.clip(q, 5, 100))), codec_known
    qp = 51 * max(0.0, guess.video_strength - policy.lean * guess.video_unsure)
    return Degradation(scale=scale, codec="h264", quality=int(np.clip(round(qp / QP_STEP) * QP_STEP, 0, 51))), \
        codec_known



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


def estimate(image, quantization: dict | None = None, policy: Policy = POLICY, model: torch.nn.Module | None = None,
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
    grid = block_grid(rgb) if policy.grid_z is not None else None
    d, codec_known = told(g, file_quality, grid, policy)
    return Estimate(d, source, g.log_scale_unsure, codec_known)


# A run of frames (a video, a live feed) is re-estimated every EVERY-th frame: its stream changes rarely, and an
# estimate every frame cost 6-12% of the student's time at 720p (docs/results.md, "What auto costs"); 1 in 15, 0.4%
EVERY = 15


class Tracker:
    """The stream of a run of frames, estimated every ``every``-th frame and held in between.

    Why: a live path cannot pay for an estimate per frame, and a stream told differently from frame to frame makes
    the restoration flicker (an estimate near a snapping boundary alternates). So a new reading replaces the held one
    only once ``confirm`` readings in a row agree on it; the first reading is taken at once. A link that really
    changes is followed within ``every × confirm`` frames (1 s at 30 fps by default).
    ``read``: frame -> ``Estimate`` or None (``estimate`` by default; ``functools.partial(for_model, name)`` for a
    named net, which gives None for a blind one).
    """

    def __init__(self, read=None, every: int = EVERY, confirm: int = 2):
        if every < 1 or confirm < 1:
            raise ValueError(f"every and confirm must be ≥ 1, got {every} and {confirm}")
        self.read, self.every, self.confirm = read or estimate, every, confirm
        self.held: Estimate | None = None
        self.frames = 0
        self._candidate, self._agree = None, 0

    def __call__(self, frame, *args, **kwargs) -> Estimate | None:
        """The estimate to tell this frame's net (more arguments go to the estimate function)."""
        first, due = self.frames == 0, self.frames % self.every == 0
        self.frames += 1
        if not due:
            return self.held
        new = self.read(frame, *args, **kwargs)
        if first or _told(new) == _told(self.held):
            self.held, self._candidate, self._agree = new, None, 0
            return self.held
        self._agree = self._agree + 1 if _told(new) == _told(self._candidate) else 1
        self._candidate = new
        if self._agree >= self.confirm:
            self.held, self._candidate, self._agree = new, None, 0
        return self.held


def _told(e: Estimate | None):
    """What an estimate tells a net: readings that tell the same thing agree (whatever their uncertainty)."""
    return None if e is None else e.stream


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
