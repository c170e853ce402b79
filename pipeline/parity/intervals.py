"""Exact 95% intervals from counts: Clopper-Pearson for a proportion, and a paired difference of two
proportions from its discordant pairs. Plain binomial sums in numpy; no scipy.
"""

from __future__ import annotations

import numpy as np

ALPHA = 0.05  # two-sided: 95% intervals
_STEPS = 64  # bisection on [0, 1]: 2**-64, far below any digit a report shows


def _log_choose(n: int) -> np.ndarray:
    """log C(n, j) for j = 0..n, by the recurrence C(n, j) = C(n, j-1) (n-j+1) / j (no overflow, no gamma)."""
    j = np.arange(1, n + 1, dtype=np.float64)
    return np.concatenate([[0.0], np.cumsum(np.log(n - j + 1) - np.log(j))])


def _tail(log_choose: np.ndarray, n: int, p: float, low: int, high: int) -> float:
    """P(low <= X <= high) for X ~ Binomial(n, p), summed in log space (each tail directly: no 1 - x)."""
    if p <= 0.0:
        return 1.0 if low == 0 else 0.0
    if p >= 1.0:
        return 1.0 if high == n else 0.0
    j = np.arange(low, high + 1)
    terms = log_choose[low : high + 1] + j * np.log(p) + (n - j) * np.log1p(-p)
    top = terms.max()
    return float(np.exp(top) * np.exp(terms - top).sum())


def _solve(tail_at: object, rising: bool, target: float) -> float:
    """The p in [0, 1] where a monotone tail probability equals `target`, by bisection."""
    low, high = 0.0, 1.0
    for _ in range(_STEPS):
        middle = (low + high) / 2
        above = tail_at(middle) > target  # type: ignore[operator]
        if above == rising:
            high = middle
        else:
            low = middle
    return (low + high) / 2


def clopper_pearson(successes: int, trials: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Exact interval for a binomial proportion: coverage at least 1 - alpha for every true value."""
    if trials == 0:
        return 0.0, 1.0
    log_choose = _log_choose(trials)
    lower = upper = None
    if successes == 0:
        lower = 0.0
    if successes == trials:
        upper = 1.0
    if lower is None:  # P(X >= k | p) = alpha/2, rising in p
        lower = _solve(lambda p: _tail(log_choose, trials, p, successes, trials), True, alpha / 2)
    if upper is None:  # P(X <= k | p) = alpha/2, falling in p
        upper = _solve(lambda p: _tail(log_choose, trials, p, 0, successes), False, alpha / 2)
    return lower, upper


def paired_difference(worse: int, better: int, samples: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Interval for (worse - better) / samples, the paired difference of two accuracies on the same samples.

    `worse`: samples the reference got right and the candidate wrong; `better`: the other way round. The
    concordant samples say nothing about the difference. The difference is d (2 pi - 1), with d the rate of
    discordant samples and pi the share of them the candidate lost; each gets an exact Clopper-Pearson interval
    at alpha/2, so the pair holds with probability at least 1 - alpha (Bonferroni) and the difference lies
    between the extremes over that rectangle. Conservative, never optimistic: with no discordant sample in
    360 the interval is still about +-1.2%.
    """
    discordant = worse + better
    rate_low, rate_high = clopper_pearson(discordant, samples, alpha / 2)
    share_low, share_high = clopper_pearson(worse, discordant, alpha / 2)
    corners = [rate * (2 * share - 1) for rate in (rate_low, rate_high) for share in (share_low, share_high)]
    return min(corners), max(corners)
