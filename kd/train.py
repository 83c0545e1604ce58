"""Train a teacher, or distil a student from one. One readable loop.

    python -m kd.train --model teacher --steps 8000 --out runs/teacher.pt
    python -m kd.train --model student --teacher runs/teacher.pt --out runs/student.pt
    python -m kd.train --model student --no-kd --out runs/student_nokd.pt     # ablation
    torchrun --nproc_per_node 4 -m kd.train --model teacher-gpu ...           # DDP (NCCL on GPU, gloo on CPU)

Teacher loss: Charbonnier + w·(1 − MS-SSIM). Student loss with a teacher:
α·L1(student, teacher) + (1−α)·L1(student, clean) + w·feature distillation (1×1 adapters).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from kd import checkpoint
from kd.data import PatchDataset, load_source
from kd.degrade import preset
from kd.losses import FeatureAdapters, distillation_loss, restoration_loss
from kd.models import CONFIGS, build


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.train", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="teacher", choices=sorted(CONFIGS), help="architecture config to train")
    ap.add_argument("--model-config", type=json.loads, default=None,
                    help='override the architecture as JSON, e.g. \'{"arch": "student", "width": 24}\'')
    ap.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint: distil from it (students only)")
    ap.add_argument("--no-kd", action="store_true", help="train a student on clean targets only (ablation)")
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of L1 to the teacher vs L1 to clean")
    ap.add_argument("--feature-weight", type=float, default=0.1, help="weight of feature distillation (0 = off)")
    ap.add_argument("--pixel-loss", default="l1", choices=["l1", "mse"], help="students: distance D in the KD loss")
    ap.add_argument("--msssim-weight", type=float, default=0.2, help="teacher: weight of 1 − MS-SSIM")
    ap.add_argument("--data", type=Path, default=Path("data/train"), help="folder of photos or a packed .npz shard")
    ap.add_argument("--degradation", default="random", help="'random' (training distribution) or a preset name")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers making patches")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="checkpoint path (written every --save-every steps)")
    ap.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: on CUDA)")
    ap.add_argument("--log", type=Path, default=None, help="JSON-lines log (default: OUT with .log.jsonl)")
    a = ap.parse_args(argv)
    if a.teacher and a.no_kd:
        ap.error("--teacher and --no-kd contradict each other")
    if a.model.startswith("teacher") and a.teacher:
        ap.error("--teacher is for distilling students")
    return a


def lr_at(step: int, a) -> float:
    """Linear warm-up, then cosine decay to 1% of the peak."""
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    t = (step - a.warmup) / max(1, a.steps - a.warmup)
    return a.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def validation_batch(images, patch: int, seed: int, n: int = 32):
    """A fixed batch at the 'medium' preset to watch progress (PSNR gain over the degraded input)."""
    ds = PatchDataset(images, patch, seed=seed + 10_000, degradation=preset("medium"))
    pairs = [p for p, _ in zip(iter(ds), range(n))]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


@torch.no_grad()
def validate(model, batch, device) -> dict:
    model.eval()
    x, y = (t.to(device) for t in batch)
    out = model(x).clamp(0, 1)
    gain = 10 * torch.log10(((x - y) ** 2).mean() / ((out - y) ** 2).mean()).item()
    model.train()
    return {"val_psnr_gain_db": round(gain, 4)}


def main(argv=None):
    a = parse_args(argv)
    ddp = "RANK" in os.environ
    if ddp:
        dist.init_process_group("nccl" if a.device.startswith("cuda") else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if a.device.startswith("cuda"):
            a.device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(a.device)
    else:
        rank, world = 0, 1
    master = rank == 0
    if a.threads:
        torch.set_num_threads(a.threads)
    random.seed(a.seed + rank)
    np.random.seed(a.seed + rank)
    torch.manual_seed(a.seed + rank)
    device = torch.device(a.device)
    amp = a.amp if a.amp is not None else device.type == "cuda"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()

    # --- models ---------------------------------------------------------------------------------
    model = build(a.model_config or a.model).to(device)
    is_student = not a.model.startswith("teacher") or (a.model_config or {}).get("arch") in ("student", "seed")
    teacher = adapters = None
    if a.teacher:
        teacher = checkpoint.load_model(a.teacher).to(device).requires_grad_(False)
        with torch.no_grad():
            probe = torch.zeros(1, 3, 64, 64, device=device)
            s_feats = model(probe, return_features=True)[1]
            t_feats = teacher(probe, return_features=True)[1]
        adapters = FeatureAdapters([f.shape[1] for f in s_feats], [f.shape[1] for f in t_feats]).to(device)
    params = list(model.parameters()) + (list(adapters.parameters()) if adapters else [])
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.weight_decay, betas=(0.9, 0.99))

    step, log_path = 0, a.log or a.out.with_suffix(".log.jsonl")
    if a.resume and a.out.exists():
        ckpt = checkpoint.load_state(a.out)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if adapters and ckpt.get("adapters"):
            adapters.load_state_dict(ckpt["adapters"])
        step = ckpt["step"]
        if master:
            print(f"resumed {a.out} at step {step}")
    raw_model = model
    if ddp:
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    # --- data -----------------------------------------------------------------------------------
    images = load_source(a.data, a.patch)
    degradation = None if a.degradation == "random" else preset(a.degradation)
    ds = PatchDataset(images, a.patch, seed=a.seed * 1000 + step, rank=rank, degradation=degradation)  # new stream on resume
    loader = iter(torch.utils.data.DataLoader(ds, batch_size=a.batch, num_workers=a.workers,
                                              pin_memory=device.type == "cuda",
                                              persistent_workers=a.workers > 0))
    val = validation_batch(images, a.patch, a.seed) if master else None

    # --- loop -----------------------------------------------------------------------------------
    def save():
        checkpoint.save(a.out, raw_model, optimizer=opt.state_dict(), step=step, args=vars(a) | {"data": str(a.data),
                        "out": str(a.out), "teacher": str(a.teacher) if a.teacher else None, "log": str(log_path)},
                        adapters=adapters.state_dict() if adapters else None)

    model.train()
    bar = tqdm(total=a.steps, initial=step, disable=not master, desc=f"train {a.model}", unit="step")
    t0, seen = time.time(), 0
    try:
        while step < a.steps:
            x, y = (t.to(device, non_blocking=True) for t in next(loader))
            for g in opt.param_groups:
                g["lr"] = lr_at(step, a)
            with autocast:
                if not is_student:
                    loss = restoration_loss(model(x), y, a.msssim_weight)
                elif teacher is not None:
                    with torch.no_grad():
                        t_out, t_feats = teacher(x, return_features=True)
                    out, s_feats = model(x, return_features=True)
                    feat = adapters(s_feats, t_feats) if a.feature_weight > 0 else None
                    loss = distillation_loss(out, y, t_out, a.alpha, feat, a.feature_weight, a.pixel_loss)
                else:
                    loss = distillation_loss(model(x), y, pixel=a.pixel_loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if a.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
            opt.step()
            step += 1
            seen += x.shape[0] * world
            bar.update(1)
            if master and (step % 10 == 0):
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr_at(step, a):.1e}")
            if master and (step % a.eval_every == 0 or step == a.steps):
                rec = {"step": step, "loss": round(loss.item(), 5), "lr": lr_at(step, a),
                       "patches_per_s": round(seen / (time.time() - t0), 1), **validate(raw_model, val, device)}
                with open(log_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                tqdm.write(json.dumps(rec))
            if master and (step % a.save_every == 0 or step == a.steps):
                save()
    except KeyboardInterrupt:  # keep what was learned: --resume continues from here
        if master:
            save()
            tqdm.write(f"interrupted: saved step {step} to {a.out}")
    bar.close()
    if ddp:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
