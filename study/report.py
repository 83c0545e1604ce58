"""Aggregate votes into publishable tables: MOS with 95% CIs, DMOS, preferences, Bradley–Terry, SSIM/PSNR.

Every table is computed twice, for all raters and for the raters that pass screening (``study.screening``).
Written as CSV, Markdown and one self-contained HTML page with plots.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import choix
import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy import stats

from study import db
from study.screening import ratings_long, screen
from study.stimuli import GOLD


def load(engine: sa.Engine) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """(votes joined with their trial's repeat_of, stimuli, reference condition name)."""
    with engine.connect() as conn:
        votes = pd.read_sql(sa.select(db.votes, db.trials.c.repeat_of).select_from(db.votes.outerjoin(
            db.trials, (db.trials.c.rater == db.votes.c.rater) & (db.trials.c.index == db.votes.c.trial))), conn)
        stim = pd.read_sql(sa.select(db.stimuli), conn)
        reference = conn.execute(sa.select(db.meta.c.value).where(db.meta.c.key == "reference")).scalar()
    return votes, stim, reference


def mean_ci(x: pd.Series, level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, std, and the t-distribution confidence interval."""
    x = x.dropna().astype(float)
    n = len(x)
    m = x.mean() if n else np.nan
    s = x.std(ddof=1) if n > 1 else np.nan
    if n < 2:
        return m, s, np.nan, np.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * s / np.sqrt(n)
    return m, s, m - half, m + half


def bradley_terry(votes: pd.DataFrame, items: list[str], boots: int = 200, seed: int = 0) -> pd.DataFrame:
    """Bradley–Terry strengths (choix, ILSR with a little regularisation) and bootstrap 95% intervals.

    Ties ('no difference') count as half a win each way."""
    idx = {c: i for i, c in enumerate(items)}
    comps = []
    for r in votes.itertuples():
        a, b = idx.get(r.condition_a), idx.get(r.condition_b)
        if a is None or b is None:
            continue
        if r.preference == "a":
            comps.append((a, b))
        elif r.preference == "b":
            comps.append((b, a))
        else:
            comps += [(a, b), (b, a)]
    if not comps:
        return pd.DataFrame({"condition": items, "bt": np.nan, "bt_lo": np.nan, "bt_hi": np.nan})

    def fit(data):
        p = choix.ilsr_pairwise(len(items), data, alpha=0.01)
        return p - p.mean()

    est = fit(comps)
    rng = np.random.default_rng(seed)
    samples = np.array([fit([comps[i] for i in rng.integers(0, len(comps), len(comps))]) for _ in range(boots)])
    lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
    return pd.DataFrame({"condition": items, "bt": est, "bt_lo": lo, "bt_hi": hi})


def condition_table(votes: pd.DataFrame, stim: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    main = votes[votes.kind == "main"]
    ratings = ratings_long(main)
    conds = [c for c in pd.unique(ratings.condition) if c != GOLD]
    per_ri = ratings.groupby(["rater", "image", "condition"]).score.mean().unstack("condition")
    rows = []
    for c in conds:
        m, s, lo, hi = mean_ci(ratings.score[ratings.condition == c])
        row = {"condition": c, "votes": int((ratings.condition == c).sum()),
               "raters": ratings.rater[ratings.condition == c].nunique(), "MOS": m, "std": s, "CI95_lo": lo, "CI95_hi": hi}
        if reference in per_ri and c in per_ri:  # ACR-HR (ITU-T P.910): DV = V(condition) − V(reference) + 5
            dv = (per_ri[c] - per_ri[reference] + 5).dropna()
            row["DMOS"], _, row["DMOS_lo"], row["DMOS_hi"] = mean_ci(dv)
        involved = main[(main.condition_a == c) | (main.condition_b == c)]
        wins = ((involved.condition_a == c) & (involved.preference == "a")) | ((involved.condition_b == c) & (involved.preference == "b"))
        ties = involved.preference == "none"
        row["win_rate"] = (wins.sum() + 0.5 * ties.sum()) / len(involved) if len(involved) else np.nan
        rows.append(row)
    table = pd.DataFrame(rows).merge(bradley_terry(main, conds), on="condition", how="left")
    quality = stim.groupby("condition")[["ssim", "psnr", "ms_ssim"]].mean().reset_index()
    return table.merge(quality, on="condition", how="left").sort_values("MOS", ascending=False, ignore_index=True)


def image_table(votes: pd.DataFrame, stim: pd.DataFrame) -> pd.DataFrame:
    ratings = ratings_long(votes[votes.kind == "main"])
    rows = []
    for (image, cond), grp in ratings.groupby(["image", "condition"]):
        m, s, lo, hi = mean_ci(grp.score)
        rows.append({"image": image, "condition": cond, "votes": len(grp), "MOS": m, "std": s, "CI95_lo": lo, "CI95_hi": hi})
    table = pd.DataFrame(rows, columns=["image", "condition", "votes", "MOS", "std", "CI95_lo", "CI95_hi"])
    return table.merge(stim[["image", "condition", "ssim", "psnr", "ms_ssim"]], on=["image", "condition"], how="left")


def correlations(images: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for metric in ("ssim", "psnr", "ms_ssim"):
        d = images[["MOS", metric]].dropna()
        if len(d) >= 3 and d[metric].nunique() > 1 and d.MOS.nunique() > 1:
            rows.append({"metric": metric, "n": len(d), "pearson": stats.pearsonr(d.MOS, d[metric])[0],
                         "spearman": stats.spearmanr(d.MOS, d[metric])[0]})
    return pd.DataFrame(rows, columns=["metric", "n", "pearson", "spearman"])


def build_report(engine: sa.Engine) -> dict[str, pd.DataFrame]:
    votes, stim, reference = load(engine)
    if votes.empty:
        raise ValueError("no votes yet")
    raters = screen(votes, reference)
    accepted = set(raters.rater[raters.accepted])
    out = {"raters": raters}
    for subset, v in (("all", votes), ("screened", votes[votes.rater.isin(accepted)])):
        if v.empty:
            continue
        out[f"conditions_{subset}"] = condition_table(v, stim, reference)
        out[f"images_{subset}"] = image_table(v, stim)
        out[f"correlation_{subset}"] = correlations(out[f"images_{subset}"])
    return out


def _plot(conditions: pd.DataFrame, images: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    c = conditions.sort_values("MOS")
    err = np.vstack([c.MOS - c.CI95_lo, c.CI95_hi - c.MOS])
    ax1.barh(c.condition, c.MOS, xerr=np.nan_to_num(err), color="#4c72b0", capsize=4)
    ax1.set_xlim(1, 5)
    ax1.set_xlabel("MOS (1 bad … 5 excellent) ± 95% CI")
    d = images.dropna(subset=["ssim"])
    for cond, grp in d.groupby("condition"):
        ax2.scatter(grp.ssim, grp.MOS, label=cond)
    ax2.set_xlabel("SSIM against the clean photo")
    ax2.set_ylabel("MOS")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def to_markdown(tables: dict[str, pd.DataFrame]) -> str:
    parts = ["# Rating study report\n"]
    for name, t in tables.items():
        parts.append(f"## {name.replace('_', ' ')}\n\n{t.to_markdown(index=False, floatfmt='.3f')}\n")
    return "\n".join(parts)


def to_html(tables: dict[str, pd.DataFrame]) -> str:
    key = "screened" if "conditions_screened" in tables else "all"
    img = _plot(tables[f"conditions_{key}"], tables[f"images_{key}"])
    body = [f"<h1>Rating study report</h1><img alt='MOS per condition and MOS vs SSIM' src='data:image/png;base64,{img}'>"]
    for name, t in tables.items():
        body.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2>" + t.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–"))
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}"
    return f"<!doctype html><meta charset='utf-8'><title>Rating study report</title><style>{style}</style>{''.join(body)}"


def write(tables: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, t in tables.items():
        t.to_csv(out / f"{name}.csv", index=False)
        paths.append(out / f"{name}.csv")
    (out / "report.md").write_text(to_markdown(tables))
    (out / "report.html").write_text(to_html(tables))
    return paths + [out / "report.md", out / "report.html"]
