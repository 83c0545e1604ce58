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
        if self.scale == 1 and self.codec == "none" and not self.blur:
            return "no degradation"
        q = {"jpeg": f"JPEG q={self.quality}", "none": "no codec"}.get(self.codec, f"{self.codec.upper()} QP={self.quality}")
        b = f", blur σ={self.blur:g}" if self.blur else ""
        return f"÷{self.scale:g}, {q}{b}"


PRESETS: dict[str, Degradation] = {
    "clean": Degradation(scale=1.0, codec="none"),  # nothing to repair: a restorer must do no harm
    "mild": Degradation(scale=1.5, codec="jpeg", quality=60),
    "medium": Degradation(scale=2.0, codec="jpeg", quality=30),
    "severe": Degradation(scale=3.0, codec="jpeg", quality=15),
    "call": Degradation(scale=2.0, codec="h264", quality=32),  # a call's codec path: half size, H.264 intra at QP 32
}
# Bump when degrade() changes what it produces for the same Degradation: cached evaluation pairs are keyed on it.
VERSION = 2


def preset(name: str) -> Degradation:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None


# The stream vector's layout. Version 1 had 5 features; version 2 adds two for call video (a VP8 quantiser, and
# whether the frame is inter-coded video under rate control). Nets trained on version 1 load with the new inputs
# wired to nothing (``kd.models.widen_stream_inputs``), so they restore exactly as before.
STREAM_VERSION = 2
STREAM_FEATURES = 7
VIDEO_QP_MAX = {"h264": 51, "h265": 51, "vp8": 127}  # a codec's quantiser range (VP8: the q index, as getStats reports)


@dataclass(frozen=True)
class Received:
    """What a call's receiver knows about a decoded frame: how much the sender shrank it (display side / decoded
    side), the codec, and the frame's quantiser in the codec's own units (H.264/H.265 QP 0-51, VP8 q index 0-127;
    the decoder reads it from the bitstream, a browser reports it as ``qpSum / framesDecoded``). Any of them may be
    unknown (None)."""

    scale: float | None = None
    codec: str | None = None
    qp: float | None = None

    def __post_init__(self):
        if self.scale is not None and not 1.0 <= self.scale <= 8.0:
            raise ValueError(f"a stream's scale must be in [1, 8], got {self.scale}")
        if self.codec is not None and self.codec not in VIDEO_QP_MAX:
            raise ValueError(f"a call's codec must be one of {sorted(VIDEO_QP_MAX)}, got {self.codec!r}")
        if self.qp is not None and not 0 <= self.qp <= VIDEO_QP_MAX.get(self.codec or "", -1):
            raise ValueError(f"quantiser {self.qp} out of range for codec {self.codec!r}")

    def describe(self) -> str:
        size = f"÷{self.scale:.3g}" if self.scale else "size unknown"
        q = f"{self.codec.upper()} {'QP' if self.codec != 'vp8' else 'q'} {self.qp:.0f}" if self.qp is not None else \
            (self.codec or "codec").upper() + " (quantiser unknown)"
        return f"{size}, {q} (call video)"


def stream_condition(d: Degradation | Received | str | float | None) -> np.ndarray:
    """What a receiver knows about its stream, as the numbers a stream-aware net is told (float32, STREAM_FEATURES):
    [1 (scale known), log2(scale) / 2, 1 (codec known), JPEG strength (100 − quality) / 90, H.264/H.265 QP / 51,
    VP8 q index / 127, 1 (inter-coded call video)].

    A ``Degradation`` or preset name (a still, or a video frame coded alone): all of it but the sender's blur (the
    receiver cannot know that). A ``Received``: a frame of call video, with what its receiver knows. A number: the
    scale alone. ``None`` (an uploaded photo, say): all zeros, and the net restores blind.
    """
    v = np.zeros(STREAM_FEATURES, np.float32)
    if d is None:
        return v
    if isinstance(d, (int, float)):
        d = Received(scale=float(d))
    if isinstance(d, str):
        d = preset(d)
    if isinstance(d, Received):
        if d.scale is not None:
            v[:2] = 1.0, np.log2(d.scale) / 2
        if d.codec is not None and d.qp is not None:
            v[2] = 1.0
            v[5 if d.codec == "vp8" else 4] = d.qp / VIDEO_QP_MAX[d.codec]
        v[6] = 1.0 if d.codec is not None else 0.0
        return v
    v[:3] = 1.0, np.log2(d.scale) / 2, 1.0
    v[3] = (100 - d.quality) / 90 if d.codec == "jpeg" else 0.0
    v[4] = d.quality / 51 if d.codec in ("h264", "h265") else 0.0
    return v


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


# The downscale factors a WebRTC sender steps through as its bandwidth drops (libwebrtc's VideoAdapter alternates
# 3/4 and 2/3 of the side: 720p -> 960x540, 640x360, 480x270, 320x180), which also hold its ÷2 and ÷4 simulcast layers.
CALL_LADDER = (4 / 3, 2.0, 8 / 3, 4.0)


