"""The model of a frame sent over a poor link: blur, downscale, codec, upscale back.

A sender whose bandwidth drops encodes a smaller frame at a lower bit rate; the
receiver decodes it and scales it back up to the window size.  ``degrade``
reproduces that chain so we can make (degraded, clean) training pairs and fixed,
named evaluation presets.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

CODECS = ("jpeg", "h264", "h265", "none")


@dataclass(frozen=True)
class Degradation:
    """One concrete degradation. ``quality`` is a JPEG quality (1-100) for jpeg and a QP (0-51) for h264/h265."""

    scale: float = 2.0
    codec: str = "jpeg"
    quality: int = 30
    blur: float = 0.0

    def __post_init__(self):
        if not 1.0 <= self.scale <= 8.0:
            raise ValueError(f"scale must be in [1, 8], got {self.scale}")
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {self.codec!r}")
        hi = 100 if self.codec == "jpeg" else 51
        if self.codec != "none" and not (1 if self.codec == "jpeg" else 0) <= self.quality <= hi:
            raise ValueError(f"quality {self.quality} out of range for codec {self.codec}")
        if self.blur < 0:
            raise ValueError("blur must be >= 0")

    def describe(self) -> str:
        q = {"jpeg": f"JPEG q={self.quality}", "none": "no codec"}.get(self.codec, f"{self.codec.upper()} QP={self.quality}")
        b = f", blur σ={self.blur:g}" if self.blur else ""
        return f"÷{self.scale:g}, {q}{b}"


PRESETS: dict[str, Degradation] = {
    "mild": Degradation(scale=1.5, codec="jpeg", quality=60),
    "medium": Degradation(scale=2.0, codec="jpeg", quality=30),
    "severe": Degradation(scale=3.0, codec="jpeg", quality=15),
}


def preset(name: str) -> Degradation:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None


def video_codecs_available() -> tuple[str, ...]:
    """The PyAV codecs that can encode here (PyAV's wheels ship libx264 and libx265)."""
    try:
        import av
    except ImportError:
        return ()
    found = []
    for name, lib in (("h264", "libx264"), ("h265", "libx265")):
        try:
            av.codec.Codec(lib, "w")
            found.append(name)
        except Exception:
            pass
    return tuple(found)


def random_degradation(rng: np.random.Generator, video_codecs: tuple[str, ...] | None = None) -> Degradation:
    """Sample the training distribution: s in 1.5-4, JPEG q 10-70 or H.264/H.265 intra at QP 27-40, slight blur sometimes."""
    codecs = video_codecs_available() if video_codecs is None else video_codecs
    scale = float(rng.uniform(1.5, 4.0))
    blur = float(rng.uniform(0.2, 1.0)) if rng.random() < 0.3 else 0.0
    if codecs and rng.random() < 0.3:
        return Degradation(scale=scale, codec=str(rng.choice(codecs)), quality=int(rng.integers(27, 41)), blur=blur)
    return Degradation(scale=scale, codec="jpeg", quality=int(rng.integers(10, 71)), blur=blur)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _video_intra(img: np.ndarray, codec: str, qp: int) -> np.ndarray:
    """Encode one frame as an H.264/H.265 intra frame at a fixed QP and decode it (yuv420p, like a video call)."""
    import av

    h, w = img.shape[:2]
    ph, pw = h + h % 2, w + w % 2  # yuv420p needs even sizes
    padded = np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    enc = av.CodecContext.create("libx264" if codec == "h264" else "libx265", "w")
    enc.width, enc.height, enc.pix_fmt = pw, ph, "yuv420p"
    enc.time_base = Fraction(1, 25)
    if codec == "h264":
        enc.options = {"qp": str(qp), "preset": "veryfast", "tune": "zerolatency"}
    else:
        enc.options = {"preset": "veryfast", "tune": "zerolatency", "x265-params": f"qp={qp}:log-level=none"}
    frame = av.VideoFrame.from_ndarray(padded, format="rgb24").reformat(format="yuv420p")
    packets = list(enc.encode(frame)) + list(enc.encode(None))
    dec = av.CodecContext.create("h264" if codec == "h264" else "hevc", "r")
    out = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
    if not out:
        raise RuntimeError(f"{codec} round trip produced no frame")
    return out[0].to_ndarray(format="rgb24")[:h, :w]


def degrade(img: np.ndarray, d: Degradation | str = "medium") -> np.ndarray:
    """Degrade an HxWx3 uint8 RGB image; the result has the same size (what the receiver displays)."""
    if isinstance(d, str):
        d = preset(d)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    x = img
    if d.blur > 0:
        x = cv2.GaussianBlur(x, (0, 0), d.blur)
    sw, sh = max(2, round(w / d.scale)), max(2, round(h / d.scale))
    small = cv2.resize(x, (sw, sh), interpolation=cv2.INTER_AREA) if (sw, sh) != (w, h) else x
    if d.codec == "jpeg":
        small = _jpeg(small, d.quality)
    elif d.codec in ("h264", "h265"):
        small = _video_intra(small, d.codec, d.quality)
    if (sw, sh) == (w, h):
        return np.ascontiguousarray(small)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def with_seed(seed: int) -> Degradation:
    """The random training degradation that ``seed`` names: the same seed always gives the same degradation."""
    return random_degradation(np.random.default_rng(seed))
