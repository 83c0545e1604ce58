"""Evaluate every method on the eval photos at each degradation preset: PSNR, SSIM, MS-SSIM, size and cost.

    python -m kd.evaluate                      # shipped weights, all presets, writes results/eval.{csv,md}
    python -m kd.evaluate --method mine=runs/student.best.pt --presets medium mild

Rows: the degraded input, OpenCV unsharp mask, the waifu2x photo model (the best free peer), SPAN ×2 (the real-time
super-resolution peer), the previous shipped
student (distilled online on a GPU), students distilled from stored teacher labels (ablations), the previous (blind)
shipped student (also at INT8 on OpenVINO), the stream-aware ×4-grid student after it, the shipped ×2-grid student
(told and not told; told also at INT8), the KD ablation (the shipped student trained 30 CPU-minutes more on one
pool of stored patches, from its teacher's labels or from clean targets), the one before it (the same, trained less), the one before that (experts on
the trunk only), the one before that (the same before training with a call's downscale steps), the one before that
(4 experts per conv instead of 16) and the one before that (no context branch), a blind snapshot of the long CPU
teacher run, the stream-aware CPU teacher, the previous GPU teacher (also averaged over 8 flips/transposes:
self-ensemble, ``kd.sharpen(ensemble=8)``) and the shipped GPU teacher, told each preset's stream (as a receiver
knows its own) and not told (an upload).
Metrics are computed on full images against the clean photo; on `clean` (nothing to repair) the PSNR of the output
against the input shows harm. Degraded pairs (``--cache``, under ``data/``) and per-method scores (``--scores``)
are cached under keys that include the degradation's parameters, the code version and the weights' hash, so
re-running only computes what changed. The scores and waifu2x's noise choice live in ``results/eval_scores``, in
git: a fresh clone recomputes only rows whose weights changed (the teacher's rows take ~40 min per preset at ×8).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from kd import estimate, peer
from kd.data import load_images
from kd.degrade import PRESETS, VERSION as DEGRADE_VERSION, display, transmit
from kd.export import VERSION as EXPORT_VERSION
from kd.imagefile import list_images, read_image, write
from kd.metrics import all_metrics
from kd.models import count_params, gflops
from kd.registry import WEIGHTS_DIR, plain, weights_digest
from kd.sharpen import sharpen

# method name -> what to run: "none", "unsharp", "waifu2x", "span", or a checkpoint path (optionally "PATH@backend", and
# "+stream" at the end to tell a stream-aware net each preset's stream, as a receiver knows its own, or "+auto" to
# tell it the stream ``kd.estimate`` estimates from each degraded frame, as ``kd.sharpen``'s default does)
DEFAULT_METHODS = {
    "degraded input": "none",
    "unsharp mask (OpenCV)": "unsharp",
    "waifu2x photo (peer)": "waifu2x",
    "SPAN ×2, real-time SR (peer)": "span",
    "student, online KD on GPU (previous)": str(WEIGHTS_DIR / "ablation" / "student_gpu.pt"),
    "student, KD from stored labels (ablation)": str(WEIGHTS_DIR / "ablation" / "student_kd_labels.pt"),
    "student ×2 grid, KD from labels, 33 min (probe)": str(WEIGHTS_DIR / "ablation" / "student_x2_kd_labels.pt"),
    "student, blind (earlier)": str(WEIGHTS_DIR / "ablation" / "student_blind.pt"),
    "student, blind (earlier), INT8 (OpenVINO)": str(WEIGHTS_DIR / "ablation" / "student_blind.pt") + "@openvino-int8",
    "student ×4 grid, not told (earlier)": str(WEIGHTS_DIR / "ablation" / "student_x4_stream.pt"),
    "student ×4 grid, told (earlier)": str(WEIGHTS_DIR / "ablation" / "student_x4_stream.pt") + "+stream",
    "student ×2 grid, FiLM only, told (ablation)": str(WEIGHTS_DIR / "ablation" / "student_x2_film.pt") + "+stream",
    "student ×2 grid + experts (earlier), told": str(WEIGHTS_DIR / "ablation" / "student_x2_experts.pt") + "+stream",
    "student + context, 4 experts (earlier), told": str(WEIGHTS_DIR / "ablation" / "student_x2_context.pt") + "+stream",
    "student + context, 16 experts, told (earlier)": str(WEIGHTS_DIR / "ablation" / "student_x2_experts16.pt") + "+stream",
    "student, call ladder, told (earlier)": str(WEIGHTS_DIR / "ablation" / "student_x2_ladder.pt") + "+stream",
    "student, experts on every conv, told (earlier)":
        str(WEIGHTS_DIR / "ablation" / "student_x2_all_experts.pt") + "+stream",
    "student, stills only, told (previous shipped)": str(WEIGHTS_DIR / "ablation" / "student_stills.pt") + "+stream",
    "student, stills only, auto (previous shipped)": str(WEIGHTS_DIR / "ablation" / "student_stills.pt") + "+auto",
    "student, not told the stream": str(WEIGHTS_DIR / "student.pt"),
    "student (shipped), told the stream": str(WEIGHTS_DIR / "student.pt") + "+stream",
    "student (shipped), told, INT8 (OpenVINO)": str(WEIGHTS_DIR / "student.pt") + "@openvino-int8+stream",
    "student (shipped), auto: stream estimated": str(WEIGHTS_DIR / "student.pt") + "+auto",
    # issue 27's ablation: the shipped student 30 CPU-min more on the same stored patches, teacher's labels or clean
    "student, +30 CPU-min, KD from labels, told (ablation)":
        str(WEIGHTS_DIR / "ablation" / "student_labels_kd.pt") + "+stream",
    "student, +30 CPU-min, no KD, told (ablation)": str(WEIGHTS_DIR / "ablation" / "student_labels_no_kd.pt") + "+stream",
    "teacher-cpu, blind, step 6 000 (ablation)": str(WEIGHTS_DIR / "ablation" / "teacher_cpu.pt"),
    "teacher-cpu, told (earlier)": str(WEIGHTS_DIR / "ablation" / "teacher_cpu_stream.pt") + "+stream",
    "teacher GPU, told (previous shipped)": str(WEIGHTS_DIR / "ablation" / "teacher_gpu_stream.pt") + "+stream",
    "teacher GPU, told, ×8 self-ensemble (previous shipped)":
        str(WEIGHTS_DIR / "ablation" / "teacher_gpu_stream.pt") + "*8+stream",
    "teacher, not told the stream": str(WEIGHTS_DIR / "teacher.pt"),
    "teacher (shipped), told the stream": str(WEIGHTS_DIR / "teacher.pt") + "+stream",
}
# Slow methods run at fewer presets by default: waifu2x takes ~20 s per 512² frame on 2 cores, the teacher's
# self-ensemble ~40 min per preset (8 runs of a 2.3 TFLOP/720p net over 14 MP).
DEFAULT_PRESETS_FOR = {"waifu2x photo (peer)": ("mild", "medium"),
                       "teacher GPU, told, ×8 self-ensemble (previous shipped)": ("mild", "medium")}


def pairs_key(preset: str) -> str:
    """Cache folder for a preset's degraded pairs: its parameters and the degradation code's version."""
    d = PRESETS[preset]
    return f"{preset}-{hashlib.sha1(f'{d}|v{DEGRADE_VERSION}'.encode()).hexdigest()[:10]}"


def eval_pairs(eval_dir: Path, preset: str, cache: Path) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, small decoded frame, displayed degraded frame, clean) per eval photo, cached as PNG."""
    paths = list_images(eval_dir) if eval_dir.is_dir() else []
    if not paths:
        raise SystemExit(f"no eval images in {eval_dir}: run `python -m kd.data fetch --out data` first")
    folder = cache / pairs_key(preset)
    pairs = []
    for p in paths:
        clean = read_image(p)
        cached = folder / f"{p.stem}.small.png"
        if cached.exists():
            small = read_image(cached)
        else:
            small = transmit(clean, PRESETS[preset])
            write(cached, small)
        pairs.append((p.stem, small, display(small, clean.shape[:2]), clean))
    return pairs


