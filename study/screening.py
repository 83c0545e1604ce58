"""Which raters to trust. Every rule is documented here and its evidence reported per rater.

1. Gold trials (ITU-T P.808 trapping), a clear-cut case with a known answer: the hidden reference against a severe
   degradation. A gold trial fails (each design's rule, ``study.designs``) when the rater prefers the degraded side
   or calls them equal (pc), scores it at least as high as the reference or prefers it (ab), or gives the severe
   degradation 4 or 5 (acr-hr: "good"; dcr: "not annoying"). A rater failing more than 25% of gold trials is out.
2. Repeats (an earlier trial shown again, pairs with sides swapped): a rater whose scores for the same stimulus
   differ by more than 1.5 points on average, or whose preference reverses (A over B, then B over A) in more than
   half of the repeats, is out. Moving between a preference and "no difference" is not counted.
3. Zero variance: a rater who gave every stimulus the same score is out (designs with scores).
4. ITU-R BT.500-14 Annex 1 §2.3.1 (β2 kurtosis test), every score counted, repetitions included.
5. ITU-T P.913 §12.6 correlation screening: r1 = Pearson correlation of the rater's scores with the mean score the
   other raters gave the same stimuli, r2 = the same over the rater's per-condition means. Rejected when
   r1 < 0.75 and r2 < 0.8 (an inverted or random rater), given at least 4 stimuli.
6. Preference agreement (pc, ab), the analogue of 5 for choices: on pairs where the other raters clearly agree (at
   least 75:25, ties as half), a rater choosing with them in under 70% of at least 5 such votes (a tie counting
   half) is out; a random or one-sided clicker agrees about half the time.

Reported besides, not used to reject: SUREAL-style rater bias (mean offset from the stimulus consensus) and
inconsistency (spread of the rest), estimated by alternating consensus and bias a few times.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from study.designs import DESIGNS, LEGACY

GOLD_MAX_FAIL = 0.25
REPEAT_MAX_DIFF = 1.5
REPEAT_MAX_FLIPS = 0.5
P913_R1, P913_R2 = 0.75, 0.8
CLEAR, MIN_AGREEMENT, MIN_CLEAR_VOTES = 0.75, 0.7, 5


def ratings_long(votes: pd.DataFrame) -> pd.DataFrame:
    """One row per given score: rater, trial, kind, image, condition, score (unscored sides dropped)."""
    a = votes.assign(condition=votes.condition_a, score=votes.score_a)
    b = votes.assign(condition=votes.condition_b, score=votes.score_b)
    cols = ["rater", "trial", "kind", "image", "condition", "score"]
    out = pd.concat([a[cols], b[cols]], ignore_index=True)
    return out[out.score.notna()].astype({"score": float})


def gold_failures(votes: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    g = votes[votes.kind == "gold"].copy()
    if g.empty:
        return pd.DataFrame(columns=["rater", "gold_trials", "gold_failed"])
    design = g.design if "design" in g else pd.Series(LEGACY, index=g.index)
    ref_is_a = g.condition_a == reference
    score_a, score_b = (pd.to_numeric(g[c]).astype(float) for c in ("score_a", "score_b"))
    facts = pd.DataFrame({"prefers_bad": np.where(ref_is_a, g.preference == "b", g.preference == "a"),
                          "tie": g.preference == "none", "ref_score": np.where(ref_is_a, score_a, score_b),
                          "bad_score": np.where(ref_is_a, score_b, score_a), "score_a": score_a}, index=g.index)
    g["failed"] = False
    for name, rows in facts.groupby(design):  # each design's own rule (study/designs.py)
        if name in DESIGNS:
            g.loc[rows.index, "failed"] = DESIGNS[name].gold_failed(rows).astype(bool).to_numpy()
    return g.groupby("rater").agg(gold_trials=("failed", "size"), gold_failed=("failed", "sum")).reset_index()


def _winner(vote) -> str | None:
    """The condition a vote preferred, or None for 'no difference' or no preference asked."""
    return {"a": vote.condition_a, "b": vote.condition_b}.get(vote.preference)


def repeat_consistency(votes: pd.DataFrame) -> pd.DataFrame:
    cols = ["rater", "repeats", "repeat_mean_diff", "repeat_flips"]
    rep = votes[(votes.kind == "repeat") & votes.repeat_of.notna()] if "repeat_of" in votes else votes.iloc[:0]
    if rep.empty:
        return pd.DataFrame(columns=cols)
    orig = votes.set_index(["rater", "trial"])
    rows = []
    for rater, grp in rep.groupby("rater"):
        diffs, flips = [], []
        for r in grp.itertuples():
            key = (rater, int(r.repeat_of))
            if key not in orig.index:
                continue
            o = orig.loc[key]
            first = {o.condition_a: o.score_a, o.condition_b: o.score_b}  # by condition, whatever side it was on
            for cond, score in ((r.condition_a, r.score_a), (r.condition_b, r.score_b)):
                if pd.notna(score) and pd.notna(first.get(cond)):
                    diffs.append(abs(score - first[cond]))
            w1, w2 = _winner(o), _winner(r)
            flips.append(w1 is not None and w2 is not None and w1 != w2)
        if flips:
            rows.append({"rater": rater, "repeats": len(flips), "repeat_mean_diff": float(np.mean(diffs)) if diffs else np.nan,
                         "repeat_flips": float(np.mean(flips))})
    return pd.DataFrame(rows, columns=cols)


def bt500_rejections(ratings: pd.DataFrame) -> pd.DataFrame:
    """ITU-R BT.500-14 Annex 1 §2.3.1. Per presentation (image, condition), over every score given to it: mean,
    std and kurtosis β2 = m4 / m2². With k = 2 if 2 ≤ β2 ≤ 4 (normal) else √20, a score ≥ mean + kσ counts in P and
    one ≤ mean − kσ in Q, each repetition separately. A rater is rejected if (P+Q)/N > 0.05 and
    |(P−Q)/(P+Q)| < 0.3, N being the number of scores they gave."""
    cols = ["rater", "N", "P", "Q", "bt500_reject"]
    if ratings.empty:
        return pd.DataFrame(columns=cols)
    grp = ratings.groupby(["image", "condition"]).score
    d = ratings.assign(mean=grp.transform("mean"), std=grp.transform("std"), count=grp.transform("size"))
    dev = d.score - d["mean"]
    m2 = (dev**2).groupby([d.image, d.condition]).transform("mean")
    m4 = (dev**4).groupby([d.image, d.condition]).transform("mean")
    beta2 = m4 / m2.where(m2 > 0)
    k = np.where((beta2 >= 2) & (beta2 <= 4), 2.0, np.sqrt(20))
    spread = (k * d["std"]).where(d["std"] > 0)  # no spread: nobody is an outlier
    valid = (d["count"] >= 3) & spread.notna()
    d["P"] = valid & (d.score >= d["mean"] + spread)
    d["Q"] = valid & (d.score <= d["mean"] - spread)
    out = d.groupby("rater").agg(N=("score", "size"), P=("P", "sum"), Q=("Q", "sum")).reset_index()
    pq = out.P + out.Q
    out["bt500_reject"] = (pq > 0) & (pq / out.N > 0.05) & ((out.P - out.Q).abs() / pq.where(pq > 0, 1) < 0.3)
    return out[cols]


def correlation_screening(ratings: pd.DataFrame) -> pd.DataFrame:
    """P.913 r1 (per stimulus) and r2 (per condition), each rater against the others' mean (leave-one-out)."""
    cols = ["rater", "r1", "r2", "p913_reject"]
    if ratings.empty:
        return pd.DataFrame(columns=cols)
    per = ratings.groupby(["rater", "image", "condition"]).score.mean().rename("own").reset_index()
    tot = ratings.groupby(["image", "condition"]).score.agg(["sum", "count"]).reset_index()
    mine = ratings.groupby(["rater", "image", "condition"]).score.agg(["sum", "count"]).reset_index()
    per = per.merge(tot, on=["image", "condition"]).merge(mine, on=["rater", "image", "condition"], suffixes=("", "_r"))
    others = per["count"] - per["count_r"]
    per["others"] = (per["sum"] - per["sum_r"]) / others.where(others > 0)
    per = per.dropna(subset=["others"])
    rows = []
    for rater, g in per.groupby("rater"):
        def r(x, y):
            return float(np.corrcoef(x, y)[0, 1]) if len(x) >= 4 and x.std() > 0 and y.std() > 0 else np.nan
        by_cond = g.groupby("condition")[["own", "others"]].mean()
        r1, r2 = r(g.own, g.others), (r(by_cond.own, by_cond.others) if len(by_cond) >= 3 else np.nan)
        r2_low = r2 < P913_R2 if np.isfinite(r2) else True
        rows.append({"rater": rater, "r1": r1, "r2": r2, "p913_reject": bool(np.isfinite(r1) and r1 < P913_R1 and r2_low)})
    return pd.DataFrame(rows, columns=cols)


