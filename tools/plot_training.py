"""Plot validation gain per preset against training hours from kd.train's JSON-lines logs.

    python tools/plot_training.py results/training/teacher_gpu.log.jsonl results/training/student_gpu.log.jsonl \
        --out docs/training_curve.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/training_curve.png"))
    a = ap.parse_args(argv)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for log in a.logs:
        recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        hours = [r["hours"] * 60 for r in recs]
        name = log.name.split(".")[0]
        for key in sorted(k for k in recs[0] if k.startswith("gain_")):
            axes[0].plot(hours, [r[key] for r in recs], marker="o", ms=3, label=f"{name}: {key[5:]}")
        axes[1].plot(hours, [r["clean_psnr"] for r in recs], marker="o", ms=3, label=name)
    axes[0].set(xlabel="training minutes (GPU)", ylabel="ΔPSNR on held-out crops (dB)",
                title="Validation gain per preset")
    axes[1].axhline(42, color="gray", ls="--", label="do-no-harm floor (42 dB)")
    axes[1].set(xlabel="training minutes (GPU)", ylabel="PSNR output vs input (dB)", title="Clean frames: harm")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