STREAM_MODES = ("+stream", "+auto")


def parse_spec(spec: str) -> tuple[str, str, str, int]:
    """"PATH[@backend][*N][+stream|+auto]" -> (path or method name, backend or "", what the net is told ("stream":
    each preset's, "auto": estimated per frame, "": nothing), views averaged: ``*N`` is ``sharpen``'s self-ensemble
    over N flips/transposes, 1 without)."""
    mode = next((m for m in STREAM_MODES if spec.endswith(m)), "")
    rest, star, n = spec.removesuffix(mode).rpartition("*")
    model, _, backend = (rest if star else n).partition("@")
    return model, backend, mode[1:], int(n) if star else 1


def method_key(spec: str, preset: str, extra: str = "") -> str:
    """Identifies a method's scores: the weights' bytes (or the classical method's name), backend (and the version of
    the exporter that made its file: an INT8 net changes with its quantisation), stream, pairs."""
    model, backend, told, views = parse_spec(spec)
    ident = weights_digest(model, length=40) if model.endswith(".pt") else spec
    if backend:
        backend += f"|export v{EXPORT_VERSION}"
    tags = (f"|{told}" if told else "") + (f"|x{views}" if views > 1 else "")
    return hashlib.sha1(f"{ident}|{backend}|{pairs_key(preset)}|{extra}{tags}".encode()).hexdigest()[:16]


