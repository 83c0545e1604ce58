"""Where inference runs: float NCHW batches through torch, ONNX Runtime or OpenVINO (fp32/bf16 or INT8).

``kd.sharpen`` deals with images; this module deals with networks. ``backend="auto"`` times each installed
float runtime once on this machine and keeps the fastest (the result is cached on disk), since which one wins
depends on the CPU, the thread count and the architecture, not on a fixed order.
"""
from __future__ import annotations

import contextlib
import functools
import json
import platform
import threading
import time
from pathlib import Path

import numpy as np
import torch

from kd import registry
from kd.export import EXPORTERS
from kd.export import VERSION as EXPORT_VERSION
from kd.models import gflops, stream_aware
from kd.registry import WEIGHTS_DIR, load, weights_digest, weights_path  # noqa: F401 - the public names stay here

BACKENDS = ("torch", "onnx", "openvino", "openvino-int8")
AUTO_CANDIDATES = ("torch", "onnx", "openvino")  # lossless ones: INT8 changes the output, so it is opted into
MODULES = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino", "openvino-int8": "nncf"}


class Runner:
    """A model on one backend: call it on float32 NCHW numpy arrays in [0, 1]; sides multiples of ``multiple``."""

    name = "?"
    precision = "f32"

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.multiple = registry.multiple(model)

    @property
    def radius(self) -> int:
        """Context (px) an output pixel needs: the overlap that makes tiles seamless."""
        return registry.receptive_radius(self.model)

    @contextlib.contextmanager
    def reporting(self, on_stage):
        """While open, calls report progress inside one frame as ``on_stage(done, total)`` where the backend can see
        it (torch: after each block of the net's body); the others run the frame as one step and say nothing."""
        yield


class TorchRunner(Runner):
    """fp32 in channels_last: 25-33% faster than NCHW on CPUs without AMX (measured), and 1.75× for the teacher."""

    name = "torch"

    def __init__(self, model: torch.nn.Module):
        super().__init__(model.to(memory_format=torch.channels_last))

    @contextlib.contextmanager
    def reporting(self, on_stage):
        blocks = list(getattr(self.model, "body", []))
        hooks = [b.register_forward_hook(lambda *_, i=i: on_stage(i + 1, len(blocks))) for i, b in enumerate(blocks)]
        try:
            yield
        finally:
            for h in hooks:
                h.remove()

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self.model(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))
        return np.ascontiguousarray(y.clamp_(0, 1).numpy())


class OnnxRunner(Runner):
    name = "onnx"

    def __init__(self, model: torch.nn.Module, path: Path):
        import onnxruntime as ort

        super().__init__(model)
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.clip(self.session.run(None, {"frame": x.astype(np.float32, copy=False)})[0], 0, 1)


class OpenVinoRunner(Runner):
    """Compiled for latency. ``precision='f32'`` forbids bf16 on CPUs with AMX/AVX512-BF16, where it is the default."""

    def __init__(self, model: torch.nn.Module, path: Path, name: str = "openvino", precision: str | None = None):
        import openvino as ov

        super().__init__(model)
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.name = name
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # e.g. f32, bf16
        if name.endswith("int8"):
            self.precision = f"int8 + {self.precision}"
        self._lock = threading.Lock()  # one infer request: calls from several threads take turns

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            out = self.request.infer({0: x.astype(np.float32, copy=False)})[0]
        return np.clip(out, 0, 1)


def available_backends() -> tuple[str, ...]:
    found = []
    for name in BACKENDS:
        try:
            __import__(MODULES[name])
            if name == "openvino-int8":
                __import__("openvino")
            found.append(name)
        except ImportError:
            pass
    return tuple(found)


