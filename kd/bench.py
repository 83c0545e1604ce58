"""Speed benchmark: ms per frame, fps and memory of every model and runtime at 540p, 720p and 1080p.

    python -m kd.bench [--repeats 10] [--sizes 540 720 1080] [--models student seed teacher] [--out runs/bench]

Medians over repeated runs after warm-up. Network rows time float NCHW frames (the network alone); the
``kd.sharpen`` rows time what users run: a uint8 frame through ``kd.sharpen`` with its default tile and backend
(the same call that ``kd.video`` and the app's Live tab make). The ``kd.estimate`` rows time what ``stream="auto"``
adds: an estimate per frame, and one every 15th frame as ``kd.video`` and live paths make it (``kd.estimate.Tracker``),
each as a share of the student's ``kd.sharpen`` row at that size. Each row runs in a fresh process and shows the
precision the runtime really computed in and that process's peak memory above its libraries (model, runtime, frames).
Writes bench.jsonl and bench.md to ``--out`` (runs/bench by default: committed results are only replaced on
request, with ``--out results``).
"""
from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kd.baselines import unsharp_mask
from kd.estimate import EVERY, Tracker, estimate
from kd.models import count_params, gflops
from kd.registry import plain
from kd.runtime import available_backends, cpu_name, runner
from kd.sharpen import sharpen

SIZES = {540: (540, 960), 720: (720, 1280), 1080: (1080, 1920)}


def timeit(fn, x, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _status_kb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(float(line.split()[1]) for line in f if line.startswith(field + ":"))


def machine() -> str:
    """CPU model (as lscpu names it), cores, vector extensions, and library versions: where a table comes from."""
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split())
    except (OSError, StopIteration):
        flags = set()
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile") if f in flags]
    versions = f"torch {torch.__version__}"
    try:
        import openvino

        versions += f", openvino {openvino.__version__.split('-')[0]}"
    except ImportError:
        pass
    return f"{cpu_name()}, {os.cpu_count()} CPUs ({' '.join(isa) or 'no AVX2'}), {torch.get_num_threads()} torch threads, {versions}"


def channels_last(name: str):
    """The model on NHWC memory (a copy: the cached shared model stays as it is)."""
    net = copy.deepcopy(plain(name)).to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run(x: np.ndarray):
        return net(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))

    return run


def network_configs(models: list[str]) -> list[tuple[str, str]]:
    """(model, backend): the first (real-time) model on every runtime, the others on torch and OpenVINO."""
    every = ["torch", "torch channels_last", "onnx", "openvino", "openvino-int8"]
    return [(name, b) for i, name in enumerate(models) for b in (every if i == 0 else ["torch", "openvino"])
            if b.split()[0] in available_backends()]


def cuda_rows(sizes, repeats):
    """fp16, channels_last student on the GPU (CUDA graphs through torch.compile's reduce-overhead mode)."""
    rows = []
    net = copy.deepcopy(plain("student")).cuda().half().to(memory_format=torch.channels_last)
    variants = {"cuda fp16 channels_last": net}
    try:
        variants["cuda fp16 compiled"] = torch.compile(net, mode="reduce-overhead")
    except Exception:  # noqa: BLE001 - compile is optional
        pass
    for name, fn in variants.items():
        for s in sizes:
            h, w = SIZES[s]
            x = torch.rand(1, 3, h, w, device="cuda").half().to(memory_format=torch.channels_last)
            torch.cuda.reset_peak_memory_stats()

            @torch.inference_mode()
            def run(x, fn=fn):
                fn(x)
                torch.cuda.synchronize()

            sec = timeit(run, x, repeats, warmup=5)
            rows.append(dict(model="student", backend=name, precision="f16", size=f"{w}×{h}", ms=sec * 1000,
                             fps=1 / sec, peak_mb=torch.cuda.max_memory_allocated() / 2**20))
    return rows


