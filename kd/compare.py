"""Degrade, restore and compare: what the demo app shows, as plain functions usable without any UI."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pandas as pd

from kd.degrade import Degradation, degrade
from kd.metrics import all_metrics
from kd.sharpen import sharpen

METHOD_LABELS = {"none": "degraded input", "unsharp": "unsharp mask", "student": "student (real-time)",
                 "teacher": "teacher", "seed": "seed student"}


def fit_to_limit(img: np.ndarray, max_pixels: int) -> tuple[np.ndarray, str]:
    """Area-downscale an image above ``max_pixels``; return it and a notice ('' when untouched)."""
    h, w = img.shape[:2]
    if h * w <= max_pixels:
        return img, ""
    f = (max_pixels / (h * w)) ** 0.5
    nw, nh = max(1, int(w * f)), max(1, int(h * f))
    return cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA), (
        f"The image ({w}×{h}) is larger than the limit of {max_pixels / 1e6:g} MPix and was downscaled to {nw}×{nh}.")


def timed_sharpen(image, model: str = "student") -> tuple[object, float]:
    """kd.sharpen and the seconds it took."""
    t = time.perf_counter()
    out = sharpen(image, model=model)
    return out, time.perf_counter() - t


def simulate(clean: np.ndarray, degradation: Degradation | str = "medium",
             methods: tuple[str, ...] = ("student", "teacher")) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Degrade a clean RGB photo, restore it with each method, and score everything against the clean photo.

    Returns ({"degraded input": img, method label: img, ...}, table with PSNR/SSIM/MS-SSIM and milliseconds).
    """
    degraded = degrade(clean, degradation)
    images = {METHOD_LABELS["none"]: degraded}
    rows = [{"method": METHOD_LABELS["none"], **all_metrics(degraded, clean), "ms": 0.0}]
    for m in methods:
        out, secs = timed_sharpen(degraded, m)
        label = METHOD_LABELS.get(m, m)
        images[label] = out
        rows.append({"method": label, **all_metrics(out, clean), "ms": 1000 * secs})
    table = pd.DataFrame(rows).rename(columns={"psnr": "PSNR (dB)", "ssim": "SSIM", "ms_ssim": "MS-SSIM"})
    return images, table.round({"PSNR (dB)": 2, "SSIM": 4, "MS-SSIM": 4, "ms": 1})