def exported(name: str | Path, fmt: str, stream: tuple[float, ...] | None = None) -> Path:
    """The model exported to ``fmt`` in the cache folder (~/.cache/sharpkd), made once per weights file content,
    exporter version and (for a stream-aware net) stream."""
    path = weights_path(name)
    tag = "" if stream is None or not stream_aware(load(name)) else "-s" + "_".join(f"{v:.4g}" for v in stream)
    out = registry.CACHE_DIR / f"{path.stem}-{weights_digest(name)}{tag}-v{EXPORT_VERSION}{EXPORTERS[fmt][1]}"
    if not out.exists():
        with registry.lock:
            if not out.exists():
                tmp = out.with_name("tmp-" + out.name)
                EXPORTERS[fmt][0](load(name, stream), tmp)
                for f in tmp.parent.glob(tmp.stem + ".*"):  # .xml and .bin travel together
                    f.replace(out.with_name(out.stem + f.suffix))
    return out


def _make(name: str, backend: str, precision: str | None, stream: tuple[float, ...] | None) -> Runner:
    if backend not in available_backends():
        raise RuntimeError(f"backend {backend!r} is not installed (pip install {MODULES[backend]})")
    model = load(name, stream)
    if backend == "torch":
        return TorchRunner(model)
    if backend == "onnx":
        return OnnxRunner(model, exported(name, backend, stream))
    return OpenVinoRunner(model, exported(name, backend, stream), backend, precision)


def cpu_name() -> str:
    """The CPU model as lscpu names it (what a timing depends on), else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _seconds(run: Runner, repeats: int = 5) -> float:
    m = run.multiple
    x = np.random.default_rng(0).random((1, 3, -(-360 // m) * m, -(-640 // m) * m), dtype=np.float32)
    run(x)  # warm-up: first calls allocate and pick kernels
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        run(x)
        best = min(best, time.perf_counter() - t)
    return best


# Above this cost per 720p frame ``auto`` runs torch without timing: for the 4.9 M-parameter teacher (2255 GFLOP)
# OpenVINO was 12.4 s vs torch 13.8 s per 512² frame here, while exporting and timing all runtimes held up the app's
# start for minutes. The student costs ~5 GFLOP, the CPU teacher 167.
BIG_MODEL_GFLOPS = 50.0


def gflops_720p(model: torch.nn.Module) -> float:
    """GFLOP per 1280×720 frame, counted on a 64² probe (counting at 720p would run the big teacher for seconds)."""
    return gflops(model, 64, 64) * (1280 * 720) / (64 * 64)


def fastest_backend(name: str = "student") -> str:
    """The quickest lossless backend for this model on this machine, timed once on a 640×360 frame and
    remembered in the cache folder (keyed by weights, CPU and thread count)."""
    key = f"{weights_digest(name)}|{cpu_name()}|{torch.get_num_threads()}"
    memo = registry.CACHE_DIR / "fastest-backend.json"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if gflops_720p(load(name)) > BIG_MODEL_GFLOPS:
        return "torch"  # the offline teacher: exporting and timing it would cost minutes, for little gain (measured)
    if known.get(key) in available_backends():
        return known[key]
    times = {b: _seconds(runner(name, b)) for b in AUTO_CANDIDATES if b in available_backends()}
    best = min(times, key=times.get)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({**known, key: best}, indent=1))
    return best


@functools.lru_cache(maxsize=64)  # a call may fold a net per scale and quantiser step
def runner(name: str = "student", backend: str = "auto", precision: str | None = None,
           stream: tuple[float, ...] | None = None) -> Runner:
    """A cached runner for a model name or checkpoint path on ``backend`` (see ``BACKENDS``; ``auto``: the fastest);
    a stream-aware net folded for ``stream`` (``kd.degrade.stream_condition`` as a tuple)."""
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"unknown backend {backend!r}; choose from {('auto', *BACKENDS)}")
    load(name)  # a missing or unknown model fails here, before any export or timing
    if not stream_aware(load(name)):
        stream = None  # a blind net: one runner whatever the stream
    elif stream is None:  # not told: fold the blind modulation too, so every runtime runs a plain net
        stream = registry.NOT_TOLD
    if backend == "auto":
        return runner(name, fastest_backend(name), precision, stream)
    return _make(name, backend, precision, stream)
