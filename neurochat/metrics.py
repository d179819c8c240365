"""Identification and correlation metrics shared by the evaluations (paper App. C.1).

Two-way identification follows Ozcelik & VanRullen (Brain-Diffuser), as the paper does: for each
sample i, the share of other samples j for which the truth of i correlates more with the
prediction of i than with the prediction of j; averaged over i.
"""

from __future__ import annotations

import numpy as np


def spread_over_cases(values) -> float:
    """Standard deviation over the cases (0 for one case), kept beside a mean so that two evaluations can
    tell a real change from the sampling of their cases (`train.demo_bundle --compare`)."""
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def pearson_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every row of `a` (n, d) with every row of `b` (m, d) → (n, m)."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    a /= np.linalg.norm(a, axis=1, keepdims=True) + 1e-12
    b /= np.linalg.norm(b, axis=1, keepdims=True) + 1e-12
    return a @ b.T


def two_way_identification(predicted: np.ndarray, true: np.ndarray) -> float:
    """Mean over i of the share of j ≠ i with corr(true_i, pred_i) > corr(true_i, pred_j)."""
    n = len(true)
    if n < 2:
        raise ValueError("two-way identification needs at least two samples")
    corr = pearson_matrix(true, predicted)  # (n, n): truth i vs prediction j
    own = np.diag(corr)[:, None]
    wins = (own > corr).sum(axis=1)  # the diagonal never counts (own > own is False)
    return float(np.mean(wins / (n - 1)))


def top1_retrieval(predicted: np.ndarray, true: np.ndarray) -> float:
    """Share of predictions whose most correlated truth, among all n, is their own."""
    corr = pearson_matrix(predicted, true)  # (n, n): prediction i vs truth j
    return float(np.mean(corr.argmax(axis=1) == np.arange(len(true))))


def mean_correlation(predicted: np.ndarray, true: np.ndarray) -> float:
    """Mean Pearson correlation between each prediction and its own truth (flattened)."""
    return float(np.mean(np.diag(pearson_matrix(predicted, true))))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for boolean `labels` (Mann–Whitney U, ties counted half)."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=bool).reshape(-1)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC-AUC needs both positive and negative samples")
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
