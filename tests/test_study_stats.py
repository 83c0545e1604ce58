"""The study's statistics against simulation and exact computations: interval coverage with rater and image
effects, Bradley–Terry with ties against a direct maximum-likelihood fit, power, BT.500 counting."""
import time

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from study.bt import bradley_terry, davidson
from study.mos import clustered_mean_ci, votes_for_halfwidth, votes_for_preference
from study.screening import bt500_rejections

MU = np.array([4.2, 3.6, 3.0, 2.2])


def simulated_study(seed, raters=20, images=10, seen=0.8, rater_sd=0.5, image_sd=0.4, noise=0.7):
    """One ACR study: each rater scores a random 80% of the (image, condition) stimuli. Score = condition mean +
    rater bias + image×condition effect + noise. The truth for a condition is its mean over these images."""
    rng = np.random.default_rng(seed)
    bias, effect = rng.normal(0, rater_sd, raters), rng.normal(0, image_sd, (images, len(MU)))
    r, j, c = np.nonzero(rng.random((raters, images, len(MU))) < seen)
    y = MU[c] + bias[r] + effect[j, c] + rng.normal(0, noise, len(r))
    return r, c, y, MU + effect.mean(0)


def coverage(studies=400, **kw):
    hits, naive = [], []
    for s in range(studies):
        r, c, y, truth = simulated_study(s, **kw)
        for k in range(len(MU)):
            ci = clustered_mean_ci(y[c == k], r[c == k])
            hits.append(ci["lo"] <= truth[k] <= ci["hi"])
            lo, hi = stats.t.interval(0.95, (c == k).sum() - 1, loc=y[c == k].mean(), scale=stats.sem(y[c == k]))
            naive.append(lo <= truth[k] <= hi)
    return np.mean(hits), np.mean(naive)


def test_rater_clustered_interval_covers_95_percent():
    start = time.perf_counter()
    covered, naive = coverage(400)
    assert 0.93 <= covered <= 0.97, covered
    assert naive < 0.85  # the per-vote t-interval this replaced: far too narrow
    few, _ = coverage(200, raters=10, images=4)
    assert 0.93 <= few <= 0.97, few
    assert time.perf_counter() - start < 30


def test_design_effect_and_votes_needed():
    r, c, y, _ = simulated_study(0)
    ci = clustered_mean_ci(y[c == 0], r[c == 0])
    assert ci["deff"] > 2  # rater bias sd 0.5 with ~8 votes per rater and condition
    need = votes_for_halfwidth(ci["std"], ci["deff"], 0.2)
    assert need == int(np.ceil(ci["deff"] * (1.959964 * ci["std"] / 0.2) ** 2))
    assert votes_for_halfwidth(ci["std"], ci["deff"], 0.1) == pytest.approx(4 * need, rel=0.01)
    # 60/40 against 50/50, 80% power, 5% two-sided: Cohen's h = 2 asin √0.6 − 2 asin √0.5, n = ((z.975 + z.8) / h)²
    n = ((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) / (2 * np.arcsin(np.sqrt(0.6)) - 2 * np.arcsin(np.sqrt(0.5)))) ** 2
    assert n == pytest.approx(193.6, abs=0.05) and votes_for_preference(0.6) == 194
    assert votes_for_preference(0.6, deff=1.5, tie_rate=0.25) == int(np.ceil(n * 1.5 / 0.75))


def davidson_counts(seed, strengths, nu, n=800):
    rng = np.random.default_rng(seed)
    k = len(strengths)
    wins, ties = np.zeros((k, k)), np.zeros((k, k))
    for _ in range(n):
        i, j = rng.choice(k, 2, replace=False)
        pi, pj = np.exp(strengths[i]), np.exp(strengths[j])
        d = pi + pj + nu * np.sqrt(pi * pj)
        u = rng.random() * d
        if u < pi:
            wins[i, j] += 1
        elif u < pi + pj:
            wins[j, i] += 1
        else:
            ties[i, j] += 1
            ties[j, i] += 1
    return wins, ties


