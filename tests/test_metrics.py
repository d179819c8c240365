"""Identification metrics: known answers, and a loop-by-loop reference of Brain-Diffuser's protocol."""

from __future__ import annotations

import numpy as np
import pytest

from neurochat.metrics import mean_correlation, pearson_matrix, top1_retrieval, two_way_identification


def test_perfect_shuffled_and_chance_predictions():
    rng = np.random.default_rng(0)
    true = rng.standard_normal((20, 16))
    assert two_way_identification(true, true) == 1.0
    assert top1_retrieval(true, true) == 1.0
    assert mean_correlation(true * 3 + 1, true) == pytest.approx(1.0)
    shuffled = true[np.roll(np.arange(20), 1)]  # every prediction belongs to another sample
    assert top1_retrieval(shuffled, true) == 0.0
    assert two_way_identification(shuffled, true) < 0.5
    noise = rng.standard_normal((2000, 16))
    assert two_way_identification(noise[:1000], noise[1000:]) == pytest.approx(0.5, abs=0.02)  # chance


def test_two_way_matches_a_loop_reference():
    rng = np.random.default_rng(1)
    true = rng.standard_normal((12, 10))
    predicted = true + rng.standard_normal((12, 10)) * 1.5
    scores = []
    for i in range(12):
        own = np.corrcoef(true[i], predicted[i])[0, 1]
        others = [np.corrcoef(true[i], predicted[j])[0, 1] for j in range(12) if j != i]
        scores.append(np.mean([own > other for other in others]))
    assert two_way_identification(predicted, true) == pytest.approx(np.mean(scores))
    top1 = np.mean([np.argmax([np.corrcoef(predicted[i], true[j])[0, 1] for j in range(12)]) == i for i in range(12)])
    assert top1_retrieval(predicted, true) == pytest.approx(top1)
    np.testing.assert_allclose(pearson_matrix(true, predicted)[3, 5], np.corrcoef(true[3], predicted[5])[0, 1])


def test_roc_auc_by_hand():
    from neurochat.metrics import roc_auc

    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)  # sklearn's documented example
    assert roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.5)  # ties count half
    assert roc_auc([3, 2, 1], [1, 0, 0]) == 1.0
