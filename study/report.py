"""Aggregate votes into publishable tables and one self-contained HTML page that opens with a plain summary.

What is estimated depends on the design (``study.designs``): pc and ab preferences are scaled with
Bradley–Terry (``study.bt``); acr-hr scores give MOS and, per rater and source image, DMOS (ITU-T P.910 ACR-HR:
DV = V(processed) − V(reference) + 5); dcr scores give the DCR mean (5 imperceptible … 1 very annoying); ab scores
are relative to the partner shown beside them and feed no DMOS. Score intervals are rater-clustered
(``study.mos``). Every table is computed for the raters that pass screening (``study.screening``) and for all.
Written as CSV, Markdown and HTML.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy import stats

from study import db
from study.bt import bradley_terry
from study.config import GOLD
from study.designs import DEFAULT, DESIGNS
from study.mos import clustered_mean_ci, votes_for_halfwidth, votes_for_preference
from study.screening import ratings_long, screen

KEYS = {
    "votes": "scores (or preferences) given to the condition in main trials",
    "raters": "raters who gave them",
    "MOS": "mean opinion score, 1 bad … 5 excellent (dcr: 5 imperceptible … 1 very annoying)",
    "CI95_lo / CI95_hi": "95% interval, cluster-robust over raters (t, R−1 df)",
    "deff": "design effect: variance of the mean over what independent votes would give",
    "DMOS": "ACR-HR differential score per rater and source, V(condition) − V(reference) + 5 (acr-hr only)",
    "win_rate": "share of comparisons won, ties as half",
    "bt / bt_lo / bt_hi": "Bradley–Terry (Davidson, ties modelled) log-strength, mean 0, with 95% bootstrap interval "
                          "over raters (1000 draws)",
    "diff, p_holm": "contrast in log-strength (a − b); bootstrap p-value, Holm-corrected over the contrasts",
}


def load(engine: sa.Engine) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(votes, stimuli, study settings stored at build: reference, design, contrasts)."""
    with engine.connect() as conn:
        votes = pd.read_sql(sa.select(db.votes), conn)
        for c in ("score_a", "score_b", "repeat_of"):
            votes[c] = pd.to_numeric(votes[c]).astype(float)
        stim = pd.read_sql(sa.select(db.stimuli).where(db.stimuli.c.role == "trial"), conn)
        meta = dict(conn.execute(sa.select(db.meta.c.key, db.meta.c.value)).all())
    info = {"reference": meta.get("reference"), "contrasts": json.loads(meta.get("contrasts", "[]")),
            "design": votes.design.mode().iloc[0] if len(votes) else meta.get("design", DEFAULT)}
    return votes, stim, info


def _ci_row(values, clusters, prefix: str = "") -> dict:
    ci = clustered_mean_ci(values, clusters)
    name = prefix or "MOS"
    return {name: ci["mean"], f"{name}_lo": ci["lo"], f"{name}_hi": ci["hi"]} if prefix else {
        "votes": ci["n"], "raters": ci["raters"], "MOS": ci["mean"], "std": ci["std"], "CI95_lo": ci["lo"],
        "CI95_hi": ci["hi"], "deff": ci["deff"]}


def dmos_values(ratings: pd.DataFrame, reference: str) -> pd.DataFrame:
    """ACR-HR differential viewer scores: per rater and source image, DV = V(condition) − V(reference) + 5."""
    per = ratings.groupby(["rater", "image", "condition"]).score.mean().unstack("condition")
    if reference not in per:
        return pd.DataFrame(columns=["rater", "image", "condition", "dv"])
    dv = (per.drop(columns=reference).sub(per[reference], axis=0) + 5).stack().rename("dv").reset_index()
    return dv


def condition_table(votes: pd.DataFrame, stim: pd.DataFrame, info: dict, boots: int = 1000):
    """(per-condition table, BT contrast table or None)."""
    design, reference = DESIGNS[info["design"]], info["reference"]
    main = votes[votes.kind == "main"]
    conds = [c for c in pd.unique(pd.concat([main.condition_a, main.condition_b.dropna()])) if c != GOLD]
    if not design.rates_reference:  # dcr: the labelled reference is what the others are rated against
        conds = [c for c in conds if c != reference]
    rows = {c: {"condition": c} for c in conds}
    if design.scored:
        ratings = ratings_long(main)
        if not design.rates_reference:
            ratings = ratings[ratings.condition != reference]
        for c in conds:
            r = ratings[ratings.condition == c]
            rows[c].update(_ci_row(r.score, r.rater))
        if design.dmos and reference:
            dv = dmos_values(ratings, reference)
            rows[reference].update(DMOS=5.0, DMOS_lo=5.0, DMOS_hi=5.0)
            for c, g in dv.groupby("condition"):
                rows[c].update(_ci_row(g.dv, g.rater, "DMOS"))
    contrasts = None
    if design.preferred:
        for c in conds:
            involved = main[(main.condition_a == c) | (main.condition_b == c)]
            wins = ((involved.condition_a == c) & (involved.preference == "a")) | (
                (involved.condition_b == c) & (involved.preference == "b"))
            ties = involved.preference == "none"
            rows[c]["win_rate"] = (wins.sum() + 0.5 * ties.sum()) / len(involved) if len(involved) else np.nan
            rows[c].setdefault("votes", len(involved))
        strengths, contrasts = bradley_terry(main, conds, boots=boots, contrasts=[tuple(p) for p in info["contrasts"]])
        for r in strengths.itertuples():
            rows[r.condition].update(bt=r.bt, bt_lo=r.bt_lo, bt_hi=r.bt_hi)
    table = pd.DataFrame(list(rows.values()))
    quality = stim.groupby("condition")[["ssim", "psnr", "ms_ssim"]].mean().reset_index()
    table = table.merge(quality, on="condition", how="left")
    return table.sort_values(design.rank_by, ascending=False, ignore_index=True), contrasts


