"""Train the stream estimator (``kd.models.StreamEstimator``) on known degradations of the training photos.

    python -m kd.train_estimator --seed 0 --out weights/estimator.pt   # the shipped weights: ~13 min on one core

Each sample is a zoomed-out region of a training photo (call-frame detail density, as the restorers train),
degraded by ``kd.degrade.random_degradation`` (the restorers' training distribution, calls' downscale steps on
half of the scaled ones), and cut into crops by ``kd.estimate.pick_crops``, as a frame is at inference. The samples
are made once and reduced to the estimator's fixed features (degrading is the slow part); its MLP then trains on
them for many passes (8 000 samples overfitted: validation loss −3.98 against −4.8 in training; 40 000 read the
scale 1.5× closer). The loss is
a Laplace negative log-likelihood for the scale and the codec strength (so the net also says how unsure it is:
``kd.estimate`` leans toward milder damage by that much) and cross-entropy for the codec. The validation photos
(never the evaluation set) at fixed seeds pick the best step. The same seed gives the same weights on one machine.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kd import checkpoint
from kd.data import load_images, zoomed_crop
from kd.degrade import PRESETS, degrade, random_degradation
from kd.estimate import CROP, pick_crops, read_outputs, targets
from kd.models import StreamEstimator
from tqdm import tqdm

REGION = 4 * CROP + CROP // 2  # a training sample's side: room for 4 crops at any grid origin
CROPS_PER_SAMPLE = 4


def sample(images: list[np.ndarray], rng: np.random.Generator, d=None) -> tuple[np.ndarray, tuple]:
    """(K×3×S×S crops, targets) of one random region of a random photo, degraded by ``d`` (default: drawn)."""
    img = images[int(rng.integers(len(images)))]
    region = zoomed_crop(img, min(REGION, *img.shape[:2]), 3.0, rng)
    d = random_degradation(rng, clean_share=0.15, ladder_share=0.5) if d is None else d
    crops = pick_crops(degrade(region, d).astype(np.float32) / 255, CROPS_PER_SAMPLE, CROP, rng)
    return crops, targets(d)


def batch(items: list[tuple[np.ndarray, tuple]]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.stack([c for c, _ in items]))
    y = torch.tensor([t for _, t in items], dtype=torch.float32)
    return x, y


def laplace_nll(mu: torch.Tensor, log_b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    log_b = log_b.clamp(-7, 2)
    return (y - mu).abs() / log_b.exp() + log_b


def loss_of(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Scale NLL on every sample, codec cross-entropy, each strength's NLL on its own codec's samples."""
    codec = y[:, 1].long()
    loss = laplace_nll(out[:, 0], out[:, 1], y[:, 0]).mean() + F.cross_entropy(out[:, 2:5], codec)
    for cls, (mu, log_b, col) in ((1, (5, 6, 2)), (2, (7, 8, 3))):
        m = codec == cls
        if m.any():
            loss = loss + laplace_nll(out[m, mu], out[m, log_b], y[m, col]).mean()
    return loss


def validation_set(images: list[np.ndarray], seed: int = 10_000, per_photo: int = 12):
    """Fixed samples of the validation photos: every preset but clean once, then random streams (fixed seeds)."""
    items = []
    for i in range(len(images)):
        rng = np.random.default_rng(seed + i)
        for d in [*(PRESETS[p] for p in PRESETS if p != "clean"), *([None] * per_photo)]:
            items.append(sample(images[i:i + 1], rng, d))
    return items


@torch.no_grad()
def features(model: StreamEstimator, items: list[tuple[np.ndarray, tuple]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The estimator's fixed features and the targets of samples: what its MLP trains on."""
    x, y = batch(items)
    return model.features(x.numpy()), y


def pool(model: StreamEstimator, images: list[np.ndarray], n: int, rng: np.random.Generator, chunk: int = 64):
    """``n`` fresh training samples as features and targets (made once: degrading is the slow part)."""
    parts = [features(model, [sample(images, rng) for _ in range(min(chunk, n - i))])
             for i in tqdm(range(0, n, chunk), desc="training samples", unit_scale=chunk)]
    return torch.cat([f for f, _ in parts]), torch.cat([t for _, t in parts])


@torch.no_grad()
def scores(model: StreamEstimator, val: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """Codec accuracy, scale error (log2), JPEG quality and video QP errors on the validation samples."""
    feats, y = val
    out = model.mlp(feats)
    guesses = read_outputs(out)
    codec = y[:, 1].long()
    pred = torch.tensor([int(np.argmax(g.codec_probs)) for g in guesses])
    log_scale = torch.tensor([g.log_scale for g in guesses])
    jpeg = codec == 1
    video = codec == 2
    return {"loss": float(loss_of(out, y)), "codec_acc": float((pred == codec).float().mean()),
            "scale_mae_log2": float((log_scale - 2 * y[:, 0]).abs().mean()),
            "jpeg_q_mae": float(90 * (out[jpeg, 5] - y[jpeg, 2]).abs().mean()) if jpeg.any() else math.nan,
            "video_qp_mae": float(51 * (out[video, 7] - y[video, 3]).abs().mean()) if video.any() else math.nan}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kd.train_estimator", description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, default=Path("data/train"))
    ap.add_argument("--val", type=Path, default=Path("data/val"))
    ap.add_argument("--out", type=Path, default=Path("weights/estimator.pt"))
    ap.add_argument("--log", type=Path, default=Path("results/training/estimator.log.jsonl"))
    ap.add_argument("--samples", type=int, default=40000, help="training samples (degraded regions) to make")
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--val-every", type=int, default=250)
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    model = StreamEstimator()
    val = features(model, validation_set(load_images(a.val, min_side=CROP)))
    feats, targets_ = pool(model, load_images(a.train, min_side=CROP), a.samples, rng)
    opt = torch.optim.AdamW(model.mlp.parameters(), lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=a.steps, pct_start=0.05)
    a.log.parent.mkdir(parents=True, exist_ok=True)
    best, start = math.inf, time.time()
    with a.log.open("w") as log:
        for step in range(1, a.steps + 1):
            idx = torch.randint(len(feats), (a.batch,))
            loss = loss_of(model.mlp(feats[idx]), targets_[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if step % a.val_every == 0 or step == a.steps:
                model.eval()
                s = scores(model, val) | {"step": step, "minutes": round((time.time() - start) / 60, 2),
                                          "train_loss": loss.item()}
                model.train()
                log.write(json.dumps(s) + "\n")
                log.flush()
                print(s, flush=True)
                if s["loss"] < best:
                    best = s["loss"]
                    checkpoint.save(a.out, model, meta={"step": step, "seed": a.seed, "val": s, "args": {
                        k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()}})
    print(f"best validation loss {best:.4f}; wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
