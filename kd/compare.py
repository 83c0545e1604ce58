"""Degrade, restore and compare: what the demo app shows, as plain functions usable without any UI."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from kd.degrade import Degradation, degrade
from kd.metrics import all_metrics
from kd.sharpen import sharpen

MIN_SIDE = 32
METHOD_LABELS = {"none": "degraded input", "unsharp": "unsharp mask", "student": "student (real-time)",
                 "teacher": "teacher", "seed": "seed student"}


def timed_sharpen(image, model: str = "student", backend: str = "auto", stream=None,
                  progress=None) -> tuple[object, float]:
    """kd.sharpen and the seconds it took."""
    t = time.perf_counter()
    out = sharpen(image, model=model, backend=backend, stream=stream, progress=progress)
    return out, time.perf_counter() - t


def simulate(clean: np.ndarray, degradation: Degradation | str = "medium",
             methods: tuple[str, ...] = ("student", "teacher"),
             backend: str = "auto") -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Degrade a clean RGB photo, restore it with each method, and score everything against the clean photo.

    Returns ({"degraded input": img, method label: img, ...}, table with PSNR/SSIM/MS-SSIM and milliseconds).
    Stream-aware nets are told the degradation, as a receiver knows its stream's size and quantiser.
    """
    if min(clean.shape[:2]) < MIN_SIDE:
        raise ValueError(f"The image is {clean.shape[1]}×{clean.shape[0]} px: scoring it needs at least "
                         f"{MIN_SIDE}×{MIN_SIDE} (SSIM compares 11×11 windows).")
    degraded = degrade(clean, degradation)
    images = {METHOD_LABELS["none"]: degraded}
    rows = [{"method": METHOD_LABELS["none"], **all_metrics(degraded, clean), "ms": 0.0}]
    for m in methods:
        out, secs = timed_sharpen(degraded, m, backend, stream=degradation)
        label = METHOD_LABELS.get(m, m)
        images[label] = out
        rows.append({"method": label, **all_metrics(out, clean), "ms": 1000 * secs})
    table = pd.DataFrame(rows).rename(columns={"psnr": "PSNR (dB)", "ssim": "SSIM", "ms_ssim": "MS-SSIM"})
    return images, table.round({"PSNR (dB)": 2, "SSIM": 4, "MS-SSIM": 4, "ms": 1})