def preference_agreement(votes: pd.DataFrame) -> pd.DataFrame:
    """Per rater: votes on clearly decided pairs and the share of them that agree with the other raters."""
    cols = ["rater", "clear_votes", "agreement", "agreement_reject"]
    v = votes[votes.kind.isin(["main", "repeat"]) & votes.preference.isin(["a", "b", "none"])
              & votes.condition_b.notna()].copy()
    if v.empty:
        return pd.DataFrame(columns=cols)
    first = np.minimum(v.condition_a, v.condition_b)
    v["unit"] = v.image + "\0" + first + "\0" + np.maximum(v.condition_a, v.condition_b)
    winner = np.where(v.preference == "a", v.condition_a, np.where(v.preference == "b", v.condition_b, ""))
    v["x"] = np.where(winner == "", 0.5, (winner == first).astype(float))  # 1: the first-named condition won
    unit = v.groupby("unit").x.agg(["sum", "count"])
    mine = v.groupby(["rater", "unit"]).x.agg(["sum", "count"])
    v = v.join(unit, on="unit").join(mine, on=["rater", "unit"], rsuffix="_r")
    rest = v["count"] - v["count_r"]
    others = (v["sum"] - v["sum_r"]) / rest.where(rest > 0)
    clear = (others - 0.5).abs() >= CLEAR - 0.5
    v["agree"] = 1 - (v.x - (others > 0.5)).abs()
    out = v[clear].groupby("rater").agree.agg(clear_votes="size", agreement="mean").reindex(pd.unique(v.rater))
    out["clear_votes"] = out.clear_votes.fillna(0).astype(int)
    out["agreement_reject"] = (out.clear_votes >= MIN_CLEAR_VOTES) & (out.agreement < MIN_AGREEMENT)
    return out.rename_axis("rater").reset_index()[cols]


