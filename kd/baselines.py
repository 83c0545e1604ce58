"""Classical baselines that need no training."""
from __future__ import annotations

import cv2
import numpy as np


def unsharp_mask(img: np.ndarray, sigma: float = 1.5, amount: float = 0.8) -> np.ndarray:
    """OpenCV unsharp mask: img + amount·(img − blur(img)), on an HxWx3 uint8 image."""
    blurred = cv2.GaussianBlur(img, (0, 0), sigma)
    return cv2.addWeighted(img, 1 + amount, blurred, -amount, 0)