def row(model: str, backend: str, size: int, repeats: int, warmup: int, threads: int = 0) -> dict:
    """One table row. Run in a fresh process (``bench`` does), its peak memory is this row's alone: model, runtime,
    frames and work buffers, above what the process held after importing the libraries."""
    if threads:
        torch.set_num_threads(threads)
    base = _status_kb("VmRSS")
    h, w = SIZES[size]
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    frame = (np.random.default_rng(1).random((h, w, 3)) * 255).astype(np.uint8)
    net, precision, per_call = None, "u8", 1
    if backend == "opencv":
        fn, arg = unsharp_mask, frame
    elif backend.startswith("kd.estimate"):
        tracker = Tracker(every=EVERY)
        per_call = 1 if backend == ESTIMATE_ROWS[0] else EVERY  # a tracker is timed over EVERY frames, then divided

        def fn(f):
            return estimate(f) if per_call == 1 else [tracker(f) for _ in range(EVERY)]

        arg, precision = frame.astype(np.float32) / 255, "f32"  # the float frame kd.sharpen hands over
    elif backend.startswith("kd.sharpen"):
        asked = backend.split()[1]
        run = runner(model, asked)  # what users run: a uint8 frame, default tile, through kd.sharpen

        def fn(f):
            return sharpen(f, model=model, backend=asked)

        arg, net, precision = frame, run.model, run.precision
        backend = f"kd.sharpen ({asked}{' → ' + run.name if asked == 'auto' else ''})"
    else:
        fn = channels_last(model) if backend == "torch channels_last" else runner(model, backend)
        arg, net, precision = x, plain(model), getattr(fn, "precision", "f32")
    sec = timeit(fn, arg, repeats, warmup) / per_call
    return dict(model=Path(model).stem if net is not None else model, backend=backend, precision=precision,
                size=f"{w}×{h}", ms=sec * 1000, fps=1 / sec, params=count_params(net) if net is not None else 0,
                gflop=gflops(net, h, w) if net is not None else 0.0, peak_mb=(_status_kb("VmHWM") - base) / 1024)


ESTIMATE_ROWS = ("kd.estimate", f"kd.estimate, 1 in {EVERY} frames")


def estimate_share(table: pd.DataFrame) -> str:
    """What stream="auto" costs beside the student, per size: each estimate row's ms over the ``kd.sharpen auto``
    row's (the goal: ≤ 10%)."""
    lines = []
    for size, rows in table.groupby("size", sort=False):
        student = rows[rows.backend.str.startswith("kd.sharpen (auto")].ms
        if len(student):
            shares = ", ".join(f"{b} {rows[rows.backend == b].ms.iloc[0] / student.iloc[0]:.1%}"
                               for b in ESTIMATE_ROWS if (rows.backend == b).any())
            lines.append(f"{size}: of the student's kd.sharpen time, {shares}")
    return "\n".join(lines)


def bench(sizes=(540, 720, 1080), repeats: int = 10, slow_repeats: int = 2,
          models=("student", "seed", "teacher"), threads: int = 0) -> pd.DataFrame:
    """Every row in its own fresh process, one after another (exports are cached on disk, so only the first pays)."""
    sharpen_rows = ["kd.sharpen auto"] + (["kd.sharpen openvino-int8"] if "openvino-int8" in available_backends() else [])
    for name, backend in network_configs(list(models)) + [(models[0], "auto")]:
        if backend not in ("torch", "torch channels_last"):
            runner(name, backend)  # exports (and the auto timing) happen here, once, not inside a measured row
    tasks = []
    for s in sizes:
        tasks += [(m, b, s, *((repeats, 2) if m == models[0] else (slow_repeats, 1))) for m, b in network_configs(list(models))]
        tasks += [(models[0], b, s, repeats, 2) for b in sharpen_rows] + [("unsharp mask", "opencv", s, repeats, 2)]
        tasks += [("estimator", b, s, repeats, 2) for b in ESTIMATE_ROWS]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
        rows = [pool.submit(row, *t, threads).result() for t in tasks]
    if torch.cuda.is_available():
        rows += cuda_rows(sizes, repeats)
    return pd.DataFrame(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[540, 720, 1080], choices=sorted(SIZES))
    ap.add_argument("--models", nargs="+", default=["student", "seed", "teacher"],
                    help="model names or checkpoint paths; the first (real-time) one gets every runtime and the "
                         "kd.sharpen rows, the others torch and OpenVINO with --slow-repeats")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--slow-repeats", type=int, default=2, help="repeats for the models after the first")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for bench.jsonl and bench.md")
    a = ap.parse_args(argv)
    table = bench(a.sizes, a.repeats, a.slow_repeats, a.models, a.threads)
    where = machine() + "\n\n" + estimate_share(table)
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "bench.jsonl", "a") as f:
        for r in table.to_dict("records"):
            f.write(json.dumps({"machine": where, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **r}) + "\n")
    (a.out / "bench.md").write_text(f"Machine: {where}\n\n" + table.to_markdown(index=False, floatfmt=".1f") + "\n")
    with pd.option_context("display.width", 220, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print(f"\n{where}; wrote {a.out}/bench.jsonl and bench.md")


if __name__ == "__main__":
    main()