def restorer(spec: str, preset: str, val_dir: Path, scores: Path):
    """A function (small, degraded) -> restored for a method spec, and a note for the cache key."""
    if spec == "waifu2x":
        noise = chosen_noise(preset, val_dir, scores)

        def run(small, degraded):
            require_peer()
            return peer.waifu2x(small, degraded.shape[:2], noise)
        return run, f"noise={noise}"
    if spec == "span":
        def run_span(small, degraded):
            require_peer(peer.span_available)
            return peer.span(small, degraded.shape[:2])
        return run_span, peer.SPAN_MODEL
    model, backend, told, views = parse_spec(spec)
    stream = {"stream": preset, "auto": "auto"}.get(told)
    note = ""
    if told == "auto":  # scores change with the estimator's weights, its reading of them and the policy
        weights = estimate.estimator_path()
        note = f"estimator={hashlib.sha1(weights.read_bytes()).hexdigest()[:12] if weights.exists() else None}" \
               f"|v{estimate.VERSION}|{estimate.POLICY}"
    return (lambda small, degraded: sharpen(degraded, model=model, backend=backend or "torch", stream=stream,
                                            ensemble=views)), note


def require_peer(available=None) -> None:
    """A peer (waifu2x unless ``available`` names another's check) is needed only to compute its scores or choose its
    noise level (stored ones print without it)."""
    ok, why = (available or peer.available)()
    if not ok:
        raise SystemExit(why)


def chosen_noise(preset: str, val_dir: Path, scores: Path) -> int:
    """waifu2x's noise level for a preset, picked on the validation photos (stored beside the scores it keys)."""
    store = scores / "waifu2x_noise.json"
    chosen = json.loads(store.read_text()) if store.exists() else {}
    key = pairs_key(preset)
    if key not in chosen:
        require_peer()
        val = load_images(val_dir) if val_dir.is_dir() else []
        if not val:
            raise SystemExit(f"choosing waifu2x's noise level needs the validation photos in {val_dir} (kd.data fetch)")
        chosen[key] = peer.choose_noise(val, preset)
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(chosen, indent=1))
    return chosen[key]


