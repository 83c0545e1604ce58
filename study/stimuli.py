"""Render every (image, condition) stimulus once, deterministically, and record its SSIM/PSNR/MS-SSIM.

Renders are cached by content under ``cache/`` (named by image and condition, for the researcher); the copies
the browser gets live under ``serve/`` with opaque random names, so condition names never reach a rater. Only
``serve/`` may ever be given to the web server (``serve_dir``); the cache and the database stay outside it.
The instruction anchors are rendered from the separate ``[[training]]`` photos, so no anchor is a trial stimulus.
"""
from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from tqdm import tqdm

from kd.degrade import degrade
from kd.imagefile import read_image, rgb, skimage_photo, write
from kd.metrics import all_metrics
from kd.registry import weights_digest
from kd.sharpen import sharpen
from study import db
from study.config import ANCHOR_BEST, ANCHOR_WORST, GOLD, SKIMAGE_PREFIX, Condition, StudyConfig


def serve_dir(out: Path) -> Path:
    """The only folder of a study the web server may read: opaque rater-facing images, nothing else."""
    return Path(out) / "serve"


def load_source(path: str, crop: int) -> np.ndarray:
    img = skimage_photo(path[len(SKIMAGE_PREFIX):]) if path.startswith(SKIMAGE_PREFIX) else read_image(path)
    if isinstance(img, tuple):  # a stereo pair (stereo_motorcycle: left, right, disparity): its left view
        img = img[0]
    img = np.ascontiguousarray(rgb(img))
    if crop and min(img.shape[:2]) > crop:
        y, x = (img.shape[0] - crop) // 2, (img.shape[1] - crop) // 2
        img = np.ascontiguousarray(img[y: y + crop, x: x + crop])
    return img


def render(clean: np.ndarray, cond: Condition) -> np.ndarray:
    if cond.kind == "reference":
        return clean
    degraded = degrade(clean, cond.preset)
    return degraded if cond.kind == "degraded" else sharpen(degraded, model=cond.method())


def build(cfg: StudyConfig, engine: sa.Engine, out: Path) -> int:
    """Render and register all stimuli (gold ones included). Returns how many were rendered anew."""
    conds = list(cfg.conditions) + [Condition(GOLD, "degraded", cfg.gold_preset)]
    anchors = [Condition(ANCHOR_BEST, "reference"), Condition(ANCHOR_WORST, "degraded", cfg.gold_preset)]
    cache, serve = out / "cache", serve_dir(out)
    serve.mkdir(parents=True, exist_ok=True)
    made = 0
    jobs = [(im, conds, "trial") for im in cfg.images] + [(im, anchors, "anchor") for im in cfg.training]
    with engine.begin() as conn:
        settings = {"reference": cfg.reference.name if cfg.reference else None, "design": cfg.design,
                    "contrasts": json.dumps([list(p) for p in cfg.contrasts])}
        conn.execute(db.meta.delete().where(db.meta.c.key.in_(list(settings))))
        conn.execute(db.meta.insert(), [{"key": k, "value": v} for k, v in settings.items() if v is not None])
        known = {(r.image, r.condition): r for r in conn.execute(sa.select(db.stimuli))}
        for im, im_conds, role in tqdm(jobs, desc="stimuli", unit="image"):
            clean = load_source(im.path, cfg.crop)
            for cond in im_conds:
                version = weights_digest(cond.model) if cond.kind == "model" else "x"
                cached = cache / im.name / f"{cond.name}-{cond.kind}-{cond.preset}-{version}.png"
                if cached.exists():
                    img = read_image(cached)
                else:
                    img = render(clean, cond)
                    write(cached, img)
                    made += 1
                scores = all_metrics(img, clean)
                scores = {k: (None if not np.isfinite(v) else v) for k, v in scores.items()}
                row = known.get((im.name, cond.name))
                sid = row.id if row else secrets.token_hex(8)
                shutil.copyfile(cached, serve / f"{sid}.png")
                values = dict(path=str((serve / f"{sid}.png").resolve()), role=role, height=img.shape[0],
                              width=img.shape[1], **scores)
                if row:
                    conn.execute(db.stimuli.update().where(db.stimuli.c.id == sid).values(**values))
                else:
                    conn.execute(db.stimuli.insert().values(id=sid, image=im.name, condition=cond.name, **values))
    return made
