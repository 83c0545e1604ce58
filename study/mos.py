"""Mean opinion scores with confidence intervals that know each rater gives many votes, and the sample size needed.

Votes of one rater are not independent (a strict rater is strict on every picture), so a t-interval over votes is
too narrow. The interval here is cluster-robust over raters: the variance of the mean is estimated from each
rater's summed deviation (the CR1 sandwich, equal to the linearised delete-one-rater jackknife) with a t
distribution of R − 1 degrees of freedom. It is about *these* images: raters are treated as a random sample, the
test images as chosen (as ITU-T P.910 selects test material), so image effects are part of what is estimated.
``tests/test_study_stats.py`` checks 93–97% coverage of the nominal 95% in 400 simulated studies with rater bias
and image effects.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def clustered_mean_ci(values, clusters, level: float = 0.95) -> dict:
    """Mean of ``values`` with a confidence interval that resamples whole ``clusters`` (raters).

    Returns mean, std (of the votes), n, raters, lo, hi, and the design effect (clustered variance over the
    variance the votes would have if independent)."""
    y = np.asarray(values, dtype=float)
    ok = np.isfinite(y)
    y, g = y[ok], np.asarray(clusters)[ok]
    n = len(y)
    out = dict(mean=np.nan, std=np.nan, n=n, raters=0, lo=np.nan, hi=np.nan, deff=np.nan)
    if n == 0:
        return out
    _, gi = np.unique(g, return_inverse=True)
    r = int(gi.max()) + 1
    m = y.mean()
    out.update(mean=m, raters=r, std=y.std(ddof=1) if n > 1 else np.nan)
    if r < 2:
        return out
    u = np.bincount(gi, weights=y - m, minlength=r) / n
    var = r / (r - 1) * np.sum(u**2)
    half = stats.t.ppf(0.5 + level / 2, r - 1) * math.sqrt(var)
    naive = out["std"] ** 2 / n if n > 1 else np.nan
    out.update(lo=m - half, hi=m + half, deff=var / naive if naive and naive > 0 else np.nan)
    return out


def votes_for_halfwidth(std: float, deff: float, half: float, level: float = 0.95) -> float:
    """Votes one condition needs for a CI half-width ``half``, with the observed spread and design effect."""
    if not (np.isfinite(std) and np.isfinite(deff)):
        return np.nan
    z = stats.norm.ppf(0.5 + level / 2)
    return math.ceil(max(deff, 1.0) * (z * std / half) ** 2)


def votes_for_preference(p: float = 0.6, power: float = 0.8, alpha: float = 0.05, deff: float = 1.0,
                         tie_rate: float = 0.0) -> float:
    """Votes one pair needs so that a true p : (1 − p) preference is detected (two-sided, against 50:50) with the
    given power: a one-sample test of a proportion (statsmodels), inflated by the design effect of rater
    clustering and by the share of 'no difference' answers, which carry no preference."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    n = NormalIndPower().solve_power(effect_size=proportion_effectsize(p, 0.5), power=power, alpha=alpha, ratio=0)
    deff = deff if np.isfinite(deff) else 1.0
    return math.ceil(n * max(deff, 1.0) / max(1.0 - tie_rate, 1e-6))