def random_degradation(rng: np.random.Generator, video_codecs: tuple[str, ...] | None = None,
                       clean_share: float = 0.1, ladder_share: float = 0.0) -> Degradation:
    """Sample the training distribution, wide enough to include light damage and none at all.

    ``clean_share`` of the pairs are left untouched (the net must learn to leave good frames alone); of the rest,
    15% keep their size (codec only) and the others are scaled down by 1.1-4, ``ladder_share`` of those by a step of
    ``CALL_LADDER`` (the sizes calls really arrive at, so a told net sees each of them often). Codecs: H.264/H.265
    intra at QP 20-42 (35% when PyAV can encode) or JPEG at quality 10-95. A slight blur on 20%.
    """
    codecs = video_codecs_available() if video_codecs is None else video_codecs
    if rng.random() < clean_share:
        return Degradation(scale=1.0, codec="none")
    if rng.random() < 0.15:
        scale = 1.0
    elif ladder_share and rng.random() < ladder_share:  # (no draw at 0: earlier runs' streams stay reproducible)
        scale = float(rng.choice(CALL_LADDER))
    else:
        scale = float(rng.uniform(1.1, 4.0))
    blur = float(rng.uniform(0.2, 1.0)) if rng.random() < 0.2 else 0.0
    if codecs and rng.random() < 0.35:
        return Degradation(scale=scale, codec=str(rng.choice(codecs)), quality=int(rng.integers(20, 43)), blur=blur)
    return Degradation(scale=scale, codec="jpeg", quality=int(rng.integers(10, 96)), blur=blur)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# BT.601 limited range, the colour space x264/x265 assume for untagged 4:2:0 input.
KR, KB = 0.299, 0.114
KG = 1 - KR - KB


def rgb_to_yuv420(img: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB (H a multiple of 4, W even) -> PyAV's planar yuv420p layout ((H·3/2)xW uint8), rounded
    without bias.

    Chroma is averaged over each 2×2 block in full precision before rounding (swscale's rgb24 path darkened
    textured images by ~1.2 levels on average, a bias that every codec training pair inherited).
    """
    h, w = img.shape[:2]
    rgb = img.astype(np.float32)
    y = rgb @ np.array([KR, KG, KB], np.float32)
    cb = (rgb[..., 2] - y) / (2 * (1 - KB))
    cr = (rgb[..., 0] - y) / (2 * (1 - KR))
    sub = [c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) for c in (cb, cr)]
    planes = [16 + y * (219 / 255)] + [128 + c * (224 / 255) for c in sub]
    q = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in planes]
    return np.concatenate([q[0], q[1].reshape(h // 4, w), q[2].reshape(h // 4, w)])


def yuv420_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """The inverse of ``rgb_to_yuv420``: chroma upsampled bilinearly (centre-aligned), then BT.601 back to RGB."""
    h, w = yuv.shape[0] * 2 // 3, yuv.shape[1]
    y = (yuv[:h].astype(np.float32) - 16) * (255 / 219)
    cb, cr = ((yuv[h + i * h // 4: h + (i + 1) * h // 4].reshape(h // 2, w // 2).astype(np.float32) - 128) * (255 / 224)
              for i in (0, 1))
    cb, cr = (cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in (cb, cr))
    r = y + 2 * (1 - KR) * cr
    b = y + 2 * (1 - KB) * cb
    g = (y - KR * r - KB * b) / KG
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def encode_intra(img: np.ndarray, codec: str, qp: int) -> tuple[np.ndarray, int]:
    """Encode one frame as an H.264/H.265 intra frame at exactly ``qp`` and decode it; return it and its size in bytes.

    ``ipratio=1``: by default x264/x265 encode intra frames about 3 QP finer than the QP asked for.
    """
    import av

    h, w = img.shape[:2]
    ph, pw = h + -h % 4, w + w % 2  # 4:2:0 needs even sizes; PyAV's packed yuv420p array a height divisible by 4
    padded = np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    enc = av.CodecContext.create("libx264" if codec == "h264" else "libx265", "w")
    enc.width, enc.height, enc.pix_fmt = pw, ph, "yuv420p"
    enc.time_base = Fraction(1, 25)
    if codec == "h264":
        enc.options = {"qp": str(qp), "preset": "veryfast", "tune": "zerolatency", "x264-params": "ipratio=1"}
    else:
        enc.options = {"preset": "veryfast", "tune": "zerolatency", "x265-params": f"qp={qp}:ipratio=1:log-level=none"}
    frame = av.VideoFrame.from_ndarray(rgb_to_yuv420(padded), format="yuv420p")
    packets = list(enc.encode(frame)) + list(enc.encode(None))
    dec = av.CodecContext.create("h264" if codec == "h264" else "hevc", "r")
    out = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
    if not out:
        raise RuntimeError(f"{codec} round trip produced no frame")
    decoded = yuv420_to_rgb(out[0].to_ndarray(format="yuv420p"))
    return decoded[:h, :w], sum(p.size for p in packets)


def transmit(img: np.ndarray, d: Degradation) -> np.ndarray:
    """What the sender transmits and the receiver decodes: the frame blurred, area-downscaled and coded (small size)."""
    h, w = img.shape[:2]
    x = cv2.GaussianBlur(img, (0, 0), d.blur) if d.blur > 0 else img
    sw, sh = max(2, round(w / d.scale)), max(2, round(h / d.scale))
    small = cv2.resize(x, (sw, sh), interpolation=cv2.INTER_AREA) if (sw, sh) != (w, h) else x
    if d.codec == "jpeg":
        small = _jpeg(small, d.quality)
    elif d.codec in ("h264", "h265"):
        small = encode_intra(small, d.codec, d.quality)[0]
    return np.ascontiguousarray(small)


def display(small: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The receiver scales the decoded frame back up to its window, ``size`` = (height, width), bicubic."""
    h, w = size
    if small.shape[:2] == (h, w):
        return small
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def degrade(img: np.ndarray, d: Degradation | str = "medium") -> np.ndarray:
    """Degrade an HxWx3 uint8 RGB image; the result has the same size (what the receiver displays)."""
    if isinstance(d, str):
        d = preset(d)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {img.dtype} {img.shape}")
    return display(transmit(img, d), img.shape[:2])


def with_seed(seed: int) -> Degradation:
    """The random training degradation that ``seed`` names: the same seed always gives the same degradation."""
    return random_degradation(np.random.default_rng(seed))
