"""Speed benchmark: ms per frame and fps of every model and runtime at 540p, 720p and 1080p.

    python -m kd.bench [--repeats 10] [--sizes 540 720 1080] [--out results]

Medians over repeated runs after warm-up, on float NCHW frames (the network alone) plus one end-to-end row
(``kd.sharpen`` on a uint8 frame, padding and conversions included). Writes results/bench.jsonl and bench.md.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kd.baselines import unsharp_mask
from kd.models import count_params, gflops
from kd.runtime import available_backends, load, runner
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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def channels_last(name: str):
    """The model on NHWC memory (a copy: the cached shared model stays as it is)."""
    net = copy.deepcopy(load(name)).to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run(x: np.ndarray):
        return net(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))

    return run


def cuda_rows(sizes, repeats):
    """fp16, channels_last student on the GPU (CUDA graphs through torch.compile's reduce-overhead mode)."""
    rows = []
    net = copy.deepcopy(load("student")).cuda().half().to(memory_format=torch.channels_last)
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
            rows.append(dict(model="student", backend=name, size=f"{w}×{h}", ms=sec * 1000, fps=1 / sec,
                             peak_mb=torch.cuda.max_memory_allocated() / 2**20))
    return rows


def bench(sizes=(540, 720, 1080), repeats: int = 10, teacher_repeats: int = 2) -> pd.DataFrame:
    rows = []
    student = load("student")
    configs = [("student", b) for b in ("torch", "torch channels_last", "onnx", "openvino")
               if b.split()[0] in available_backends()]
    configs += [("seed", "torch"), ("teacher", "torch")]
    for s in sizes:
        h, w = SIZES[s]
        x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
        for name, backend in configs:
            run = channels_last(name) if backend == "torch channels_last" else runner(name, backend)
            reps = teacher_repeats if name == "teacher" else repeats
            sec = timeit(run, x, reps, warmup=1 if name == "teacher" else 2)
            net = load(name)
            rows.append(dict(model=name, backend=backend, size=f"{w}×{h}", ms=sec * 1000, fps=1 / sec,
                             params=count_params(net), gflop=gflops(net, h, w), peak_mb=peak_rss_mb()))
        frame = (np.random.default_rng(1).random((h, w, 3)) * 255).astype(np.uint8)
        sec = timeit(lambda f: unsharp_mask(f), frame, repeats)
        rows.append(dict(model="unsharp mask", backend="opencv", size=f"{w}×{h}", ms=sec * 1000, fps=1 / sec,
                         params=0, gflop=0.0, peak_mb=peak_rss_mb()))
        sec = timeit(lambda f: sharpen(f, model="student", tile=4096), frame, repeats)
        rows.append(dict(model="student", backend="kd.sharpen end-to-end (auto)", size=f"{w}×{h}", ms=sec * 1000,
                         fps=1 / sec, params=count_params(student), gflop=gflops(student, h, w), peak_mb=peak_rss_mb()))
    if torch.cuda.is_available():
        rows += cuda_rows(sizes, repeats)
    return pd.DataFrame(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[540, 720, 1080], choices=sorted(SIZES))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--teacher-repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--out", type=Path, default=Path("results"))
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    table = bench(a.sizes, a.repeats, a.teacher_repeats)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "bench.jsonl", "a") as f:
        for r in table.to_dict("records"):
            f.write(json.dumps({"machine": machine, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **r}) + "\n")
    (a.out / "bench.md").write_text(f"Machine: {machine}\n\n" + table.to_markdown(index=False, floatfmt=".1f") + "\n")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print(f"\n{machine}; wrote {a.out}/bench.jsonl and bench.md")


if __name__ == "__main__":
    main()