def image_table(votes: pd.DataFrame, stim: pd.DataFrame) -> pd.DataFrame:
    cols = ["image", "condition", "votes", "raters", "MOS", "std", "CI95_lo", "CI95_hi"]
    ratings = ratings_long(votes[votes.kind == "main"])
    rows = [{"image": image, "condition": cond, **_ci_row(g.score, g.rater)}
            for (image, cond), g in ratings.groupby(["image", "condition"])]
    table = pd.DataFrame(rows, columns=cols + ["deff"]).drop(columns="deff")
    return table.merge(stim[["image", "condition", "ssim", "psnr", "ms_ssim"]], on=["image", "condition"], how="left")


def correlations(images: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for metric in ("ssim", "psnr", "ms_ssim"):
        d = images[["MOS", metric]].dropna()
        if len(d) >= 3 and d[metric].nunique() > 1 and d.MOS.nunique() > 1:
            rows.append({"metric": metric, "n": len(d), "pearson": stats.pearsonr(d.MOS, d[metric])[0],
                         "spearman": stats.spearmanr(d.MOS, d[metric])[0]})
    return pd.DataFrame(rows, columns=["metric", "n", "pearson", "spearman"])


def power_table(votes: pd.DataFrame, conditions: pd.DataFrame, design: str) -> pd.DataFrame:
    """Votes needed per condition for a MOS half-width of 0.2 and 0.1, and per pair to detect a 60/40 preference
    with 80% power (two-sided, 5%), from the observed spread and design effect."""
    rows = []
    design = DESIGNS[design]
    if design.scored and "std" in conditions:
        for r in conditions.itertuples():
            rows.append({"what": f"MOS of {r.condition}", "observed_votes": r.votes,
                         "needed_for_±0.2": votes_for_halfwidth(r.std, r.deff, 0.2),
                         "needed_for_±0.1": votes_for_halfwidth(r.std, r.deff, 0.1)})
    main = votes[(votes.kind == "main") & votes.preference.notna()]
    if design.preferred and len(main):
        decisive = main[main.preference != "none"]
        left = (decisive.preference == "a").astype(float)  # clustering of choices within raters
        deff = clustered_mean_ci(left, decisive.rater)["deff"] if len(decisive) > 2 else np.nan
        tie_rate = float((main.preference == "none").mean())
        rows.append({"what": "a 60/40 preference in one pair (80% power)", "observed_votes": len(main),
                     "needed_per_pair": votes_for_preference(0.6, deff=deff, tie_rate=tie_rate),
                     "design_effect": deff, "tie_rate": tie_rate})
    return pd.DataFrame(rows)


def build_report(engine: sa.Engine, boots: int = 1000) -> dict[str, pd.DataFrame]:
    votes, stim, info = load(engine)
    if votes.empty:
        raise ValueError("no votes yet")
    raters = screen(votes, info["reference"])
    accepted = set(raters.rater[raters.accepted])
    out = {}
    for subset, v in (("screened", votes[votes.rater.isin(accepted)]), ("all", votes)):
        if v[v.kind == "main"].empty:
            continue
        out[f"conditions_{subset}"], contrasts = condition_table(v, stim, info, boots)
        if contrasts is not None:
            out[f"contrasts_{subset}"] = contrasts
        if DESIGNS[info["design"]].scored:
            out[f"images_{subset}"] = image_table(v, stim)
            out[f"correlation_{subset}"] = correlations(out[f"images_{subset}"])
        out[f"power_{subset}"] = power_table(v, out[f"conditions_{subset}"], info["design"])
    raters.attrs.update(design=info["design"], reference=info["reference"])
    out["raters"] = raters
    return out


def summary(tables: dict[str, pd.DataFrame]) -> str:
    """Plain words: which condition is best, by how much, and how sure."""
    design = tables["raters"].attrs.get("design", DEFAULT)
    key = "screened" if "conditions_screened" in tables else "all"
    c = tables[f"conditions_{key}"]
    n_raters = len(tables["raters"])
    n_ok = int(tables["raters"].accepted.sum())
    lines = [f"{n_ok} of {n_raters} raters passed screening; results below use "
             f"{'them' if key == 'screened' else 'all raters (none passed)'}. Design: {design}."]
    if "bt" in c and c.bt.notna().any():
        top = c.sort_values("bt", ascending=False).iloc[:2]
        lines.append(f"Preferred most: **{top.iloc[0].condition}** (Bradley–Terry {top.iloc[0].bt:+.2f}, 95% CI "
                     f"{top.iloc[0].bt_lo:+.2f} … {top.iloc[0].bt_hi:+.2f}).")
        con = tables.get(f"contrasts_{key}")
        if con is not None:
            for r in con.itertuples():
                sure = "a clear difference" if r.p_holm < 0.05 else "not a clear difference"
                lines.append(f"{r.a} vs {r.b}: {r.a} chosen in {r.P_a_over_b_decisive:.0%} of decisive comparisons "
                             f"(log-strength {r.diff:+.2f}, CI {r.lo:+.2f} … {r.hi:+.2f}, Holm p = {r.p_holm:.3f}): {sure}.")
    if "MOS" in c and c.MOS.notna().any():
        top = c.sort_values("MOS", ascending=False).iloc[:2]
        a = top.iloc[0]
        line = f"Highest mean score: **{a.condition}** (MOS {a.MOS:.2f}, 95% CI {a.CI95_lo:.2f} … {a.CI95_hi:.2f})"
        if len(top) > 1:
            b = top.iloc[1]
            overlap = a.CI95_lo <= b.CI95_hi
            line += (f", {a.MOS - b.MOS:.2f} above {b.condition}; the intervals "
                     f"{'overlap, so the order of these two is not established' if overlap else 'do not overlap'}")
        lines.append(line + ".")
    if DESIGNS[design].report_note:
        lines.append(DESIGNS[design].report_note)
    return "\n\n".join(lines)


def _plot(conditions: pd.DataFrame, images: pd.DataFrame | None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_mos = "MOS" in conditions and conditions.MOS.notna().any()
    value, lo, hi, label, lim = (("MOS", "CI95_lo", "CI95_hi", "MOS ± 95% CI (clipped to the scale)", (1, 5)) if has_mos
                                 else ("bt", "bt_lo", "bt_hi", "Bradley–Terry log-strength ± 95% CI", None))
    panels = 1 + sum(images is not None and m in images for m in ("ssim", "psnr"))
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4))
    axes = np.atleast_1d(axes)
    c = conditions.sort_values(value)
    clo, chi = (c[lo].clip(*lim), c[hi].clip(*lim)) if lim else (c[lo], c[hi])
    err = np.vstack([c[value] - clo, chi - c[value]])
    axes[0].barh(c.condition, c[value] - (lim[0] if lim else 0), left=lim[0] if lim else 0,
                 xerr=np.nan_to_num(err), color="#4c72b0", capsize=4)
    if lim:
        axes[0].set_xlim(*lim)
    axes[0].set_xlabel(label)
    for ax, metric in zip(axes[1:], ("ssim", "psnr")):
        d = images.dropna(subset=[metric, "MOS"])
        for cond, grp in d.groupby("condition"):
            ax.scatter(grp[metric], grp.MOS, label=cond)
        r = stats.spearmanr(d[metric], d.MOS)[0] if len(d) >= 3 and d[metric].nunique() > 1 else np.nan
        ax.set_title(f"MOS vs {metric.upper()} (Spearman {r:.2f})")
        ax.set_xlabel(f"{metric.upper()} against the clean photo")
        ax.set_ylabel("MOS")
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _sections(tables: dict[str, pd.DataFrame]) -> list[tuple[str, pd.DataFrame]]:
    """Screened results first, then the power section, all raters, and the per-rater table last."""
    order = sorted(tables, key=lambda n: (("raters" in n) * 3 + ("_all" in n) * 2 + ("power" in n) * 1, n))
    return [(n.replace("_", " "), tables[n]) for n in order]


