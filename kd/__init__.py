"""sharpkd: restore video-call frames degraded by low bandwidth, with a distilled real-time network.

    import kd
    restored = kd.sharpen(frame)                    # student, the real-time model
    restored = kd.sharpen(frame, model="teacher")   # best quality, slower
    blurry = kd.degrade(clean, "medium")            # simulate a poor link
"""
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from kd.degrade import PRESETS, Degradation, Received, degrade  # noqa: E402
from kd.registry import load  # noqa: E402
from kd.sharpen import sharpen  # noqa: E402

__all__ = ["sharpen", "load", "degrade", "Degradation", "Received", "PRESETS"]
