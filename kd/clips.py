"""Short video clips as lists of RGB frames: read from files, or synthesised as slow pans over still photos.

What the flicker measure (``kd.temporal``), the call simulator (``kd.call``) and the call data (``kd.calldata``)
feed their nets; pans need no data/, so tests can make clips anywhere.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kd.imagefile import read_image, resize, skimage_photo

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360)."""
    try:
        w, h = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise ValueError(f"size must look like 640x360, got {text!r}") from None
    if w < 16 or h < 16 or w > 7680 or h > 4320:
        raise ValueError(f"size {w}x{h} out of range (16..7680 x 16..4320)")
    return w, h


def fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale and centre-crop to exactly size=(w, h), keeping the aspect ratio (area filter when shrinking)."""
    w, h = size
    fh, fw = frame.shape[:2]
    s = max(w / fw, h / fh)
    nw, nh = max(w, round(fw * s)), max(h, round(fh * s))
    if (nw, nh) != (fw, fh):
        frame = resize(frame, (nw, nh))
    y, x = (nh - h) // 2, (nw - w) // 2
    return np.ascontiguousarray(frame[y:y + h, x:x + w])


def open_video(path: str | Path):
    """(open PyAV container, its first video stream) of a file; FileNotFoundError or ValueError naming the file.
    The caller closes the container (``with container:``)."""
    import av

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no video at {path}")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise ValueError(f"{path} is not a readable video: {e}") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} has no video stream")
    return container, container.streams.video[0]


def read_clip(path: str | Path, size: tuple[int, int] | None = None, max_frames: int | None = None,
              start: int = 0) -> tuple[list[np.ndarray], float]:
    """(RGB uint8 frames, frames per second) of a video file, optionally fitted to size=(w, h)."""
    import av

    path = Path(path)
    container, stream = open_video(path)
    frames: list[np.ndarray] = []
    with container:
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i < start:
                    continue
                rgb = frame.to_ndarray(format="rgb24")
                frames.append(fit(rgb, size) if size else rgb)
                if max_frames and len(frames) >= max_frames:
                    break
        except av.error.FFmpegError as e:
            if not frames:
                raise ValueError(f"{path} could not be decoded: {e}") from None
    if not frames:
        raise ValueError(f"{path} has no frames" + (f" after frame {start}" if start else ""))
    return frames, fps


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photo by name (astronaut, coffee...) or an image file, as RGB uint8."""
    if name in SKIMAGE_PHOTOS:
        return skimage_photo(name)
    try:
        return read_image(name)
    except (ValueError, OSError):
        raise ValueError(f"{name} is neither a scikit-image photo {SKIMAGE_PHOTOS} nor a readable image file") from None


def pan_clip(photo: np.ndarray, size: tuple[int, int] = (320, 180), frames: int = 48, speed: float = 1.3,
             zoom: float = 0.002) -> list[np.ndarray]:
    """A slow camera pan (``speed`` px/frame, diagonal) with a slight zoom-in (``zoom`` per frame) over a photo.

    The photo is first shrunk so the window covers most of it, then every frame is one sub-pixel affine warp of it,
    so the true motion is smooth and known and the clean clip does not flicker.
    """
    w, h = size
    ph, pw = photo.shape[:2]
    margin = speed * frames + 8
    s = max((w + margin) / pw, (h + margin * h / w) / ph) * 1.05
    base = resize(photo, (round(pw * s), round(ph * s)))
    bh, bw = base.shape[:2]
    out = []
    for t in range(frames):
        z = 1 + zoom * t
        cx = (bw - w) / 2 - speed * (t - frames / 2) * 0.8
        cy = (bh - h) / 2 - speed * (t - frames / 2) * 0.6
        # output pixel (u, v) samples base at (cx + w/2 + (u - w/2)/z, cy + h/2 + (v - h/2)/z)
        m = np.array([[z, 0, -z * (cx + w / 2) + w / 2], [0, z, -z * (cy + h / 2) + h / 2]], np.float64)
        out.append(cv2.warpAffine(base, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101))
    return out
