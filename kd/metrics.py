"""Image quality metrics on uint8 RGB images: PSNR and SSIM from scikit-image, MS-SSIM from pytorch-msssim."""
from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels (data range 255)."""
    _check(a, b)
    if np.array_equal(a, b):
        return math.inf
    return float(peak_signal_noise_ratio(a, b, data_range=255))


PSNR_CAP = 99.0  # dB: an exact frame (PSNR inf) counts as this much, so means over frames stay finite


def capped_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """``psnr`` with an exact match counted as ``PSNR_CAP`` dB: for means over many frames, where one inf would win."""
    return min(psnr(a, b), PSNR_CAP)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM over the full RGB image (per channel, averaged), Gaussian-weighted as in Wang et al. 2004."""
    _check(a, b)
    return float(structural_similarity(a, b, channel_axis=-1 if a.ndim == 3 else None, data_range=255,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (5 scales). The standard 11-px window needs a short side > 160; smaller images use a 7-px window."""
    _check(a, b)
    side = min(a.shape[:2])
    win = 11 if side > 160 else 7 if side > 96 else None
    if win is None:
        return float("nan")
    ta, tb = (torch.tensor(np.atleast_3d(x)).permute(2, 0, 1)[None].float() for x in (a, b))  # a copy: inputs may be read-only
    return float(_ms_ssim(ta, tb, data_range=255, win_size=win))


def all_metrics(restored: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    return {"psnr": psnr(restored, clean), "ssim": ssim(restored, clean), "ms_ssim": ms_ssim(restored, clean)}
