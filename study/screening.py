"""Which raters to trust. Every rule is documented here and reported per rater.

1. Gold trials (the hidden reference against a severe degradation): a gold trial fails when the degraded side
   scores at least as high as the reference or is preferred. A rater failing more than 25% of gold trials is out
   (ITU-T P.808 style trapping).
2. Repeats (an earlier pair shown again, sides swapped): a rater whose scores for the same stimulus differ by more
   than 1.5 points on average, or whose preference reverses (A over B, then B over A) in more than half of the
   repeats, is out. Moving between a preference and "no difference" on a close pair is not counted.
3. Zero variance: a rater who gave every stimulus the same score is out.
4. ITU-R BT.500 observer screening (β2 kurtosis test) over the (image, condition) presentations the rater scored.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

GOLD_MAX_FAIL = 0.25
REPEAT_MAX_DIFF = 1.5
REPEAT_MAX_FLIPS = 0.5


def ratings_long(votes: pd.DataFrame) -> pd.DataFrame:
    """One row per scored image: rater, trial, kind, image, condition, score."""
    a = votes.assign(condition=votes.condition_a, score=votes.score_a)
    b = votes.assign(condition=votes.condition_b, score=votes.score_b)
    cols = ["rater", "trial", "kind", "image", "condition", "score"]
    return pd.concat([a[cols], b[cols]], ignore_index=True)


def gold_failures(votes: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    g = votes[votes.kind == "gold"].copy()
    if g.empty or reference is None:
        return pd.DataFrame(columns=["rater", "gold_trials", "gold_failed"])
    ref_is_a = g.condition_a == reference
    ref_score = np.where(ref_is_a, g.score_a, g.score_b)
    bad_score = np.where(ref_is_a, g.score_b, g.score_a)
    prefers_bad = np.where(ref_is_a, g.preference == "b", g.preference == "a")
    g["failed"] = (bad_score >= ref_score) | prefers_bad
    return g.groupby("rater").agg(gold_trials=("failed", "size"), gold_failed=("failed", "sum")).reset_index()


def _winner(vote) -> str | None:
    """The condition a vote preferred, or None for 'no difference'."""
    return {"a": vote.condition_a, "b": vote.condition_b}.get(vote.preference)


def repeat_consistency(votes: pd.DataFrame) -> pd.DataFrame:
    rep = votes[votes.kind == "repeat"]
    if rep.empty:
        return pd.DataFrame(columns=["rater", "repeats", "repeat_mean_diff", "repeat_flips"])
    orig = votes.set_index(["rater", "trial"])
    rows = []
    for rater, grp in rep.groupby("rater"):
        diffs, flips = [], []
        for _, r in grp.iterrows():
            key = (rater, int(r.repeat_of)) if "repeat_of" in r and pd.notna(r.repeat_of) else None
            if key is None or key not in orig.index:
                continue
            o = orig.loc[key]
            # compare by condition, whatever side each showing put it on
            first = {o.condition_a: o.score_a, o.condition_b: o.score_b}
            diffs += [abs(r.score_a - first.get(r.condition_a, r.score_a)), abs(r.score_b - first.get(r.condition_b, r.score_b))]
            w1, w2 = (_winner(v) for v in (o, r))
            flips.append(w1 is not None and w2 is not None and w1 != w2)
        if flips:
            rows.append({"rater": rater, "repeats": len(flips), "repeat_mean_diff": float(np.mean(diffs)),
                         "repeat_flips": float(np.mean(flips))})
    return pd.DataFrame(rows, columns=["rater", "repeats", "repeat_mean_diff", "repeat_flips"])


def bt500_rejections(ratings: pd.DataFrame) -> pd.DataFrame:
    """ITU-R BT.500-14 Annex 1 §2.3.1 screening. Per presentation: mean, std, kurtosis β2; a score counts in P if
    above mean + 2σ (normal, 2 ≤ β2 ≤ 4) or mean + √20σ (otherwise), in Q if below the mirror bound. A rater is
    rejected if (P+Q)/N > 0.05 and |(P−Q)/(P+Q)| < 0.3."""
    per = ratings.groupby(["rater", "image", "condition"]).score.mean().reset_index()
    stats = per.groupby(["image", "condition"]).score.agg(["mean", "std", "count"])
    m4 = per.merge(stats, on=["image", "condition"]).assign(d=lambda d: (d.score - d["mean"]))
    kurt = m4.groupby(["image", "condition"]).apply(
        lambda d: (d.d**4).mean() / max((d.d**2).mean() ** 2, 1e-12), include_groups=False).rename("beta2")
    m4 = m4.merge(kurt.reset_index(), on=["image", "condition"])
    k = np.where((m4.beta2 >= 2) & (m4.beta2 <= 4), 2.0, np.sqrt(20))
    valid = m4["count"] >= 3
    m4["P"] = valid & (m4.score > m4["mean"] + k * m4["std"].fillna(0))
    m4["Q"] = valid & (m4.score < m4["mean"] - k * m4["std"].fillna(0))
    out = m4.groupby("rater").agg(N=("score", "size"), P=("P", "sum"), Q=("Q", "sum")).reset_index()
    pq = out.P + out.Q
    out["bt500_reject"] = (pq / out.N > 0.05) & ((out.P - out.Q).abs() / pq.where(pq > 0, 1) < 0.3) & (pq > 0)
    return out


def screen(votes: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """Per rater: the evidence for each rule, the verdict and the reasons."""
    ratings = ratings_long(votes)
    scored = ratings[ratings.kind != "gold"]
    base = scored.groupby("rater").agg(votes=("trial", "nunique"), score_std=("score", "std")).reset_index()
    table = (base.merge(gold_failures(votes, reference), on="rater", how="left")
             .merge(repeat_consistency(votes), on="rater", how="left")
             .merge(bt500_rejections(scored[scored.kind == "main"]), on="rater", how="left"))
    reasons = []
    for _, r in table.iterrows():
        why = []
        if r.get("gold_trials", 0) and r.gold_failed / r.gold_trials > GOLD_MAX_FAIL:
            why.append(f"failed {int(r.gold_failed)}/{int(r.gold_trials)} gold")
        if pd.notna(r.get("repeat_mean_diff")) and (r.repeat_mean_diff > REPEAT_MAX_DIFF or r.repeat_flips > REPEAT_MAX_FLIPS):
            why.append(f"inconsistent repeats (Δscore {r.repeat_mean_diff:.1f}, reversals {r.repeat_flips:.0%})")
        if not r.score_std > 0:
            why.append("zero variance")
        if r.get("bt500_reject") is True:
            why.append("BT.500 outlier")
        reasons.append("; ".join(why))
    table["reasons"] = reasons
    table["accepted"] = table.reasons == ""
    return table