def evaluate(methods: dict[str, str], presets: list[str], eval_dir: Path, cache: Path, val_dir: Path,
             presets_for: dict[str, tuple[str, ...]] | None = None, scores: Path | None = None) -> pd.DataFrame:
    """One row per (method, image, preset); per-method scores are reused from ``scores`` (default: inside
    ``cache``) when nothing changed.

    ``presets_for`` limits a method (by name) to some presets.
    """
    presets_for = DEFAULT_PRESETS_FOR if presets_for is None else presets_for
    scores = cache / "scores" if scores is None else scores
    frames = []
    for preset in presets:
        pairs = eval_pairs(eval_dir, preset, cache)
        for method, spec in methods.items():
            if preset not in presets_for.get(method, presets):
                continue
            run, note = restorer(spec, preset, val_dir, scores)
            stored = scores / f"{method_key(spec, preset, note)}.csv"
            if stored.exists():
                frames.append(pd.read_csv(stored).assign(method=method))
                continue
            rows = []
            for name, small, degraded, clean in tqdm(pairs, desc=f"{preset:>6} {method}", leave=False):
                t = time.perf_counter()
                restored = run(small, degraded)
                rows.append({"preset": preset, "method": method, "image": name,
                             "seconds": time.perf_counter() - t, **all_metrics(restored, clean)})
            stored.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_csv(stored, index=False)
            frames.append(pd.DataFrame(rows))
    return pd.concat(frames, ignore_index=True)


def summarize(per_image: pd.DataFrame, methods: dict[str, str]) -> pd.DataFrame:
    """Mean metrics per (preset, method), gains over the degraded input, parameters and GFLOP per 720p frame."""
    table = per_image.groupby(["preset", "method"], sort=False)[["psnr", "ssim", "ms_ssim"]].mean()
    if "degraded input" in methods:
        base = table.xs("degraded input", level="method")
        presets = table.index.get_level_values("preset")
        with np.errstate(invalid="ignore"):  # clean: inf − inf, set to NaN below
            table["ΔPSNR"] = table["psnr"].to_numpy() - base["psnr"].reindex(presets).to_numpy()
        table["ΔSSIM"] = table["ssim"].to_numpy() - base["ssim"].reindex(presets).to_numpy()
        table.loc[np.isinf(table["ΔPSNR"]) | table["ΔPSNR"].isna(), "ΔPSNR"] = np.nan  # clean: the input is exact
    cost = {}
    for method, spec in methods.items():
        path, _, _, views = parse_spec(spec)
        if path.endswith(".pt"):  # the net that runs (a stream-aware one folded: its FiLM and experts cost nothing)
            net = plain(path)
            cost[method] = (count_params(net), round(views * gflops(net), 2))
        else:
            cost[method] = (0, 0.0)
    names = table.index.get_level_values("method")
    table["params"] = [cost[m][0] for m in names]
    table["GFLOP/720p"] = [cost[m][1] for m in names]
    return table.reset_index()


