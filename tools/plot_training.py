"""Plot validation gain per preset against training time from kd.train's JSON-lines logs, one panel per preset.

    python tools/plot_training.py results/training/*.log.jsonl --out docs/training_curve.png

Each log is one run, named by its file (say which device trained it in the name: ``student_kd_cpu``); the x axis is
the run's own training minutes on that device (``--hours`` for long runs resumed over several sessions: the logged
time adds up across resumes). ``--chain``: the logs are stages of one run (a blind teacher, then its stream-aware
continuation started with ``--init``), each placed after the last on the x axis. A stream-aware run's blind scores
(``blind_gain_*``) are drawn dashed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PRESETS = ("mild", "medium", "severe", "call")  # first, in this order; then any other validation set the logs hold


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/training_curve.png"))
    ap.add_argument("--hours", action="store_true", help="x axis in training hours instead of minutes")
    ap.add_argument("--chain", action="store_true", help="the logs are consecutive stages of one run")
    a = ap.parse_args(argv)
    unit, per_hour = ("hours", 1) if a.hours else ("minutes", 60)
    logs = {log: read_log(log) for log in a.logs}
    found = {k[len("gain_"):] for recs in logs.values() for k in recs[0] if k.startswith("gain_")}
    presets = [p for p in PRESETS if p in found] + sorted(found - set(PRESETS))  # (kd.train --call-data: call sets)
    fig, axes = plt.subplots(1, len(presets) + 1, figsize=(4 * (len(presets) + 1), 3.6))
    start = 0.0
    for log, recs in logs.items():
        elapsed = [start + r["hours"] * per_hour for r in recs]
        start = elapsed[-1] if a.chain else 0.0
        name = log.name.split(".")[0]
        for key, label, style in (("", name, "-"), ("blind_", f"{name} (blind)", "--")):
            if f"{key}clean_psnr" not in recs[0]:
                continue
            for ax, preset in zip(axes, presets):
                if f"{key}gain_{preset}" in recs[0]:
                    ax.plot(elapsed, [r[f"{key}gain_{preset}"] for r in recs], style, marker="o", ms=2, label=label)
            axes[-1].plot(elapsed, [r[f"{key}clean_psnr"] for r in recs], style, marker="o", ms=2, label=label)
    for ax, preset in zip(axes, presets):
        ax.set(xlabel=f"training {unit}", ylabel="ΔPSNR on held-out crops (dB)", title=f"`{preset}`")
    axes[-1].axhline(42, color="gray", ls="--", label="do-no-harm floor")
    axes[-1].set(xlabel=f"training {unit}", ylabel="PSNR output vs input (dB)", title="`clean` (uncored)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=100)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
