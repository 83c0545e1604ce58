"""Where models live: names to weight files, loading each once, and the cache folder for their exports.

Both ``kd.export`` (which writes exported files) and ``kd.runtime`` (which runs them) need this, so it sits
below both and neither imports the other's internals.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
from pathlib import Path

import torch

from kd import checkpoint
from kd.degrade import stream_condition
from kd.models import stream_aware

# the repository's weights/; a wheel installed elsewhere (pip install .) finds them through SHARPKD_WEIGHTS
WEIGHTS_DIR = Path(os.environ.get("SHARPKD_WEIGHTS", Path(__file__).resolve().parent.parent / "weights"))
CACHE_DIR = Path(os.environ.get("SHARPKD_CACHE", Path.home() / ".cache" / "sharpkd"))
MODEL_NAMES = ("student", "student_lite", "teacher", "seed")  # student_lite: 12 channels wide, for browsers (kd.narrow)
lock = threading.RLock()  # held while loading or exporting, so concurrent requests do the work once


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


@functools.lru_cache(maxsize=16)
def _for_stream_cached(path: str, stream: tuple[float, ...]) -> torch.nn.Module:
    return _load_cached(path).for_stream(stream)


def load(name: str | Path = "student", stream: tuple[float, ...] | None = None) -> torch.nn.Module:
    """The shipped ``student``/``teacher``/``seed`` network (or any checkpoint path), in eval mode, loaded once.

    ``stream`` (a ``kd.degrade.stream_condition`` as a tuple): a stream-aware net folded for that stream (a plain
    net of the same cost); blind nets ignore it."""
    path = weights_path(name)
    if not path.exists():
        raise FileNotFoundError(f"no weights at {path}: train with `python -m kd.train` or restore weights/ from git")
    with lock:
        model = _load_cached(str(path.resolve()))
        if stream is None or not stream_aware(model):
            return model
        return _for_stream_cached(str(path.resolve()), tuple(stream))


NOT_TOLD = tuple(stream_condition(None).tolist())  # the stream condition of a frame whose history is unknown


def plain(name: str | Path = "student", stream: tuple[float, ...] | None = None) -> torch.nn.Module:
    """The net that runs for ``stream`` (None: not told): a stream-aware one is folded for it either way, so every
    runtime, benchmark and cost column sees plain convs, never the FiLM and experts that exist only to train."""
    return load(name, NOT_TOLD if stream is None else stream)


def weights_digest(name: str | Path, length: int = 12) -> str:
    """The fingerprint of a model's weights file (SHA-1 of its bytes, ``length`` hex digits; 40: all of it): caches
    of its exports and outputs are keyed by it, and reports name the weights that made their numbers by it."""
    return hashlib.sha1(weights_path(name).read_bytes()).hexdigest()[:length]


def weights_note(models: list[str]) -> str:
    """Which weights made a report's numbers: 'student: weights/student.pt sha1 1234abcd5678 (trained on ...)' per
    shipped model that exists ('; ' between them)."""
    notes = []
    for m in models:
        path = weights_path(m) if m in MODEL_NAMES else None
        if path is None or not path.exists():
            continue
        meta = torch.load(path, map_location="cpu", weights_only=False).get("meta") or {}
        trained = f" ({meta['trained_on']})" if isinstance(meta, dict) and meta.get("trained_on") else ""
        notes.append(f"{m}: weights/{m}.pt sha1 {weights_digest(path)}{trained}")
    return "; ".join(notes)


def multiple(model: torch.nn.Module) -> int:
    """Frame sides must be multiples of this (the model's pixel-unshuffle factor)."""
    return int(getattr(model, "multiple", 1))


@functools.lru_cache(maxsize=16)
def receptive_radius(model: torch.nn.Module, probe: int = 320) -> int:
    """How far (px) an output pixel looks into the input, measured with autograd rather than assumed.

    Tiles overlapping by this much give the same result as the whole image, whatever the architecture.
    A field wider than the probe (e.g. global pooling) is reported as the probe's half width.
    """
    m = multiple(model)
    side = math.ceil(probe / m) * m
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0), requires_grad=True)
    # 4×4 whole unshuffle cells at the centre: every phase of the grid is probed, and a few pixels whose correction
    # a nonlinearity zeroes (coring) cannot hide the field
    c, n = side // 2 // m * m - 2 * m, 4 * m
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(model(x)[0, :, c:c + n, c:c + n].sum(), x)
    ys, xs = (grad.abs().sum((0, 1)) > 0).nonzero(as_tuple=True)
    if len(ys) == 0:
        return side // 2
    reach = max(c - int(ys.min()), int(ys.max()) - (c + n - 1), c - int(xs.min()), int(xs.max()) - (c + n - 1))
    return min(reach, side // 2)
