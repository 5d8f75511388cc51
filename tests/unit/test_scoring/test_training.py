"""Training on a small generated workload: the purchase model must beat an AUC floor, quickly."""

from __future__ import annotations

import pytest

from core.scoring import PURCHASE_7D, parse_models
from offline.training import (
    ReplayStats,
    TrainingConfig,
    brier_score,
    decode_lines,
    fit_logistic,
    reliability_bins,
    roc_auc,
    train_models,
)

generator = pytest.importorskip("offline.generator")

AUC_FLOOR = 0.62


@pytest.fixture(scope="module")
def small_models():
    workload = generator.generate_workload(
        generator.WorkloadConfig(start=1_690_000_000.0, customers=120, days=75, seed=5)
    )
    stats = ReplayStats()
    events = decode_lines(workload.lines, stats)
    return train_models(events, TrainingConfig(cutoff_every_days=5.0), trained_at="test", stats=stats)


def test_purchase_model_beats_the_auc_floor_on_held_out_time(small_models) -> None:
    metrics = small_models.models[PURCHASE_7D].metrics
    assert metrics["auc"] >= AUC_FLOOR
    assert metrics["brier"] < metrics["brier_base_rate"]
    assert metrics["test_examples"] > 100


def test_trained_file_round_trips(small_models) -> None:
    assert (
        parse_models(small_models.to_json()).models[PURCHASE_7D].coefficients
        == small_models.models[PURCHASE_7D].coefficients
    )


def test_metric_helpers() -> None:
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert roc_auc([0.5, 0.5], [False, True]) == 0.5
    assert roc_auc([0.5], [True]) is None
    assert brier_score([1.0, 0.0], [True, False]) == 0.0
    assert reliability_bins([0.05, 0.95, 0.97], [False, True, False]) == [
        {"bin": "0.0-0.1", "n": 1, "predicted": 0.05, "observed": 0.0},
        {"bin": "0.9-1.0", "n": 2, "predicted": 0.96, "observed": 0.5},
    ]


def test_fit_logistic_recovers_a_separating_direction() -> None:
    rows = [[x / 10] for x in range(-20, 21)]
    labels = [x > 0 for x in range(-20, 21)]
    (coef,), _ = fit_logistic(rows, labels, l2=0.1)
    assert coef > 1.0


def test_invalid_lines_are_counted_not_fatal() -> None:
    stats = ReplayStats()
    events = decode_lines(
        [b"{", b"", b'{"type":"track","event":"X","userId":"u","messageId":"m","timestamp":"2024-01-01T00:00:00Z"}'],
        stats,
    )
    assert (stats.lines, stats.invalid, len(events)) == (2, 1, 1)
