"""Who sees what next: the rating session logic, on top of the database (no UI here).

Each rater gets a logged random seed. Their trial kinds (main, gold, repeat) are shuffled from it, every main
trial takes the pair with the fewest votes so far (counting trials assigned but not yet answered), and the
left/right sides are drawn from it too. A trial is stored as assigned before it is shown, so a refresh or a
second tab shows the same trial, and a vote is stored once per trial however often it is sent.
"""
from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import sqlalchemy as sa

from study import db
from study.config import StudyConfig
from study.stimuli import GOLD

PREFERENCES = ("a", "b", "none")


@dataclass(frozen=True)
class Trial:
    index: int
    kind: str
    image: str
    condition_a: str
    condition_b: str
    stimulus_a: str  # opaque ids: what the browser may see
    stimulus_b: str


class Study:
    def __init__(self, cfg: StudyConfig, engine: sa.Engine):
        self.cfg, self.engine = cfg, engine
        names = [c.name for c in cfg.conditions]
        self.pairs = [(im.name, a, b) for im in cfg.images for a, b in itertools.combinations(names, 2)]
        self.n_gold = round(cfg.trials_per_rater * cfg.gold_share) if cfg.reference else 0
        self.n_repeat = round(cfg.trials_per_rater * cfg.repeat_share)
        self.total = cfg.trials_per_rater + self.n_gold + self.n_repeat
        with engine.connect() as conn:
            rows = conn.execute(sa.select(db.stimuli.c.id, db.stimuli.c.image, db.stimuli.c.condition)).all()
        self.stimulus = {(r.image, r.condition): r.id for r in rows}
        missing = [(im, c) for im, a, b in self.pairs for c in (a, b) if (im, c) not in self.stimulus]
        if missing:
            raise RuntimeError(f"stimuli missing for {missing[:3]}…: run `python -m study build {cfg.path}` first")

    # --- raters -------------------------------------------------------------------------------
    def start(self, rater: str, seed: int | None = None) -> None:
        """Register a rater (idempotent): their seed is drawn once (or given, to replay a session) and kept."""
        rater = rater.strip()
        if not rater or len(rater) > 128:
            raise ValueError("a rater id must be 1-128 characters")
        with self.engine.begin() as conn:
            if conn.execute(sa.select(db.raters.c.id).where(db.raters.c.id == rater)).first():
                return
            try:
                with conn.begin_nested():
                    conn.execute(db.raters.insert().values(id=rater, seed=secrets.randbits(31) if seed is None else seed,
                                                            created=db.now()))
            except sa.exc.IntegrityError:
                pass  # registered concurrently

    def _plan(self, seed: int) -> list[str]:
        kinds = ["main"] * self.cfg.trials_per_rater + ["gold"] * self.n_gold + ["repeat"] * self.n_repeat
        rng = np.random.default_rng(seed)
        kinds = list(rng.permutation(kinds))
        first_main = kinds.index("main") if "main" in kinds else 0
        kinds.insert(0, kinds.pop(first_main))  # repeats need an earlier trial
        return kinds

    def progress(self, rater: str) -> tuple[int, int]:
        with self.engine.connect() as conn:
            done = conn.execute(sa.select(sa.func.count()).select_from(db.votes).where(db.votes.c.rater == rater)).scalar()
        return int(done), self.total

    # --- trials -------------------------------------------------------------------------------
    def current(self, rater: str) -> Trial | None:
        """The trial to show now: the unanswered one already assigned, else a new one; None when finished."""
        for _ in range(5):  # a concurrent assignment of the same index makes us look again
            try:
                return self._current(rater)
            except sa.exc.IntegrityError:
                continue
        raise RuntimeError("could not assign a trial; try again")

    def _current(self, rater: str) -> Trial | None:
        with self.engine.begin() as conn:
            r = conn.execute(sa.select(db.raters).where(db.raters.c.id == rater)).first()
            if r is None:
                raise KeyError(f"unknown rater {rater!r}")
            answered = {v.trial for v in conn.execute(sa.select(db.votes.c.trial).where(db.votes.c.rater == rater))}
            assigned = conn.execute(sa.select(db.trials).where(db.trials.c.rater == rater).order_by(db.trials.c.index)).all()
            for t in assigned:
                if t.index not in answered:
                    return self._trial(t)
            index = len(assigned)
            if index >= self.total:
                self._complete(conn, rater, r)
                return None
            kind = self._plan(r.seed)[index]
            rng = np.random.default_rng([r.seed, index])
            image, a, b, repeat_of = self._choose(conn, kind, rng, assigned, rater)
            if kind != "repeat" and rng.random() < 0.5:  # a repeat is already the earlier pair swapped
                a, b = b, a
            row = dict(rater=rater, index=index, kind=kind, image=image, condition_a=a, condition_b=b,
                       repeat_of=repeat_of, shown=db.now())
            conn.execute(db.trials.insert().values(**row))
            return self._trial(SimpleNamespace(**row))

    def _choose(self, conn, kind, rng, assigned, rater):
        mains = [t for t in assigned if t.kind == "main"]
        if kind == "repeat" and mains:
            t = mains[int(rng.integers(len(mains)))]
            return t.image, t.condition_b, t.condition_a, t.index  # same pair, sides swapped
        if kind == "gold":
            image = self.cfg.images[int(rng.integers(len(self.cfg.images)))].name
            return image, self.cfg.reference.name, GOLD, None
        load = {p: 0 for p in self.pairs}
        counted = sa.union_all(
            sa.select(db.votes.c.image, db.votes.c.condition_a, db.votes.c.condition_b).where(db.votes.c.kind == "main"),
            sa.select(db.trials.c.image, db.trials.c.condition_a, db.trials.c.condition_b).where(
                db.trials.c.kind == "main",
                ~sa.exists().where(db.votes.c.rater == db.trials.c.rater, db.votes.c.trial == db.trials.c.index)))
        for image, a, b in conn.execute(counted):
            key = (image, a, b) if (image, a, b) in load else (image, b, a)
            if key in load:
                load[key] += 1
        seen = {(t.image, *sorted((t.condition_a, t.condition_b))) for t in mains}
        fresh = [p for p in self.pairs if (p[0], *sorted(p[1:])) not in seen] or self.pairs
        least = min(load[p] for p in fresh)
        candidates = [p for p in fresh if load[p] == least]
        image, a, b = candidates[int(rng.integers(len(candidates)))]
        return image, a, b, None

    def _trial(self, t) -> Trial:
        return Trial(t.index, t.kind, t.image, t.condition_a, t.condition_b,
                     self.stimulus[(t.image, t.condition_a)], self.stimulus[(t.image, t.condition_b)])

    def _complete(self, conn, rater, r) -> None:
        if r.completion_code is None:
            conn.execute(db.raters.update().where(db.raters.c.id == rater, db.raters.c.completion_code.is_(None))
                         .values(completed=db.now(), completion_code=secrets.token_hex(4).upper()))

    def completion_code(self, rater: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(db.raters.c.completion_code).where(db.raters.c.id == rater)).scalar()

    # --- votes --------------------------------------------------------------------------------
    def answer(self, rater: str, index: int, score_a: int, score_b: int, preference: str) -> bool:
        """Store the vote for an assigned trial; True if stored now, False if it was already stored."""
        if preference not in PREFERENCES:
            raise ValueError(f"preference must be one of {PREFERENCES}")
        for s in (score_a, score_b):
            if not isinstance(s, (int, np.integer)) or not 1 <= s <= 5:
                raise ValueError("scores must be whole numbers from 1 (bad) to 5 (excellent)")
        with self.engine.begin() as conn:
            t = conn.execute(sa.select(db.trials).where(db.trials.c.rater == rater, db.trials.c.index == index)).first()
            if t is None:
                raise KeyError(f"trial {index} was never shown to rater {rater!r}")
            ms = int((db.now() - t.shown).total_seconds() * 1000)
            return db.upsert_vote(conn, dict(rater=rater, trial=index, kind=t.kind, image=t.image,
                                             condition_a=t.condition_a, condition_b=t.condition_b, score_a=int(score_a),
                                             score_b=int(score_b), preference=preference, response_ms=ms,
                                             created=db.now()))
