"""Evaluate every method on the eval photos at each degradation preset: PSNR, SSIM, MS-SSIM, size and cost.

    python -m kd.evaluate                      # shipped weights, all presets, writes results/eval.{csv,md}

Rows: the degraded input, OpenCV unsharp mask, the seed project's student (distilled), our student without and
with distillation (L1 and MSE distances, with and without feature distillation), and the teacher. Metrics are
computed on full images against the clean photo. weights/student.pt, the shipped one, is a copy of one of these.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from kd.data import list_images, read_image, write_image
from kd.degrade import PRESETS, degrade
from kd.metrics import all_metrics
from kd.models import count_params, gflops
from kd.runtime import WEIGHTS_DIR, load
from kd.sharpen import sharpen

# method name -> what kd.sharpen takes as model
DEFAULT_METHODS = {
    "degraded input": "none",
    "unsharp mask (OpenCV)": "unsharp",
    "seed student + KD": str(WEIGHTS_DIR / "seed.pt"),
    "student, no KD (L1)": str(WEIGHTS_DIR / "ablation" / "student_nokd_l1.pt"),
    "student + KD (L1, features 0.1)": str(WEIGHTS_DIR / "ablation" / "student_kd_l1.pt"),
    "student, no KD (MSE)": str(WEIGHTS_DIR / "student_nokd.pt"),
    "student + KD (MSE, features 0.001)": str(WEIGHTS_DIR / "ablation" / "student_kd_mse.pt"),
    "student + KD (MSE, no features)": str(WEIGHTS_DIR / "student_kd.pt"),
    "teacher": str(WEIGHTS_DIR / "teacher.pt"),
}


def eval_pairs(eval_dir: Path, preset: str, cache: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, degraded, clean) for each eval photo; degraded images are cached as PNG so every run sees the same."""
    pairs = []
    for p in list_images(eval_dir):
        clean = read_image(p)
        cached = cache / preset / f"{p.stem}.png"
        if cached.exists():
            degraded = read_image(cached)
        else:
            degraded = degrade(clean, preset)
            write_image(cached, degraded)
        pairs.append((p.stem, degraded, clean))
    if not pairs:
        raise SystemExit(f"no eval images in {eval_dir}: run `python -m kd.data fetch --out data`")
    return pairs


def evaluate(methods: dict[str, str], presets: list[str], eval_dir: Path, cache: Path) -> pd.DataFrame:
    """One row per (method, image, preset)."""
    rows = []
    for preset in presets:
        pairs = eval_pairs(eval_dir, preset, cache)
        for method, model in methods.items():
            for name, degraded, clean in tqdm(pairs, desc=f"{preset:>6} {method}", leave=False):
                t = time.perf_counter()
                restored = sharpen(degraded, model=model, backend="torch")
                rows.append({"preset": preset, "method": method, "image": name,
                             "seconds": time.perf_counter() - t, **all_metrics(restored, clean)})
    return pd.DataFrame(rows)


def summarize(per_image: pd.DataFrame, methods: dict[str, str]) -> pd.DataFrame:
    table = per_image.groupby(["preset", "method"], sort=False)[["psnr", "ssim", "ms_ssim"]].mean()
    base = table.xs("degraded input", level="method") if "degraded input" in methods else None
    if base is not None:
        table["ΔPSNR"] = table["psnr"] - base["psnr"].reindex(table.index.get_level_values(0)).to_numpy()
        table["ΔSSIM"] = table["ssim"] - base["ssim"].reindex(table.index.get_level_values(0)).to_numpy()
    cost = {}
    for method, model in methods.items():
        if Path(model).suffix == ".pt":
            net = load(model)
            cost[method] = (count_params(net), gflops(net))
        else:
            cost[method] = (0, 0.0)
    methods_col = table.index.get_level_values("method")
    table["params"] = [cost[m][0] for m in methods_col]
    table["GFLOP/720p"] = [round(cost[m][1], 2) for m in methods_col]
    return table.reset_index()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--eval-dir", type=Path, default=Path("data/eval"))
    ap.add_argument("--cache", type=Path, default=Path("data/eval_cache"), help="where degraded eval pairs are cached")
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--method", action="append", metavar="NAME=MODEL",
                    help="evaluate these instead of the defaults (MODEL: checkpoint path, 'unsharp' or 'none')")
    ap.add_argument("--out", type=Path, default=Path("results"))
    a = ap.parse_args(argv)
    methods = dict(m.split("=", 1) for m in a.method) if a.method else dict(DEFAULT_METHODS)
    missing = [m for m in methods.values() if m.endswith(".pt") and not Path(m).exists()]
    if missing:
        raise SystemExit(f"missing weights: {', '.join(missing)}")
    per_image = evaluate(methods, a.presets, a.eval_dir, a.cache)
    table = summarize(per_image, methods)
    a.out.mkdir(parents=True, exist_ok=True)
    per_image.to_csv(a.out / "eval_per_image.csv", index=False)
    table.to_csv(a.out / "eval.csv", index=False)
    (a.out / "eval.md").write_text(table.to_markdown(index=False, floatfmt=".4f") + "\n")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nwrote {a.out}/eval.csv, eval.md, eval_per_image.csv")


if __name__ == "__main__":
    main()
