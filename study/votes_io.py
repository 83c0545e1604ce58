"""Votes in and out as CSV, so ratings collected on a crowdsourcing platform are analysed the same way.

Columns: rater, image, condition_a, condition_b, score_a, score_b (1-5), preference (a / b / none);
optional: response_ms. An import is one transaction: one bad row and nothing is stored.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from study import db

REQUIRED = ("rater", "image", "condition_a", "condition_b", "score_a", "score_b", "preference")


class ImportError_(ValueError):
    pass


def _parse(path: Path) -> list[dict]:
    try:
        f = path.open(newline="", encoding="utf-8-sig")
    except OSError as e:
        raise ImportError_(f"{path}: cannot open: {e.strerror}") from None
    with f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ImportError_(f"{path}:1: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED)})")
        rows = []
        for line, r in enumerate(reader, start=2):
            def bad(msg):
                raise ImportError_(f"{path}:{line}: {msg}")
            for c in REQUIRED:
                if not (r.get(c) or "").strip():
                    bad(f"empty {c}")
            try:
                sa_, sb = int(r["score_a"]), int(r["score_b"])
            except ValueError:
                bad(f"scores must be whole numbers 1-5, got {r['score_a']!r}, {r['score_b']!r}")
            if not (1 <= sa_ <= 5 and 1 <= sb <= 5):
                bad(f"scores must be 1-5, got {sa_}, {sb}")
            pref = r["preference"].strip().lower()
            if pref not in ("a", "b", "none"):
                bad(f"preference must be a, b or none, got {r['preference']!r}")
            if r["condition_a"].strip() == r["condition_b"].strip():
                bad("condition_a and condition_b are the same")
            ms = r.get("response_ms")
            rows.append(dict(rater=r["rater"].strip(), image=r["image"].strip(), condition_a=r["condition_a"].strip(),
                             condition_b=r["condition_b"].strip(), score_a=sa_, score_b=sb, preference=pref,
                             response_ms=int(float(ms)) if ms not in (None, "") else None))
    if not rows:
        raise ImportError_(f"{path}: no votes in the file")
    return rows


def import_votes(engine: sa.Engine, path: Path | str) -> int:
    """Load a CSV of votes; returns how many were stored. Raters get the next free trial numbers."""
    path = Path(path)
    rows = _parse(path)
    with engine.begin() as conn:
        next_trial: dict[str, int] = {}
        for r in rows:
            rater = r["rater"]
            if rater not in next_trial:
                if not conn.execute(sa.select(db.raters.c.id).where(db.raters.c.id == rater)).first():
                    conn.execute(db.raters.insert().values(id=rater, seed=0, created=db.now(), source="import"))
                last = conn.execute(sa.select(sa.func.max(db.votes.c.trial)).where(db.votes.c.rater == rater)).scalar()
                next_trial[rater] = 0 if last is None else last + 1
            conn.execute(db.votes.insert().values(trial=next_trial[rater], kind="main", created=db.now(), **r))
            next_trial[rater] += 1
    return len(rows)


def export_votes(engine: sa.Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.select(db.votes).order_by(db.votes.c.rater, db.votes.c.trial), conn)