def rater_bias(ratings: pd.DataFrame, rounds: int = 10) -> pd.DataFrame:
    """SUREAL-style per-rater bias and inconsistency: alternate stimulus consensus (mean of bias-corrected scores)
    and rater bias (mean residual from the consensus); inconsistency is the std of what remains."""
    cols = ["rater", "bias", "inconsistency"]
    if ratings.empty:
        return pd.DataFrame(columns=cols)
    key = ratings.image.astype(str) + "\0" + ratings.condition.astype(str)
    bias = pd.Series(0.0, index=pd.unique(ratings.rater))
    for _ in range(rounds):
        consensus = (ratings.score - ratings.rater.map(bias)).groupby(key).transform("mean")
        bias = (ratings.score - consensus).groupby(ratings.rater).mean()
        bias -= bias.mean()
    resid = ratings.score - consensus - ratings.rater.map(bias)
    out = pd.DataFrame({"bias": bias, "inconsistency": resid.groupby(ratings.rater).std()})
    return out.rename_axis("rater").reset_index()[cols]


def screen(votes: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """Per rater: the evidence for each rule, the verdict and the reasons."""
    ratings = ratings_long(votes)
    scored = ratings[ratings.kind.isin(["main", "repeat"])]
    base = votes[votes.kind != "gold"].groupby("rater").agg(votes=("trial", "nunique")).reset_index()
    base = base.merge(scored.groupby("rater").score.std().rename("score_std").reset_index(), on="rater", how="left")
    table = (base.merge(gold_failures(votes, reference), on="rater", how="left")
             .merge(repeat_consistency(votes), on="rater", how="left")
             .merge(bt500_rejections(scored), on="rater", how="left")
             .merge(correlation_screening(scored), on="rater", how="left")
             .merge(rater_bias(scored), on="rater", how="left")
             .merge(preference_agreement(votes), on="rater", how="left"))
    has_scores = not scored.empty
    reasons = []
    for _, r in table.iterrows():
        why = []
        if pd.notna(r.get("gold_trials")) and r.gold_trials and r.gold_failed / r.gold_trials > GOLD_MAX_FAIL:
            why.append(f"failed {int(r.gold_failed)}/{int(r.gold_trials)} gold")
        if pd.notna(r.get("repeats")) and ((r.repeat_mean_diff > REPEAT_MAX_DIFF) or r.repeat_flips > REPEAT_MAX_FLIPS):
            diff = "" if pd.isna(r.repeat_mean_diff) else f"Δscore {r.repeat_mean_diff:.1f}, "
            why.append(f"inconsistent repeats ({diff}reversals {r.repeat_flips:.0%})")
        if has_scores and not r.score_std > 0:
            why.append("zero variance")
        if r.get("bt500_reject") is True:
            why.append("BT.500 outlier")
        if r.get("p913_reject") is True:
            why.append(f"P.913 correlation (r1 {r.r1:.2f}, r2 {r.r2:.2f})")
        if r.get("agreement_reject") is True:
            why.append(f"disagrees on clear pairs ({r.agreement:.0%} of {int(r.clear_votes)})")
        reasons.append("; ".join(why))
    table["reasons"] = reasons
    table["accepted"] = table.reasons == ""
    return table
