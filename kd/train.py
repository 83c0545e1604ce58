"""Train a teacher, or distil a student from one. One readable loop.

    python -m kd.train --model teacher --steps 8000 --out runs/teacher.pt
    python -m kd.train --model student-rep --teacher runs/teacher.best.pt --out runs/student.pt
    python -m kd.train --model student --no-kd --out runs/student_nokd.pt     # ablation
    python -m kd.train --model student-rep --teacher-labels data/teacher_labels.npz --out runs/s.pt  # kd.labels
    python -m kd.train --model teacher-gpu --minutes 5 --data data/train_shard.npz --out runs/t.pt   # a time budget
    torchrun --nproc_per_node 4 -m kd.train --model teacher-gpu ...           # DDP (NCCL on GPU, gloo on CPU)

Teacher loss: Charbonnier + w·(1 − MS-SSIM). Student loss with a teacher:
α·D(student, teacher) + (1−α)·D(student, clean) + w·feature distillation (1×1 adapters), D = L1 or MSE.

Every ``--eval-every`` steps the EMA of the weights is scored on held-out validation pairs at every preset; the
best by ``score`` (below) is kept in ``OUT.best.pt`` (weights only), the latest full state in ``OUT`` (for --resume).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from kd import calldata, checkpoint, recipe
from kd.data import PatchDataset, load_training, to_tensor
from kd.degrade import preset, stream_condition
from kd.labels import LabelledPatches, load_labels
from kd.losses import MSSSIM_MIN_SIDE, FeatureAdapters, distillation_loss, restoration_loss
from kd.models import CONFIGS, GROWN_MODULES, build, config_of, is_student, stream_aware

CLEAN_PSNR_FLOOR = 42.0  # dB between output and input on undegraded frames: RMS change under 2 levels


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.train", description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=None,
                    help="a TOML file of these flags (recipes/*.toml, kd.recipe); flags given here override it")
    ap.add_argument("--model", default="teacher", choices=sorted(CONFIGS), help="architecture config to train")
    ap.add_argument("--model-config", type=json.loads, default=None,
                    help='override the architecture as JSON, e.g. \'{"arch": "student", "width": 24}\'')
    ap.add_argument("--stream-aware", action="store_true",
                    help="tell the net its stream (scale, codec strength: kd.models.StreamFiLM), folded away per stream to run")
    ap.add_argument("--blind-share", type=float, default=0.2,
                    help="share of training pairs whose stream is not told (a stream-aware net must work blind too)")
    ap.add_argument("--scale-only-share", type=float, default=0.2,
                    help="share of the told pairs told only their scale, not the codec (what a call's receiver knows)")
    ap.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint: distil from it (students only)")
    ap.add_argument("--teacher-labels", type=Path, default=None,
                    help="distil from teacher outputs stored by `python -m kd.labels` instead of running the teacher")
    ap.add_argument("--no-kd", action="store_true", help="train a student on clean targets only (ablation)")
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of D(student, teacher) vs D(student, clean)")
    ap.add_argument("--feature-weight", type=float, default=0.0, help="weight of feature distillation (0 = off)")
    ap.add_argument("--pixel-loss", default="mse", choices=["l1", "mse"], help="students: distance D in the KD loss")
    ap.add_argument("--msssim-weight", type=float, default=0.2, help="teacher: weight of 1 − MS-SSIM")
    ap.add_argument("--data", type=Path, default=Path("data/train"), help="folder of photos or a packed .npz shard")
    ap.add_argument("--val-data", type=Path, default=Path("data/val"), help="held-out photos (folder data only)")
    ap.add_argument("--call-data", type=Path, default=None,
                    help="a call shard (`python -m kd.calldata pack`): train on call video too, validate on its sets")
    ap.add_argument("--call-share", type=float, default=0.4, help="share of training pairs from --call-data")
    ap.add_argument("--degradation", default="random", help="'random' (training distribution) or a preset name")
    ap.add_argument("--ladder-share", type=float, default=0.0,
                    help="share of the scaled training pairs scaled by a step of a WebRTC sender's ladder "
                         "(kd.degrade.CALL_LADDER: ÷4/3, ÷2, ÷8/3, ÷4) instead of uniformly in 1.1-4")
    ap.add_argument("--zoom", type=float, default=3.0,
                    help="zoom photos out by up to this factor before cropping (call-frame detail; 1 = off)")
    ap.add_argument("--steps", type=int, default=8000, help="length of the schedule in steps")
    ap.add_argument("--minutes", type=float, default=None,
                    help="length of the schedule in wall-clock minutes instead (stops when either is reached)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay of the weights that are validated (0 = off)")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers making patches")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="checkpoint path (written every --save-every steps)")
    ap.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from these weights with a fresh optimizer and schedule (e.g. a shipped .pt)")
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--best-fp16", action="store_true", help="store OUT.best.pt in float16 (half the size)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                    help="bf16 autocast (default: on CUDA; slower than fp32 on CPUs without AMX)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                    help="channels_last memory format (25-33%% faster in fp32 on CPU, faster on GPU)")
    ap.add_argument("--log", type=Path, default=None, help="JSON-lines log (default: OUT with .log.jsonl)")
    recipe.apply(ap, argv)
    a = ap.parse_args(argv)
    if a.teacher_labels and (a.teacher or a.no_kd or a.feature_weight > 0):
        ap.error("--teacher-labels distils from stored outputs: not with --teacher, --no-kd or --feature-weight")
    if a.teacher and a.no_kd:
        ap.error("--teacher and --no-kd contradict each other")
    if a.resume and a.init:
        ap.error("--resume continues OUT; --init starts afresh from other weights: choose one")
    return a


def interrupt(signum, frame):
    """SIGTERM handler: stop the way Ctrl-C does. A background job ignores SIGINT, and `kill` sends SIGTERM."""
    raise KeyboardInterrupt


def leave_sigterm_to_the_main(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM: when a session ends, the whole process group gets it, and a worker dying
    first makes the main process raise "worker killed" instead of saving. Workers still exit with the main."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def lr_at(step: int, progress: float, a) -> float:
    """Linear warm-up over the first ``warmup`` steps, times a cosine decay to 1% of the peak over progress in [0, 1]."""
    warm = min(1.0, (step + 1) / max(1, a.warmup))
    return a.lr * warm * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def score(metrics: dict) -> float:
    """The aggregate that picks the best checkpoint: mean PSNR gain over the damaged presets, minus each dB that
    the clean preset falls below the do-no-harm floor, minus any preset's loss (a restorer that makes light
    damage worse must not win by gaining on heavy damage)."""
    gains = [v for k, v in metrics.items() if k.startswith("gain_")]
    harm = max(0.0, CLEAN_PSNR_FLOOR - metrics["clean_psnr"]) if "clean_psnr" in metrics else 0.0
    harm += sum(max(0.0, -g) for g in gains)
    return float(np.mean(gains)) - harm if gains else -harm


@torch.no_grad()
def validate(model: nn.Module, val: dict, device, autocast, chunk: int = 8, told: bool = True) -> dict:
    """PSNR gain over the degraded input per preset, and on `clean` the PSNR of the output against its input.

    A stream-aware net is told each preset's stream (as a receiver knows its own) and scored a second time blind
    (``blind_*`` keys, not in the score): uploads come without a stream.
    """
    model.eval()
    out = {}
    for name, (degraded, clean, *streams) in val.items():  # call sets carry each pair's own stream
        se_in = se_out = 0.0
        for i in range(0, len(clean), chunk):
            x, y = to_tensor(degraded[i: i + chunk]).to(device), to_tensor(clean[i: i + chunk]).to(device)
            stream = (streams[0][i: i + chunk] if streams else stream_condition(name)) if told else None
            with autocast:
                r = model(x, stream=stream)
            r = (r.float().clamp(0, 1) * 255).round() / 255  # score what a user would save: 8-bit
            se_in += ((x - y) ** 2).sum().item()
            se_out += ((r - y) ** 2).sum().item()
        n = clean.size
        if name == "clean":
            out["clean_psnr"] = round(min(99.0, 10 * math.log10(n / max(se_out, 1e-12))), 3)  # 99: unchanged
        else:
            out[f"gain_{name}"] = round(10 * math.log10(se_in / max(se_out, 1e-12)), 4)
    out["score"] = round(score(out), 4)
    if told and stream_aware(model):
        out |= {f"blind_{k}": v for k, v in validate(model, val, device, autocast, chunk, told=False).items()}
    return out


class WithAdapters(nn.Module):
    """A student and its feature adapters as one module, so DDP all-reduces both (the adapters are trained too)."""

    def __init__(self, model: nn.Module, adapters: FeatureAdapters | None):
        super().__init__()
        self.model, self.adapters = model, adapters

    def forward(self, x, teacher_feats=None, stream=None):
        if self.adapters is None or teacher_feats is None:
            return self.model(x, stream=stream), None
        out, feats = self.model(x, return_features=True, stream=stream)
        return out, self.adapters(feats, teacher_feats)


def ema_avg(decay: float):
    """EMA with a warm-up (decay grows as (1+n)/(10+n) until it reaches ``decay``), so short runs are not all init."""
    def avg(averaged, current, n):
        d = min(decay, (1 + n) / (10 + n))
        return d * averaged + (1 - d) * current
    return avg


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
    torch.backends.cudnn.benchmark = True
    amp = a.amp if a.amp is not None else device.type == "cuda"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format

    # --- models ---------------------------------------------------------------------------------
    try:
        config = dict(CONFIGS[a.model] if a.model_config is None else a.model_config)
        name = a.model if a.model_config is None else str(config.get("arch"))  # what is trained, named in the log
        model = build(config | {"stream": True} if a.stream_aware else config)
    except (ValueError, TypeError) as e:  # an unknown architecture or config key: say which, no traceback
        raise SystemExit(f"--model-config: {e}") from None
    student = is_student(config_of(model))
    if (a.teacher or a.teacher_labels) and not student:
        raise SystemExit("--teacher/--teacher-labels are for distilling students; this architecture is a teacher")
    if not student and a.msssim_weight > 0 and a.patch < MSSSIM_MIN_SIDE:  # say so before the data loads, not mid-step
        raise SystemExit(f"--patch {a.patch} is too small for the MS-SSIM loss (needs >= {MSSSIM_MIN_SIDE} px): "
                         f"raise --patch or pass --msssim-weight 0")
    if a.init:  # a net grows from a smaller one: its FiLM, (more) experts or context branch start at the identity
        state = checkpoint.load_state(a.init, prefer_ema=True)["model"]
        if getattr(model, "experts", None) is not None:  # more experts than the net grown from: the new ones start idle
            state = model.experts.grown_from(state)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith(GROWN_MODULES) for k in missing):
            raise SystemExit(f"--init {a.init} does not fit this architecture (missing {missing}, unexpected {unexpected})")
    model = model.to(device, memory_format=fmt)
    teacher = adapters = None
    if a.teacher:
        teacher = checkpoint.load_model(a.teacher).to(device, memory_format=fmt).requires_grad_(False)
        if a.feature_weight > 0:
            with torch.no_grad():
                probe = torch.zeros(1, 3, 64, 64, device=device)
                s_feats = model(probe, return_features=True)[1]
                t_feats = teacher(probe, return_features=True)[1]
            adapters = FeatureAdapters([f.shape[1] for f in s_feats], [f.shape[1] for f in t_feats]).to(device)
    trainable = WithAdapters(model, adapters)
    opt = torch.optim.AdamW(trainable.parameters(), lr=a.lr, weight_decay=a.weight_decay, betas=(0.9, 0.99))
    ema = AveragedModel(model, avg_fn=ema_avg(a.ema)) if a.ema > 0 else None
    step, trained_s, best = 0, 0.0, -math.inf
    log_path = a.log or a.out.with_suffix(".log.jsonl")
    best_path = a.out.with_suffix(".best.pt")
    if a.resume and a.out.exists():
        ckpt = checkpoint.load_state(a.out)
        if config_of(build(ckpt["config"])) != config_of(model):  # (keys added since then take their defaults)
            raise SystemExit(f"--resume: {a.out} holds {ckpt['config']}, these flags build {config_of(model)}")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if adapters is not None and ckpt.get("adapters"):
            adapters.load_state_dict(ckpt["adapters"])
        if ema is not None and ckpt.get("ema"):
            ema.load_state_dict(ckpt["ema"])
        step, trained_s, best = ckpt["step"], ckpt.get("trained_seconds", 0.0), ckpt.get("best_score", -math.inf)
        if master:
            print(f"resumed {a.out} at step {step} ({trained_s / 3600:.2f} h trained)")
    net = DDP(trainable, device_ids=[device.index] if device.type == "cuda" else None) if ddp else trainable

    # --- data -----------------------------------------------------------------------------------
    data = load_training(a.data, a.val_data, a.patch)
    call_pairs = []
    if a.call_data:
        call_pairs, call_val = calldata.load(a.call_data)
        data.val |= call_val
    degradation = None if a.degradation == "random" else preset(a.degradation)
    if a.teacher_labels:  # stored (degraded, clean, teacher) triples; the photos only give the validation pairs
        ds = LabelledPatches(load_labels(a.teacher_labels), a.patch, seed=a.seed * 1000 + step, rank=rank)
    else:
        ds = PatchDataset(data.images, a.patch, seed=a.seed * 1000 + step, rank=rank, degradation=degradation,
                          weights=data.weights, codec_pairs=data.codec_pairs, zoom=a.zoom, blind_share=a.blind_share,
                          scale_only_share=a.scale_only_share, ladder_share=a.ladder_share,  # a new stream on resume
                          call_pairs=call_pairs, call_share=a.call_share)
    main_thread = threading.current_thread() is threading.main_thread()
    on_child = signal.getsignal(signal.SIGCHLD) if main_thread else None  # the DataLoader replaces it (see the end)
    loader = iter(torch.utils.data.DataLoader(ds, batch_size=a.batch, num_workers=a.workers,
                                              pin_memory=device.type == "cuda", persistent_workers=a.workers > 0,
                                              worker_init_fn=leave_sigterm_to_the_main))
    if master:
        print(json.dumps({"config": config_of(model), "student": student, "images": len(data.images),
                          "codec_pairs": len(data.codec_pairs), "call_pairs": len(call_pairs), "val_presets": sorted(data.val),
                          **{k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()}, "model": name}))

    # --- loop -----------------------------------------------------------------------------------
    def save():
        checkpoint.save(a.out, model, optimizer=opt.state_dict(), step=step, trained_seconds=trained_s,
                        best_score=best, ema=ema.state_dict() if ema is not None else None,
                        adapters=adapters.state_dict() if adapters is not None else None,
                        args={k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()})

    def progress() -> float:
        p = step / a.steps
        return max(p, run_s / (60 * a.minutes)) if a.minutes else p

    def finished() -> bool:
        return progress() >= 1.0

    net.train()
    bar = tqdm(total=a.steps, initial=step, disable=not master, desc=f"train {name}", unit="step")
    t0, seen, run_s = time.time(), 0, 0.0
    on_term = None
    if threading.current_thread() is threading.main_thread():  # `kill PID`, or a session ending, saves like Ctrl-C
        on_term = signal.signal(signal.SIGTERM, interrupt)
    try:
        while not finished():
            t_step = time.time()
            x, y, stream, *stored = (t.to(device, non_blocking=True) for t in next(loader))
            x, y, *stored = (t.contiguous(memory_format=fmt) for t in (x, y, *stored))
            lr = lr_at(step, progress(), a)
            for g in opt.param_groups:
                g["lr"] = lr
            with autocast:
                if not student:
                    loss = restoration_loss(net(x, stream=stream)[0], y, a.msssim_weight)
                elif stored:  # --teacher-labels: the teacher's output came with the batch
                    loss = distillation_loss(net(x, stream=stream)[0], y, stored[0], a.alpha, pixel=a.pixel_loss)
                elif teacher is not None:
                    with torch.no_grad():
                        t_out, t_feats = teacher(x, return_features=True, stream=stream)
                    out, feat = net(x, t_feats, stream=stream)
                    loss = distillation_loss(out, y, t_out, a.alpha, feat, a.feature_weight, a.pixel_loss)
                else:
                    loss = distillation_loss(net(x, stream=stream)[0], y, pixel=a.pixel_loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if a.grad_clip:
                torch.nn.utils.clip_grad_norm_(trainable.parameters(), a.grad_clip)
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            seen += x.shape[0] * world
            if device.type == "cuda" and step % 50 == 0:
                torch.cuda.synchronize()
            dt = time.time() - t_step
            trained_s += dt
            run_s = time.time() - t0
            bar.update(1)
            if master and step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.1e}")
            if master and (step % a.eval_every == 0 or finished()):
                rec = {"step": step, "hours": round(trained_s / 3600, 4), "loss": round(loss.item(), 5), "lr": lr,
                       "patches_per_s": round(seen / max(run_s, 1e-9), 1),
                       **validate(ema.module if ema is not None else model, data.val, device, autocast)}
                if rec["score"] > best:
                    best = rec["score"]
                    checkpoint.save(best_path, ema.module if ema is not None else model,
                                    dtype=torch.float16 if a.best_fp16 else None,
                                    meta={"step": step, "hours": rec["hours"], "validation": rec})
                    rec["best"] = True
                with open(log_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                tqdm.write(json.dumps(rec))
                net.train()
            if master and (step % a.save_every == 0 or finished()):
                save()
    except KeyboardInterrupt:  # keep what was learned: --resume continues from here
        if master:
            save()
            tqdm.write(f"interrupted: saved step {step} to {a.out}")
    finally:
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
        # Stop the patch workers and give SIGCHLD back: PyTorch's DataLoader leaves its own handler installed, and in
        # a process that goes on (a test run, a notebook) a later subprocess's exit then ran it and crashed Python.
        del loader
        if main_thread:
            signal.signal(signal.SIGCHLD, on_child)
    bar.close()
    if ddp:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