def to_markdown(tables: dict[str, pd.DataFrame]) -> str:
    parts = ["# Rating study report\n", summary(tables) + "\n", "## Column keys\n"]
    parts += [f"- **{k}**: {v}" for k, v in KEYS.items()]
    for name, t in _sections(tables):
        parts.append(f"\n## {name}\n\n{t.to_markdown(index=False, floatfmt='.3f')}\n")
    return "\n".join(parts)


def to_html(tables: dict[str, pd.DataFrame]) -> str:
    key = "screened" if "conditions_screened" in tables else "all"
    img = _plot(tables[f"conditions_{key}"], tables.get(f"images_{key}"))
    para = "".join(f"<p>{html.escape(p).replace('**', '')}</p>" for p in summary(tables).split("\n\n"))
    keys = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in KEYS.items())
    body = [f"<h1>Rating study report</h1><section id='summary'>{para}</section>",
            f"<img alt='Results per condition and MOS against SSIM and PSNR' src='data:image/png;base64,{img}'>",
            f"<details><summary>Column keys</summary><dl>{keys}</dl></details>"]
    for name, t in _sections(tables):
        body.append(f"<h2>{html.escape(name)}</h2>" + t.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–"))
    style = ("body{font-family:sans-serif;max-width:1150px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}dt{font-weight:bold}")
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
