"""Where inference runs: loading shipped models once, and running float NCHW batches on a backend.

``kd.sharpen`` deals with images; this module deals with networks. Models are looked up by name in
``weights/`` (shipped in the repo) or by checkpoint path, and cached, so an app loads each one once.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np
import torch

from kd import checkpoint

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MODEL_NAMES = ("student", "teacher", "seed")
_lock = threading.Lock()


def weights_path(name: str | Path) -> Path:
    p = Path(name)
    if p.suffix == ".pt" or p.exists():
        return p
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}: use one of {MODEL_NAMES} or a checkpoint path")
    return WEIGHTS_DIR / f"{name}.pt"


@functools.lru_cache(maxsize=8)
def _load_cached(path: str) -> torch.nn.Module:
    return checkpoint.load_model(path)


def load(name: str | Path = "student") -> torch.nn.Module:
    """The shipped ``student``/``teacher``/``seed`` network (or any checkpoint path), in eval mode, loaded once."""
    path = weights_path(name)
    if not path.exists():
        raise FileNotFoundError(f"no weights at {path}: train with `python -m kd.train` or restore weights/ from git")
    with _lock:
        return _load_cached(str(path.resolve()))


class TorchRunner:
    """Runs a model on float32 NCHW numpy arrays in [0, 1] with torch."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, threads: int | None = None):
        self.model = model
        self.multiple = getattr(model, "multiple", 1)
        if threads:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(x)).clamp_(0, 1).numpy()


@functools.lru_cache(maxsize=16)
def runner(name: str = "student", backend: str = "torch"):
    """A cached runner for a model name/path on a backend."""
    if backend not in ("torch", "auto"):
        raise ValueError(f"unknown backend {backend!r}")
    return TorchRunner(load(name))