def exact_davidson(wins, ties):
    """Direct maximisation of Davidson's log-likelihood with scipy (BFGS over θ_1..θ_{K−1} and log ν)."""
    k = len(wins)

    def nll(x):
        th = np.r_[x[:k - 1], -x[:k - 1].sum()]
        nu = np.exp(x[-1])
        ll = 0.0
        for i in range(k):
            for j in range(k):
                if i != j:
                    d = np.exp(th[i]) + np.exp(th[j]) + nu * np.exp((th[i] + th[j]) / 2)
                    ll += wins[i, j] * (th[i] - np.log(d)) + (ties[i, j] * (np.log(nu) + (th[i] + th[j]) / 2 - np.log(d)) if i < j else 0)
        return -ll

    x = optimize.minimize(nll, np.zeros(k), method="BFGS", options={"gtol": 1e-10}).x
    return np.r_[x[:k - 1], -x[:k - 1].sum()], np.exp(x[-1])


def test_bradley_terry_with_ties_is_the_exact_maximum_likelihood_fit():
    truth = np.array([0.8, 0.2, -0.3, -0.7])
    wins, ties = davidson_counts(0, truth, nu=0.6)
    theta, nu = davidson(wins, ties, prior=0)
    exact_theta, exact_nu = exact_davidson(wins, ties)
    np.testing.assert_allclose(theta, exact_theta, atol=1e-5)
    assert nu == pytest.approx(exact_nu, rel=1e-5)
    # counting a tie as a full win each way (the old code) shrinks the strengths; Davidson recovers them
    old, _ = davidson(wins + ties, np.zeros_like(ties), prior=0)
    assert np.abs(old).sum() < 0.9 * np.abs(theta).sum()
    assert np.abs(theta - truth).max() < 0.15
    batch, _ = davidson(np.stack([wins, wins]), np.stack([ties, ties]), prior=0)  # batched = one by one
    np.testing.assert_allclose(batch, [theta, theta], atol=1e-7)


def test_bradley_terry_bootstrap_over_raters_and_contrasts():
    rng = np.random.default_rng(1)
    items = ["teacher", "student", "degraded"]
    truth = {"teacher": 0.6, "student": 0.4, "degraded": -1.0}
    rows = []
    for rater in range(15):
        lean = rng.normal(0, 0.3)  # each rater leans a little: their votes are not independent
        for _ in range(20):
            a, b = rng.choice(items, 2, replace=False)
            d = truth[a] - truth[b] + lean * (a == "student")
            u = rng.random()
            pref = "a" if u < 0.8 / (1 + np.exp(-d)) else "b" if u < 0.8 else "none"
            rows.append({"rater": f"r{rater}", "condition_a": a, "condition_b": b, "preference": pref})
    votes = pd.DataFrame(rows)
    start = time.perf_counter()
    table, contrasts = bradley_terry(votes, items, boots=1000, contrasts=[("student", "teacher"), ("student", "degraded")])
    assert time.perf_counter() - start < 10
    t = table.set_index("condition")
    assert (t.bt_lo < t.bt).all() and (t.bt < t.bt_hi).all() and t.bt.sum() == pytest.approx(0)
    c = contrasts.set_index(["a", "b"])
    assert c.loc[("student", "degraded"), "p_holm"] < 0.01 and c.loc[("student", "degraded"), "lo"] > 0
    assert c.loc[("student", "teacher"), "lo"] < 0 < c.loc[("student", "teacher"), "hi"]  # close: not shown apart
    assert (c.p_holm >= c.p).all()


def test_bt500_counts_every_repetition():
    """x scores one presentation twice, 5 and 1: their mean (3) is the consensus, but each repetition is an
    outlier on its own side (BT.500 counts scores, not per-rater means), so x is rejected; nobody else is."""
    others = [2] * 4 + [3] * 8 + [4] * 4
    rows = [{"rater": f"o{i}", "image": "i", "condition": "c", "score": s} for i, s in enumerate(others)]
    rows += [{"rater": "x", "image": "i", "condition": "c", "score": s} for s in (5, 1)]
    out = bt500_rejections(pd.DataFrame(rows)).set_index("rater")
    assert (out.loc["x", "N"], out.loc["x", "P"], out.loc["x", "Q"]) == (2, 1, 1)
    assert out.loc["x", "bt500_reject"] and not out.drop("x").bt500_reject.any()
