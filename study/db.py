"""Storage for a study: stimuli, raters, their scheduled trials and votes, in SQLite (default) or PostgreSQL.

Every vote is committed as it is given. A vote is keyed by (rater, trial), so a double click, a resent form or a
second import of the same file stores it once; a trial is assigned before it is shown, so a refresh shows the same
trial again. One table layout serves every design: ``condition_b`` is the partner (pc, ab), the labelled
reference (dcr) or empty (acr-hr); scores and preference are empty where the design asks for none.

The database holds the stimulus id → condition map and completion codes: keep it outside every served folder.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

metadata = sa.MetaData()

meta = sa.Table("meta", metadata, sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", sa.Text))

stimuli = sa.Table(
    "stimuli", metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # opaque: all the browser ever sees
    sa.Column("image", sa.String(128), nullable=False),
    sa.Column("condition", sa.String(128), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False, server_default="trial"),  # trial | anchor
    sa.Column("width", sa.Integer), sa.Column("height", sa.Integer),
    sa.Column("psnr", sa.Float), sa.Column("ssim", sa.Float), sa.Column("ms_ssim", sa.Float),
    sa.UniqueConstraint("image", "condition"),
)

raters = sa.Table(
    "raters", metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("seed", sa.BigInteger, nullable=False),  # orders this rater's trial kinds and sides
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("completed", sa.DateTime),
    sa.Column("completion_code", sa.String(32)),
    sa.Column("source", sa.String(32), nullable=False, server_default="app"),  # app | import
)

trials = sa.Table(
    "trials", metadata,
    sa.Column("rater", sa.String(128), sa.ForeignKey("raters.id"), primary_key=True),
    sa.Column("index", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # main | gold | repeat | training
    sa.Column("image", sa.String(128), nullable=False),
    sa.Column("condition_a", sa.String(128), nullable=False),
    sa.Column("condition_b", sa.String(128)),
    sa.Column("repeat_of", sa.Integer),
    sa.Column("shown", sa.DateTime, nullable=False),
)

votes = sa.Table(
    "votes", metadata,
    sa.Column("rater", sa.String(128), primary_key=True),
    sa.Column("trial", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("design", sa.String(8), nullable=False, server_default="ab"),  # pc | acr-hr | dcr | ab
    sa.Column("image", sa.String(128), nullable=False),
    sa.Column("condition_a", sa.String(128), nullable=False),
    sa.Column("condition_b", sa.String(128)),
    sa.Column("score_a", sa.Integer),
    sa.Column("score_b", sa.Integer),
    sa.Column("preference", sa.String(8)),  # a | b | none
    sa.Column("repeat_of", sa.Integer),
    sa.Column("response_ms", sa.Integer),
    sa.Column("screen_w", sa.Integer), sa.Column("screen_h", sa.Integer), sa.Column("pixel_ratio", sa.Float),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.CheckConstraint("(score_a IS NULL OR score_a BETWEEN 1 AND 5) AND (score_b IS NULL OR score_b BETWEEN 1 AND 5)",
                       name="score_range"),
    sa.CheckConstraint("preference IS NULL OR preference IN ('a', 'b', 'none')", name="preference_values"),
)


def default_url(config_path: Path | str) -> str:
    p = Path(config_path)
    return f"sqlite:///{(p.parent / (p.stem + '.db')).resolve()}"


def connect(url: str) -> sa.Engine:
    """Open (and create or upgrade if needed) a study database. SQLite gets WAL and a busy timeout for many writers."""
    if "://" not in url:
        url = f"sqlite:///{Path(url).resolve()}"
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _):
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    _upgrade(engine)
    metadata.create_all(engine)
    return engine


def _upgrade(engine: sa.Engine) -> None:
    """Bring a database written by an older layout up to this one, keeping every row (copy, recreate, reinsert)."""
    insp = sa.inspect(engine)
    existing = set(insp.get_table_names())
    stale = [t for t in metadata.sorted_tables if t.name in existing
             and {c.name for c in t.columns} - {c["name"] for c in insp.get_columns(t.name)}]
    if not stale:
        return
    with engine.begin() as conn:
        rows = {}
        for t in metadata.sorted_tables:
            if t.name in existing:  # read through this layout's column types (SQLite keeps dates as text)
                cols = [t.c[c["name"]] for c in insp.get_columns(t.name) if c["name"] in t.c]
                rows[t.name] = [dict(r._mapping) for r in conn.execute(sa.select(*cols))]
        for t in reversed(metadata.sorted_tables):
            if t.name in existing:
                t.drop(conn)
        metadata.create_all(conn)
        for t in metadata.sorted_tables:
            keep = [{k: v for k, v in r.items() if k in t.c} for r in rows.get(t.name, [])]
            if keep:
                conn.execute(t.insert(), keep)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def upsert_vote(conn, row: dict) -> bool:
    """Insert a vote once; a second submission of the same (rater, trial) is ignored. True if stored now."""
    exists = conn.execute(sa.select(votes.c.trial).where(votes.c.rater == row["rater"], votes.c.trial == row["trial"]))
    if exists.first():
        return False
    try:
        with conn.begin_nested():
            conn.execute(votes.insert().values(**row))
    except sa.exc.IntegrityError:  # a concurrent duplicate won the race: still exactly one vote
        return False
    return True