def gains_table(table: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """ΔPSNR per preset side by side, and the PSNR against the input on `clean` (harm shows as a low number).

    Without the degraded input among the methods there are no gains: the PSNR per preset is shown instead. Rows
    follow ``order`` (the methods as given), else their first appearance.
    """
    value = "ΔPSNR" if "ΔPSNR" in table else "psnr"
    wide = table.pivot(index="method", columns="preset", values=value)
    wide = wide[[p for p in PRESETS if p in wide.columns and p != "clean"]].add_prefix(f"{value} ")
    if "clean" in set(table.preset):
        wide.insert(0, "clean: PSNR to input", table[table.preset == "clean"].set_index("method")["psnr"])
    rows = order if order is not None else dict.fromkeys(table.method)
    return wide.reindex([m for m in rows if m in wide.index]).reset_index()


def worst_table(per_image: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Per method and preset, the worst image's ΔPSNR and how many images lost (ΔPSNR < 0), as "−0.054 (1)"; on
    `clean`, the lowest PSNR of an output to its input. A mean gain can hide a photo made worse: this shows it."""
    base = per_image[per_image.method == "degraded input"].set_index(["preset", "image"])["psnr"]
    cols = {}
    for (method, preset), g in per_image.groupby(["method", "preset"], sort=False):
        if preset == "clean":
            cols.setdefault("clean: worst PSNR to input", {})[method] = f"{g.psnr.min():+.3f}"
            continue
        if base.empty:
            continue
        gain = g.set_index(["preset", "image"])["psnr"] - base.reindex(pd.MultiIndex.from_frame(g[["preset", "image"]]))
        cols.setdefault(f"worst ΔPSNR (lost) {preset}", {})[method] = f"{gain.min():+.3f} ({int((gain < 0).sum())})"
    wide = pd.DataFrame(cols)
    wide = wide[[c for c in ["clean: worst PSNR to input", *(f"worst ΔPSNR (lost) {p}" for p in PRESETS)]
                 if c in wide.columns]]
    rows = order if order is not None else list(dict.fromkeys(per_image.method))
    return wide.reindex([m for m in rows if m in wide.index]).rename_axis("method").reset_index()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--eval-dir", type=Path, default=Path("data/eval"))
    ap.add_argument("--val-dir", type=Path, default=Path("data/val"), help="held-out photos (waifu2x noise choice)")
    ap.add_argument("--cache", type=Path, default=Path("data/eval_cache"), help="degraded pairs")
    ap.add_argument("--scores", type=Path, default=Path("results/eval_scores"),
                    help="per-method scores by key (in git: a fresh clone recomputes only what changed)")
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--presets-for", action="append", metavar="NAME=P1,P2", default=[],
                    help="run method NAME only at these presets (default: waifu2x at mild and medium, it is slow)")
    ap.add_argument("--method", action="append", metavar="NAME=MODEL",
                    help="evaluate these instead of the defaults (MODEL: checkpoint path[@backend][*N][+stream] (*N: "
                         "self-ensemble of N views; +stream: told each preset's stream), 'unsharp', 'waifu2x', 'span' or 'none')")
    ap.add_argument("--out", type=Path, default=Path("results"))
    a = ap.parse_args(argv)
    methods = dict(m.split("=", 1) for m in a.method) if a.method else dict(DEFAULT_METHODS)
    paths = [parse_spec(m)[0] for m in methods.values()]
    missing = [m for m in paths if m.endswith(".pt") and not Path(m).exists()]
    if missing:
        raise SystemExit(f"missing weights: {', '.join(missing)}")
    presets_for = dict(DEFAULT_PRESETS_FOR)
    for item in a.presets_for:
        name, _, which = item.partition("=")
        unknown = set(which.split(",")) - set(PRESETS)
        if name not in methods or unknown:
            ap.error(f"--presets-for {item}: unknown method or preset(s) {sorted(unknown)}")
        presets_for[name] = tuple(which.split(","))
    per_image = evaluate(methods, a.presets, a.eval_dir, a.cache, a.val_dir, presets_for, a.scores)
    table = summarize(per_image, methods)
    wide = gains_table(table, list(methods))
    a.out.mkdir(parents=True, exist_ok=True)
    per_image.to_csv(a.out / "eval_per_image.csv", index=False)
    table.to_csv(a.out / "eval.csv", index=False)
    worst = worst_table(per_image, list(methods))
    (a.out / "eval.md").write_text(table.to_markdown(index=False, floatfmt=".4f") + "\n\n"
                                   + wide.to_markdown(index=False, floatfmt="+.3f") + "\n\n"
                                   + worst.to_markdown(index=False) + "\n")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print()
        print(wide.to_string(index=False, float_format=lambda v: f"{v:+.3f}"))
        print()
        print(worst.to_string(index=False))
    print(f"\nwrote {a.out}/eval.csv, eval.md, eval_per_image.csv")


if __name__ == "__main__":
    main()
