"""Bradley–Terry scaling of preferences, with ties modelled (Davidson 1970) and a bootstrap over raters.

Davidson's model: P(i over j) = π_i / D, P(tie) = ν √(π_i π_j) / D, D = π_i + π_j + ν √(π_i π_j). It is fitted by
the minorise–maximise fixed point for π (Hunter 2004) alternating with Newton steps for ν, batched so that 1000 bootstrap fits run as one array
computation. Strengths are reported as log π, centred to mean 0. Intervals resample whole raters (a rater's
votes stay together), and contrasts between chosen pairs get percentile intervals and bootstrap p-values with
Holm's correction for multiple comparisons. A weak prior (``prior`` virtual ties per compared pair) keeps
strengths finite when a condition never loses; ``prior=0`` gives the plain maximum-likelihood fit.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def count_matrices(votes: pd.DataFrame, items: list[str]) -> tuple[np.ndarray, np.ndarray, list]:
    """Per rater: wins[r, i, j] (i preferred over j) and ties[r, i, j] (symmetric), and the rater ids."""
    idx = {c: i for i, c in enumerate(items)}
    v = votes[votes.condition_a.isin(idx) & votes.condition_b.isin(idx) & votes.preference.isin(["a", "b", "none"])]
    raters = list(pd.unique(v.rater))
    ri = {r: k for k, r in enumerate(raters)}
    k = len(items)
    wins, ties = np.zeros((len(raters), k, k)), np.zeros((len(raters), k, k))
    r, a, b = v.rater.map(ri).to_numpy(), v.condition_a.map(idx).to_numpy(), v.condition_b.map(idx).to_numpy()
    pref = v.preference.to_numpy()
    np.add.at(wins, (r[pref == "a"], a[pref == "a"], b[pref == "a"]), 1)
    np.add.at(wins, (r[pref == "b"], b[pref == "b"], a[pref == "b"]), 1)
    np.add.at(ties, (r[pref == "none"], a[pref == "none"], b[pref == "none"]), 1)
    ties = ties + ties.transpose(0, 2, 1)
    return wins, ties, raters


def davidson(wins: np.ndarray, ties: np.ndarray, prior: float = 0.1, iters: int = 300,
             tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Fit Davidson's model to count matrices of shape (K, K) or (B, K, K). Returns (log-strengths centred to
    mean 0, ν) of shape (B, K) and (B,) (or (K,) and () for one matrix).

    Maximum likelihood by Newton's method on θ = log π (batched K×K solves, steps capped for nearly separated
    data) alternating with Newton steps on ν; a few dozen iterations where the MM fixed point needs thousands."""
    single = wins.ndim == 2
    w, t = (x[None] if single else x for x in (wins, ties))
    n = w + w.transpose(0, 2, 1) + t
    if prior:
        compared = n.sum(0, keepdims=True) > 0
        t, n = t + prior * compared, n + prior * compared
    b, k = w.shape[:2]
    score = w.sum(2) + t.sum(2) / 2  # W_i + T_i / 2
    total_ties = np.triu(t, 1).sum((1, 2))
    theta = np.zeros((b, k))
    nu = np.where(total_ties > 0, 0.5, 0.0)
    ones = np.ones((k, k))
    for _ in range(iters):
        e = np.exp(theta)
        ei, ej = e[:, :, None], e[:, None, :]
        half = nu[:, None, None] / 2 * np.sqrt(ei * ej)
        d = ei + ej + 2 * half
        p = (ei + half) / d  # expected score of i against j
        grad = score - (n * p).sum(2)
        dpi = ((ei + half / 2) * d - (ei + half) ** 2) / d**2
        dpj = ((half / 2) * d - (ei + half) * (ej + half)) / d**2
        info = np.where(np.eye(k, dtype=bool), (n * dpi).sum(2)[:, :, None], n * dpj)  # observed information
        step = np.linalg.solve(info + ones, grad[..., None])[..., 0]
        step = np.clip(step, -2.0, 2.0)
        theta = theta + step
        theta -= theta.mean(1, keepdims=True)
        e = np.exp(theta)
        root = np.triu(np.sqrt(e[:, :, None] * e[:, None, :]), 1)
        both = e[:, :, None] + e[:, None, :]
        old_nu = nu
        for _ in range(3):  # Newton on ν's score equation T/ν = Σ n √(π_i π_j) / D, π held fixed
            d = both + nu[:, None, None] * root
            f = total_ties / np.maximum(nu, 1e-12) - (n * root / d).sum((1, 2))
            fp = -total_ties / np.maximum(nu, 1e-12) ** 2 + (n * root**2 / d**2).sum((1, 2))
            nu_step = np.where(fp < 0, f / np.where(fp < 0, fp, -1), 0.0)
            nu = np.where(total_ties > 0, np.where(nu - nu_step > 0, nu - nu_step, nu / 2), 0.0)
        if np.abs(step).max() < tol and np.abs(nu - old_nu).max() < tol:
            break
    return (theta[0], nu[0]) if single else (theta, nu)


def bradley_terry(votes: pd.DataFrame, items: list[str], boots: int = 1000, seed: int = 0,
                  contrasts: list[tuple[str, str]] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(strength table, contrast table). Strengths: bt (log π, mean 0), bt_lo/bt_hi (95%, bootstrap over raters),
    ties_nu (Davidson's tie parameter). Contrasts: a − b in log-strength, CI, bootstrap p and Holm-adjusted p."""
    from statsmodels.stats.multitest import multipletests

    empty = pd.DataFrame({"condition": items, "bt": np.nan, "bt_lo": np.nan, "bt_hi": np.nan})
    cols = ["a", "b", "diff", "lo", "hi", "p", "p_holm", "P_a_over_b_decisive"]
    wins, ties, raters = count_matrices(votes, items)
    if not len(raters) or (wins.sum() + ties.sum()) == 0:
        return empty, pd.DataFrame(columns=cols)
    theta, nu = davidson(wins.sum(0), ties.sum(0))
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(raters), np.full(len(raters), 1 / len(raters)), size=boots).astype(float)
    bw, bt_ = np.einsum("br,rij->bij", weights, wins), np.einsum("br,rij->bij", weights, ties)
    samples, _ = davidson(bw, bt_)
    lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
    table = pd.DataFrame({"condition": items, "bt": theta, "bt_lo": lo, "bt_hi": hi, "ties_nu": float(nu)})
    pairs = contrasts if contrasts else [(a, b) for i, a in enumerate(items) for b in items[i + 1:]]
    idx = {c: i for i, c in enumerate(items)}
    rows = []
    for a, b in pairs:
        if a not in idx or b not in idx:
            continue
        d = samples[:, idx[a]] - samples[:, idx[b]]
        p = min(1.0, 2 * (1 + min((d <= 0).sum(), (d >= 0).sum())) / (boots + 1))
        est = theta[idx[a]] - theta[idx[b]]
        rows.append({"a": a, "b": b, "diff": est, "lo": np.percentile(d, 2.5), "hi": np.percentile(d, 97.5), "p": p,
                     "P_a_over_b_decisive": 1 / (1 + np.exp(-est))})
    out = pd.DataFrame(rows, columns=cols)
    if len(out):
        out["p_holm"] = multipletests(out.p, method="holm")[1]
    return table, out
