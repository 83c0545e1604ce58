"""Where inference runs: loading shipped models once, and running float NCHW batches on a backend.

``kd.sharpen`` deals with images; this module deals with networks. Models are looked up by name in
``weights/`` (shipped in the repo) or by checkpoint path, and cached, so an app loads each one once.
"""
from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

import numpy as np
import torch

from kd import checkpoint

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
CACHE_DIR = Path(os.environ.get("SHARPKD_CACHE", Path.home() / ".cache" / "sharpkd"))
MODEL_NAMES = ("student", "teacher", "seed")
_lock = threading.RLock()  # exported() holds it while calling load()


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


class OnnxRunner:
    """ONNX Runtime on the CPU."""

    name = "onnx"

    def __init__(self, path: Path, multiple: int, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.multiple = multiple

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.clip(self.session.run(None, {"frame": x.astype(np.float32, copy=False)})[0], 0, 1)


class OpenVinoRunner:
    """OpenVINO on the CPU, compiled for latency. ``precision='f32'`` forbids bf16 on CPUs with AMX/AVX512-BF16."""

    name = "openvino"

    def __init__(self, path: Path, multiple: int, threads: int | None = None, precision: str | None = None):
        import openvino as ov

        config = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.multiple = multiple
        self._lock = threading.Lock()  # one infer request: calls from several threads take turns

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            out = self.request.infer({0: x.astype(np.float32, copy=False)})[0]
        return np.clip(out, 0, 1)


BACKENDS = ("torch", "onnx", "openvino")


def available_backends() -> tuple[str, ...]:
    found = ["torch"]
    for name, module in (("onnx", "onnxruntime"), ("openvino", "openvino")):
        try:
            __import__(module)
            found.append(name)
        except ImportError:
            pass
    return tuple(found)


def weights_digest(name: str | Path) -> str:
    """A short content hash of a model's weights file: caches of its outputs are keyed by it."""
    import hashlib

    return hashlib.sha1(weights_path(name).read_bytes()).hexdigest()[:12]


def exported(name: str | Path, fmt: str) -> Path:
    """The model exported to ``fmt`` in CACHE_DIR (~/.cache/sharpkd), made once per weights file (keyed by content)."""
    from kd.export import EXPORTERS

    path = weights_path(name)
    out = CACHE_DIR / f"{path.stem}-{weights_digest(name)}{EXPORTERS[fmt][1]}"
    if not out.exists():
        with _lock:
            if not out.exists():
                tmp = out.with_name("tmp-" + out.name)
                EXPORTERS[fmt][0](load(name), tmp)
                for f in tmp.parent.glob(tmp.stem + ".*"):  # .xml and .bin travel together
                    f.replace(out.with_suffix(f.suffix))
    return out


@functools.lru_cache(maxsize=16)
def runner(name: str = "student", backend: str = "auto", precision: str | None = None):
    """A cached runner for a model name/path. ``auto`` picks the fastest installed backend: OpenVINO, then torch."""
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"unknown backend {backend!r}; choose from {('auto', *BACKENDS)}")
    model = load(name)
    if backend == "auto":
        backend = "openvino" if "openvino" in available_backends() else "torch"
    if backend == "torch":
        return TorchRunner(model)
    if backend not in available_backends():
        raise RuntimeError(f"backend {backend!r} is not installed (pip install {'onnxruntime' if backend == 'onnx' else 'openvino'})")
    path = exported(name, backend)
    if backend == "onnx":
        return OnnxRunner(path, model.multiple)
    return OpenVinoRunner(path, model.multiple, precision=precision)
