"""Who sees what next: the rating session logic, on top of the database (no UI here).

A *unit* is what one main trial shows: a pair of conditions of one image (designs pc and ab), one stimulus
(acr-hr) or one processed stimulus beside its labelled reference (dcr). Every main trial takes a unit this rater has
not seen with the fewest votes so far, counting trials handed out but not answered for ``assignment_timeout_s``
(after that an abandoned trial goes back to the pool). When every unit has ``votes_per_pair`` votes the study is
full: sessions end early with their completion code and new raters are told so (the stopping rule).

A session opens with ``training_trials`` practice trials on the [[training]] photos (never analysed). Each
rater's logged seed shuffles their trial kinds (main, gold, repeat) and the left/right sides; which unit a
main trial shows depends on everyone's votes so far, so a seed does not replay a session. Repeats show an earlier
main trial again at least ``repeat_gap`` trials later. A trial is stored as assigned before it is shown, so a
refresh or a second tab shows the same trial, and a vote is stored once per trial however often it is sent.
"""
from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import sqlalchemy as sa

from study import db
from study.config import ANCHOR_BEST, ANCHOR_WORST, GOLD, StudyConfig
from study.designs import DESIGNS


class StudyFull(RuntimeError):
    """Every unit has the votes it needs."""


class TooFast(ValueError):
    """An answer came sooner after the trial was shown than ``min_response_ms``."""


@dataclass(frozen=True)
class Trial:
    index: int
    kind: str
    image: str
    condition_a: str
    condition_b: str | None
    stimulus_a: str  # opaque ids: what the browser may see
    stimulus_b: str | None


def units(cfg: StudyConfig) -> list[tuple[str, str, str | None]]:
    """Every (image, condition_a, condition_b) a main trial can show under the study's design."""
    return DESIGNS[cfg.design].units([im.name for im in cfg.images], [c.name for c in cfg.conditions],
                                     cfg.reference.name if cfg.reference else None)


def unit_key(image: str, a: str, b: str | None) -> tuple:
    """The same key for a pair shown either way round (sides are random); a single stimulus keys as itself."""
    return (image, *sorted((a, b))) if b is not None else (image, a, None)


def parse_display(text: str | None) -> dict:
    """'1920x1080@2' (screen size in CSS px and devicePixelRatio, sent by the browser) -> vote columns."""
    m = re.fullmatch(r"\s*(\d{1,5})x(\d{1,5})@(\d{1,2}(?:\.\d{1,4})?)\s*", text or "")
    if not m:
        return {}
    return dict(screen_w=int(m[1]), screen_h=int(m[2]), pixel_ratio=float(m[3]))


def check_answer(design: str, allow_ties: bool, score_a, score_b, preference) -> None:
    """What the design asks for (``study.designs``): pc a preference; acr-hr and dcr one score; ab two scores and a
    preference. Raises ValueError otherwise."""
    DESIGNS[design].check_answer(allow_ties, score_a, score_b, preference)


