"""Votes in and out as CSV, so ratings collected on a crowdsourcing platform are analysed the same way.

Export writes every stored field (``EXPORT``), and importing an export gives the same votes back: kind (main, gold,
repeat, training), trial number, repeat_of, response time and display metadata included. Import accepts the
platform columns rater, image, condition_a, condition_b, score_a, score_b, preference (a / b / none; empty where the
design asks for none), optionally any export column. Votes are keyed by (rater, trial): without a ``trial``
column a rater's rows are numbered in file order, so importing the same file twice stores its votes once, and a
different vote under a stored key is an error. Conditions and images must be the study's. An import is one
transaction: one bad row (reported as file:line) and nothing is stored. UTF-8 (with or without BOM) and UTF-16
files are read.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import math
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from study import db
from study.config import GOLD
from study.designs import DESIGNS, LEGACY
from study.schedule import check_answer

REQUIRED = ("rater", "image", "condition_a")
EXPORT = ("rater", "trial", "kind", "design", "image", "condition_a", "condition_b", "score_a", "score_b",
          "preference", "repeat_of", "response_ms", "screen_w", "screen_h", "pixel_ratio", "created")
KINDS = ("main", "gold", "repeat", "training")
MAX_ID = 128
SAME = ("kind", "design", "image", "condition_a", "condition_b", "score_a", "score_b", "preference")


class ImportError_(ValueError):
    pass


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ImportError_(f"{path}: cannot open: {e.strerror}") from None
    try:
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return raw.decode("utf-16")
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportError_(f"{path}: not UTF-8 or UTF-16 text") from None


def _parse(path: Path, default_design: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(_text(path), newline=""))
    fields = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in fields]
    if missing or not {"score_a", "preference"} & set(fields):
        need = ", ".join(missing or ["score_a or preference"])
        raise ImportError_(f"{path}:1: missing column(s) {need} (need {', '.join(REQUIRED)} and scores or preference)")
    rows, ordinal, keys = [], {}, {}
    for line, r in enumerate(reader, start=2):
        def bad(msg):
            raise ImportError_(f"{path}:{line}: {msg}")

        def get(c):
            return (r.get(c) or "").strip()

        def whole(c, lo=None, hi=None):
            v = get(c)
            if not v:
                return None
            try:
                f = float(v)
            except ValueError:
                bad(f"{c} must be a whole number, got {v!r}")
            if not math.isfinite(f) or f != int(f) or (lo is not None and not lo <= f <= hi):
                bad(f"{c} must be a whole number{f' in [{lo}, {hi}]' if lo is not None else ''}, got {v!r}")
            return int(f)

        if None in r:
            bad("more values than columns")
        for c in REQUIRED:
            if not get(c):
                bad(f"empty {c}")
        for c in ("rater", "image", "condition_a", "condition_b"):
            if len(get(c)) > MAX_ID:
                bad(f"{c} is longer than {MAX_ID} characters")
        design = get("design") or default_design
        if design not in DESIGNS:
            bad(f"design must be one of {', '.join(DESIGNS)}, got {design!r}")
        kind = get("kind") or "main"
        if kind not in KINDS:
            bad(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        pref = get("preference").lower() or None
        score_a, score_b = whole("score_a", 1, 5), whole("score_b", 1, 5)
        try:
            check_answer(design, True, score_a, score_b, pref)
        except ValueError as e:
            bad(str(e))
        if get("condition_a") == get("condition_b"):
            bad("condition_a and condition_b are the same")
        ratio = get("pixel_ratio")
        try:
            ratio = float(ratio) if ratio else None
        except ValueError:
            bad(f"pixel_ratio must be a number, got {ratio!r}")
        if ratio is not None and not (math.isfinite(ratio) and 0 < ratio <= 16):
            bad(f"pixel_ratio must be in (0, 16], got {get('pixel_ratio')!r}")
        created = get("created")
        try:
            created = dt.datetime.fromisoformat(created) if created else db.now()
        except ValueError:
            bad(f"created must be an ISO date and time, got {created!r}")
        rater = get("rater")
        trial = whole("trial", 0, 10**9)
        if trial is None:
            trial = ordinal.get(rater, 0)
        ordinal[rater] = trial + 1
        if (rater, trial) in keys:
            bad(f"rater {rater!r} trial {trial} is also on line {keys[rater, trial]}")
        keys[rater, trial] = line
        rows.append(dict(rater=rater, trial=trial, kind=kind, design=design, image=get("image"),
                         condition_a=get("condition_a"), condition_b=get("condition_b") or None, score_a=score_a,
                         score_b=score_b, preference=pref, repeat_of=whole("repeat_of", 0, 10**9),
                         response_ms=whole("response_ms", 0, 10**9), screen_w=whole("screen_w", 1, 100_000),
                         screen_h=whole("screen_h", 1, 100_000), pixel_ratio=ratio, created=created, _line=line))
    if not rows:
        raise ImportError_(f"{path}: no votes in the file")
    return rows


def import_votes(engine: sa.Engine, path: Path | str, conditions: set[str] | None = None) -> int:
    """Load a CSV of votes; returns how many were stored now (already stored identical votes are skipped).

    ``conditions`` (and the images) default to those of the study's built stimuli."""
    path = Path(path)
    with engine.connect() as conn:
        stim = conn.execute(sa.select(db.stimuli.c.image, db.stimuli.c.condition, db.stimuli.c.role)).all()
        design = conn.execute(sa.select(db.meta.c.value).where(db.meta.c.key == "design")).scalar() or LEGACY
    known_conds = set(conditions) if conditions else {s.condition for s in stim if s.role == "trial"}
    known_images = {s.image for s in stim} if not conditions else None
    practice = {s.condition for s in stim if s.role == "anchor"}  # training trials show the anchors
    if not known_conds:
        raise ImportError_(f"{path}: the database has no study stimuli: run `python -m study build` first "
                           "(or name the conditions)")
    rows = _parse(path, design)
    for r in rows:
        for c in (r["condition_a"], r["condition_b"]):
            if c is not None and c not in known_conds | {GOLD} | (practice if r["kind"] == "training" else set()):
                raise ImportError_(f"{path}:{r['_line']}: unknown condition {c!r} (this study has "
                                   f"{', '.join(sorted(known_conds))})")
        if known_images is not None and r["image"] not in known_images:
            raise ImportError_(f"{path}:{r['_line']}: unknown image {r['image']!r}")
    stored = 0
    with engine.begin() as conn:
        sources = {}
        for r in rows:
            line = r.pop("_line")
            rater = r["rater"]
            if rater not in sources:
                sources[rater] = conn.execute(sa.select(db.raters.c.source).where(db.raters.c.id == rater)).scalar()
                if sources[rater] is None:
                    conn.execute(db.raters.insert().values(id=rater, seed=0, created=db.now(), source="import"))
                    sources[rater] = "import"
            old = conn.execute(sa.select(db.votes).where(db.votes.c.rater == rater, db.votes.c.trial == r["trial"])).first()
            if old is not None:
                if any(getattr(old, k) != r[k] for k in SAME):
                    raise ImportError_(f"{path}:{line}: rater {rater!r} trial {r['trial']} already has a different "
                                       "vote (give each vote its own trial number)")
                continue
            if sources[rater] != "import":
                raise ImportError_(f"{path}:{line}: rater id {rater!r} is rating in the app; rename the imported rater")
            conn.execute(db.votes.insert().values(**r))
            stored += 1
    return stored


def write_votes(engine: sa.Engine, out) -> int:
    """Write the export as CSV to a path or an open text file (what ``import_votes`` reads back); returns the count."""
    df = export_votes(engine)
    df.to_csv(out, index=False)
    return len(df)


def export_votes(engine: sa.Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        df = pd.read_sql(sa.select(*[db.votes.c[c] for c in EXPORT]).order_by(db.votes.c.rater, db.votes.c.trial), conn)
    for c in ("trial", "score_a", "score_b", "repeat_of", "response_ms", "screen_w", "screen_h"):
        df[c] = df[c].astype("Int64")
    return df
