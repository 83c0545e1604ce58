"""Render every (image, condition) stimulus once, deterministically, and record its SSIM/PSNR/MS-SSIM.

Renders are cached by content under ``cache/`` (named by image and condition, for the researcher); the copies
the browser gets live under ``serve/`` with opaque random names, so condition names never reach a rater. Only
``serve/`` may ever be given to the web server (``serve_dir``); the cache and the database stay outside it.
The instruction anchors are rendered from the separate ``[[training]]`` photos, so no anchor is a trial stimulus.

A server builds them in the background (``BackgroundBuild``): it answers at once, and the Rate tab says the study
is being prepared, with the count rendered so far, until it is ready.
"""
from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

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


def jobs(cfg: StudyConfig) -> list[tuple]:
    """(source image, its conditions, role) for every photo: the trial conditions and gold on each rated photo, the
    two anchors on each training photo."""
    conds = list(cfg.conditions) + [Condition(GOLD, "degraded", cfg.gold_preset)]
    anchors = [Condition(ANCHOR_BEST, "reference"), Condition(ANCHOR_WORST, "degraded", cfg.gold_preset)]
    return [(im, conds, "trial") for im in cfg.images] + [(im, anchors, "anchor") for im in cfg.training]


def count(cfg: StudyConfig) -> int:
    """How many stimuli ``build`` makes."""
    return sum(len(conds) for _, conds, _ in jobs(cfg))


def build(cfg: StudyConfig, engine: sa.Engine, out: Path, progress: Callable[[int, int], None] | None = None) -> int:
    """Render and register all stimuli (gold ones included). Returns how many were rendered anew. ``progress``:
    called with (stimuli done, all) after each; without it a labelled bar shows on the terminal."""
    cache, serve = out / "cache", serve_dir(out)
    serve.mkdir(parents=True, exist_ok=True)
    made, done, total = 0, 0, count(cfg)
    todo = jobs(cfg)
    bar = tqdm(total=total, desc="Rating study: rendering stimuli", unit="stimulus", disable=progress is not None)
    with engine.begin() as conn:
        settings = {"reference": cfg.reference.name if cfg.reference else None, "design": cfg.design,
                    "contrasts": json.dumps([list(p) for p in cfg.contrasts])}
        conn.execute(db.meta.delete().where(db.meta.c.key.in_(list(settings))))
        conn.execute(db.meta.insert(), [{"key": k, "value": v} for k, v in settings.items() if v is not None])
        known = {(r.image, r.condition): r for r in conn.execute(sa.select(db.stimuli))}
        for im, im_conds, role in todo:
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
                done += 1
                bar.update()
                if progress:
                    progress(done, total)
    bar.close()
    return made


class BackgroundBuild:
    """``build`` in a thread, so a server answers at once. ``log`` gets "Rating study: rendering stimuli i/N" after
    each stimulus and a last line (ready, or why not); ``status()`` is what the Rate tab shows meanwhile. A failed
    build is logged in full but told to raters in neutral words (an error may name a condition)."""

    def __init__(self, cfg: StudyConfig, engine: sa.Engine, out: Path, log: Callable[[str], None] | None = None):
        self.cfg, self.engine, self.out = cfg, engine, Path(out)
        self.log = log or (lambda line: print(line, flush=True))
        self.done, self.total = 0, count(cfg)
        self.error: str | None = None
        self.started_at, self.finished_at = time.monotonic(), None
        self._finished = threading.Event()
        serve_dir(self.out).mkdir(parents=True, exist_ok=True)  # the web server is told to allow it at start
        self.log(f"Rating study: rendering {self.total} stimuli in the background")
        self.thread = threading.Thread(target=self._run, name="study-build", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            made = build(self.cfg, self.engine, self.out, progress=self._progress)
            self.log(f"Rating study: stimuli ready ({made} rendered now, "
                     f"{time.monotonic() - self.started_at:.0f} s)")
        except Exception as e:  # any failure: said in the log and on the Rate tab, not lost in a thread
            self.error = f"{type(e).__name__}: {e}"
            self.log(f"Rating study: could not render the stimuli: {self.error}")
        finally:
            self.finished_at = time.monotonic()
            self._finished.set()

    def _progress(self, done: int, total: int) -> None:
        self.done = done
        self.log(f"Rating study: rendering stimuli {done}/{total}")

    @property
    def ready(self) -> bool:
        return self._finished.is_set() and self.error is None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the build to end; whether the study is ready."""
        self._finished.wait(timeout)
        return self.ready

    def status(self) -> str:
        """For raters: empty when ready."""
        if self.failed:
            return "The study could not be prepared. Please come back later."
        if self.ready:
            return ""
        return (f"The study is being prepared… (rendering stimuli {self.done}/{self.total}). "
                "This page updates itself when it is ready.")