class Study:
    def __init__(self, cfg: StudyConfig, engine: sa.Engine):
        self.cfg, self.engine = cfg, engine
        self.design = DESIGNS[cfg.design]
        self.units = units(cfg)
        self.pairs = self.units  # the pre-design name
        self.n_gold = round(cfg.trials_per_rater * cfg.gold_share) if cfg.reference else 0
        self.n_repeat = round(cfg.trials_per_rater * cfg.repeat_share)
        self.n_training = cfg.training_trials
        self.total = cfg.trials_per_rater + self.n_gold + self.n_repeat + self.n_training
        with engine.connect() as conn:
            rows = conn.execute(sa.select(db.stimuli.c.id, db.stimuli.c.image, db.stimuli.c.condition)).all()
        self.stimulus = {(r.image, r.condition): r.id for r in rows}
        missing = [(u[0], c) for u in self.units for c in u[1:] if c and (u[0], c) not in self.stimulus]
        if missing:
            raise RuntimeError(f"stimuli missing for {missing[:3]}…: run `python -m study build {cfg.path}` first")

    # --- raters -------------------------------------------------------------------------------
    def start(self, rater: str, seed: int | None = None) -> None:
        """Register a rater (idempotent; their seed is drawn once and kept). Raises StudyFull for a new rater when
        every unit has its votes, ValueError for an id that belongs to imported votes."""
        rater = rater.strip()
        if not rater or len(rater) > 128:
            raise ValueError("a rater id must be 1-128 characters")
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(db.raters.c.source).where(db.raters.c.id == rater)).first()
            if row is not None:
                if row.source != "app":
                    raise ValueError(f"rater id {rater!r} belongs to imported votes; issue a new link")
                return
            if self._full(conn):
                raise StudyFull("This study has all the votes it needs. Thank you for your interest!")
            try:
                with conn.begin_nested():
                    conn.execute(db.raters.insert().values(id=rater, seed=secrets.randbits(31) if seed is None else seed,
                                                            created=db.now()))
            except sa.exc.IntegrityError:
                pass  # registered concurrently

    def _plan(self, seed: int) -> list[str]:
        """Trial kinds in order: practice first, then a main trial, and each repeat at least repeat_gap + 1 trials
        after it, so it has an earlier main trial far enough back to repeat."""
        rng = np.random.default_rng(seed)
        kinds = ["main"] * self.cfg.trials_per_rater + ["gold"] * self.n_gold
        kinds = list(rng.permutation(kinds))
        first_main = kinds.index("main") if "main" in kinds else 0
        kinds.insert(0, kinds.pop(first_main))
        for _ in range(self.n_repeat):
            lo = min(self.cfg.repeat_gap + 1, len(kinds))
            kinds.insert(int(rng.integers(lo, len(kinds) + 1)), "repeat")
        return ["training"] * self.n_training + kinds

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
            if r.completion_code is not None:
                return None
            answered = {v.trial for v in conn.execute(sa.select(db.votes.c.trial).where(db.votes.c.rater == rater))}
            assigned = conn.execute(sa.select(db.trials).where(db.trials.c.rater == rater).order_by(db.trials.c.index)).all()
            for t in assigned:
                if t.index not in answered:
                    return self._trial(t)
            index = len(assigned)
            if index >= self.total:
                self._complete(conn, rater)
                return None
            kind = self._plan(r.seed)[index]
            rng = np.random.default_rng([r.seed, index])
            chosen = self._choose(conn, kind, rng, assigned, index)
            if chosen is None:  # the stopping rule: every unit has its votes
                self._complete(conn, rater)
                return None
            image, a, b, repeat_of = chosen
            if kind not in ("repeat", "training") and b is not None and self.design.paired and rng.random() < 0.5:
                a, b = b, a  # a repeat is already the earlier pair swapped; dcr keeps its reference in place
            row = dict(rater=rater, index=index, kind=kind, image=image, condition_a=a, condition_b=b,
                       repeat_of=repeat_of, shown=db.now())
            conn.execute(db.trials.insert().values(**row))
            return self._trial(SimpleNamespace(**row))

    def _load(self, conn) -> dict:
        """Votes per unit: main votes plus main trials handed out within the timeout and not yet answered."""
        cutoff = db.now() - dt.timedelta(seconds=self.cfg.assignment_timeout_s)
        counted = sa.union_all(
            sa.select(db.votes.c.image, db.votes.c.condition_a, db.votes.c.condition_b).where(db.votes.c.kind == "main"),
            sa.select(db.trials.c.image, db.trials.c.condition_a, db.trials.c.condition_b).where(
                db.trials.c.kind == "main", db.trials.c.shown >= cutoff,
                ~sa.exists().where(db.votes.c.rater == db.trials.c.rater, db.votes.c.trial == db.trials.c.index)))
        load = {unit_key(*u): 0 for u in self.units}
        for image, a, b in conn.execute(counted):
            key = unit_key(image, a, b)
            if key in load:
                load[key] += 1
        return load

    def _full(self, conn) -> bool:
        return min(self._load(conn).values()) >= self.cfg.votes_per_pair

    def is_full(self) -> bool:
        with self.engine.connect() as conn:
            return self._full(conn)

    def _choose(self, conn, kind, rng, assigned, index):
        mains = [t for t in assigned if t.kind == "main"]
        if kind == "repeat" and mains:
            spaced = [t for t in mains if t.index < index - self.cfg.repeat_gap] or mains
            t = spaced[int(rng.integers(len(spaced)))]
            if self.design.paired:
                return t.image, t.condition_b, t.condition_a, t.index  # same pair, sides swapped
            return t.image, t.condition_a, t.condition_b, t.index
        if kind == "training":  # the anchors of a practice photo: the range of quality to expect
            image = self.cfg.training[index % len(self.cfg.training)].name
            swap = not rng.random() < 0.5
            return (*self.design.training(image, ANCHOR_BEST, ANCHOR_WORST, swap), None)
        if kind == "gold":
            image = self.cfg.images[int(rng.integers(len(self.cfg.images)))].name
            return (*self.design.gold(image, self.cfg.reference.name, GOLD), None)
        load = self._load(conn)
        open_units = [u for u in self.units if load[unit_key(*u)] < self.cfg.votes_per_pair]
        if not open_units:
            return None
        seen = {unit_key(t.image, t.condition_a, t.condition_b) for t in mains}
        fresh = [u for u in open_units if unit_key(*u) not in seen] or open_units
        least = min(load[unit_key(*u)] for u in fresh)
        candidates = [u for u in fresh if load[unit_key(*u)] == least]
        image, a, b = candidates[int(rng.integers(len(candidates)))]
        return image, a, b, None

    def _trial(self, t) -> Trial:
        return Trial(t.index, t.kind, t.image, t.condition_a, t.condition_b, self.stimulus[(t.image, t.condition_a)],
                     self.stimulus[(t.image, t.condition_b)] if t.condition_b else None)

    def _complete(self, conn, rater) -> None:
        conn.execute(db.raters.update().where(db.raters.c.id == rater, db.raters.c.completion_code.is_(None))
                     .values(completed=db.now(), completion_code=secrets.token_hex(4).upper()))

    def completion_code(self, rater: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(db.raters.c.completion_code).where(db.raters.c.id == rater)).scalar()

    # --- votes --------------------------------------------------------------------------------
    def check_answer(self, score_a, score_b, preference) -> None:
        check_answer(self.cfg.design, self.cfg.allow_ties, score_a, score_b, preference)

    def answer(self, rater: str, index: int, score_a=None, score_b=None, preference=None,
               display: str | None = None) -> bool:
        """Store the vote for an assigned trial; True if stored now, False if it was already stored."""
        self.check_answer(score_a, score_b, preference)
        with self.engine.begin() as conn:
            t = conn.execute(sa.select(db.trials).where(db.trials.c.rater == rater, db.trials.c.index == index)).first()
            if t is None:
                raise KeyError(f"trial {index} was never shown to rater {rater!r}")
            ms = int((db.now() - t.shown).total_seconds() * 1000)
            if ms < self.cfg.min_response_ms:
                raise TooFast(f"Please look at the pictures for at least {self.cfg.min_response_ms / 1000:g} s.")
            return db.upsert_vote(conn, dict(
                rater=rater, trial=index, kind=t.kind, design=self.cfg.design, image=t.image,
                condition_a=t.condition_a, condition_b=t.condition_b, repeat_of=t.repeat_of,
                score_a=None if score_a is None else int(score_a), score_b=None if score_b is None else int(score_b),
                preference=preference, response_ms=ms, created=db.now(), **parse_display(display)))
