"""Training the propensity models from an event log: replay, snapshot, label, fit, evaluate — pure Python.

1. Decode each JSONL line with ``schemas.validation.decode_event`` (invalid lines are counted, skipped).
2. Key events by customer: the ``userId``, or the user an ``anonymousId`` is tied to by an identify or
   alias anywhere in the log (training may use the whole log's identity; scoring never looks ahead).
3. Replay in time order through the real ``core.profile.apply.apply_event``; at each cut-off (every
   ``cutoff_every_days``) snapshot every profile's features (``core.scoring.compute_features``).
4. Label: ``purchase_7d`` = an Order Completed in (cutoff, cutoff + 7 d]; ``churn_60d`` (customers with
   an order by the cut-off only) = no Order Completed in (cutoff, cutoff + 60 d].
5. Split by time: test = the latest ``test_fraction`` of cut-offs; a train cut-off's label window ends
   before the first test cut-off (no leakage). Fit a standardised L2 logistic regression by Newton/IRLS,
   Platt-calibrate it on the last quarter of the train cut-offs (model fitted on the rest), refit on all
   train cut-offs, and report test AUC, Brier score and reliability bins.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.profile.apply import apply_event
from core.scoring import CHURN_60D, FEATURES, PURCHASE_7D, LogisticModel, PropensityModels, compute_features
from schemas.errors import ConfigError, InvalidEvent
from schemas.events import Event
from schemas.profile import Profile
from schemas.validation import ContractLimits, decode_event

DAY_S = 86400.0
MODEL_VERSION = "propensity-v1"
# Replaying history: no clock skew applies (the log's own times are the truth).
REPLAY_LIMITS = ContractLimits(max_future_skew_s=math.inf, max_past_skew_s=math.inf)


@dataclass(frozen=True)
class TrainingConfig:
    cutoff_every_days: float = 7.0
    warmup_days: float = 14.0  # first cut-off after the log starts (profiles need some history)
    test_fraction: float = 0.3
    purchase_horizon_days: float = 7.0
    churn_horizon_days: float = 60.0
    l2: float = 1.0
    iterations: int = 25
    max_examples: int = 60_000  # per model and split; a seeded sample above this keeps training fast
    seed: int = 7
    bins: int = 10


@dataclass(frozen=True)
class Example:
    cutoff: float
    customer: str
    features: tuple[float, ...]
    purchased: bool
    churned: bool | None  # None: not a buyer at the cut-off, or the 60-day window is incomplete


@dataclass
class ReplayStats:
    lines: int = 0
    invalid: int = 0
    events: int = 0
    customers: int = 0
    cutoffs: list[float] = field(default_factory=list)


def decode_lines(lines: Iterable[bytes], stats: ReplayStats) -> list[Event]:
    """Valid events of a JSONL log, in time order (stable for equal times)."""
    events: list[Event] = []
    for line in lines:
        raw = line.strip()
        if not raw:
            continue
        stats.lines += 1
        try:
            events.append(decode_event(raw, now=0.0, limits=REPLAY_LIMITS))
        except InvalidEvent:
            stats.invalid += 1
    events.sort(key=lambda event: event.timestamp)
    stats.events = len(events)
    return events


def identity_map(events: Sequence[Event]) -> dict[str, str]:
    """anonymousId → userId, from identify calls carrying both and from alias previousId → userId."""
    links: dict[str, str] = {}
    for event in events:
        if event.user_id is None:
            continue
        if event.anonymous_id and event.type in ("identify", "track", "page", "screen"):
            links.setdefault(event.anonymous_id, event.user_id)
        if event.type == "alias" and event.previous_id:
            links.setdefault(event.previous_id, event.user_id)
    return links


def customer_of(event: Event, links: dict[str, str]) -> str:
    return event.user_id or links.get(event.anonymous_id or "", event.anonymous_id or "")


def build_examples(events: Sequence[Event], config: TrainingConfig, stats: ReplayStats) -> list[Example]:
    """Replay ``events`` (time-ordered) through ``apply_event`` and label a snapshot at every cut-off."""
    if not events:
        return []
    links = identity_map(events)
    orders: dict[str, list[float]] = {}
    for event in events:
        if event.type == "track" and event.event == "Order Completed":
            orders.setdefault(customer_of(event, links), []).append(event.timestamp)
    start, end = events[0].timestamp, events[-1].timestamp
    step = config.cutoff_every_days * DAY_S
    purchase_window = config.purchase_horizon_days * DAY_S
    churn_window = config.churn_horizon_days * DAY_S
    cutoffs: list[float] = []
    at = start + config.warmup_days * DAY_S
    while at + purchase_window <= end:
        cutoffs.append(at)
        at += step
    stats.cutoffs = cutoffs
    profiles: dict[str, Profile] = {}
    examples: list[Example] = []
    position = 0
    for cutoff in cutoffs:
        while position < len(events) and events[position].timestamp <= cutoff:
            event = events[position]
            key = customer_of(event, links)
            profiles[key] = apply_event(profiles.get(key) or Profile(customer_id=key), event, now=event.timestamp)
            position += 1
        for key, profile in profiles.items():
            times = orders.get(key, [])
            first_after = bisect.bisect_right(times, cutoff)
            next_order = times[first_after] if first_after < len(times) else math.inf
            churned = None
            if profile.orders >= 1 and cutoff + churn_window <= end:
                churned = next_order > cutoff + churn_window
            examples.append(
                Example(
                    cutoff, key, compute_features(profile, now=cutoff), next_order <= cutoff + purchase_window, churned
                )
            )
    stats.customers = len(profiles)
    return examples


# --------------------------------------------------------------------------------------------- fitting


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the matrix is small and positive definite)."""
    size = len(vector)
    rows = [row[:] + [vector[i]] for i, row in enumerate(matrix)]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        if abs(rows[col][col]) < 1e-12:
            rows[col][col] = 1e-12
        for r in range(col + 1, size):
            factor = rows[r][col] / rows[col][col]
            if factor:
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    solution = [0.0] * size
    for r in range(size - 1, -1, -1):
        solution[r] = (rows[r][size] - sum(rows[r][c] * solution[c] for c in range(r + 1, size))) / rows[r][r]
    return solution


def fit_logistic(
    rows: Sequence[Sequence[float]], labels: Sequence[bool], *, l2: float = 1.0, iterations: int = 25
) -> tuple[list[float], float]:
    """L2-regularised logistic regression by Newton/IRLS: ``(coefficients, intercept)``.

    The intercept is not penalised. Stops when the step is below 1e-8.
    """
    if not rows:
        message = "no training examples"
        raise ConfigError(message)
    width = len(rows[0]) + 1
    weights = [0.0] * width  # [intercept, coef...]
    augmented = [(1.0, *row) for row in rows]
    for _ in range(iterations):
        gradient = [0.0] * width
        hessian = [[0.0] * width for _ in range(width)]
        for x, y in zip(augmented, labels, strict=True):
            z = sum(w * v for w, v in zip(weights, x, strict=True))
            p = 1.0 / (1.0 + math.exp(-max(-35.0, min(35.0, z))))
            residual = p - (1.0 if y else 0.0)
            curvature = max(p * (1.0 - p), 1e-9)
            for i, xi in enumerate(x):
                gradient[i] += residual * xi
                row = hessian[i]
                scaled = curvature * xi
                for j in range(i + 1):
                    row[j] += scaled * x[j]
        for i in range(width):
            for j in range(i):
                hessian[j][i] = hessian[i][j]
            if i:
                gradient[i] += l2 * weights[i]
                hessian[i][i] += l2
        step = _solve(hessian, gradient)
        weights = [w - s for w, s in zip(weights, step, strict=True)]
        if max(abs(s) for s in step) < 1e-8:
            break
    return weights[1:], weights[0]


def standardisation(rows: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
    """Per-feature mean and standard deviation (1.0 for a constant feature)."""
    count = len(rows)
    means = [sum(column) / count for column in zip(*rows, strict=True)]
    scales = []
    for column, mean in zip(zip(*rows, strict=True), means, strict=True):
        variance = sum((v - mean) ** 2 for v in column) / count
        scales.append(math.sqrt(variance) if variance > 1e-12 else 1.0)
    return means, scales


def fit_model(rows: Sequence[Sequence[float]], labels: Sequence[bool], config: TrainingConfig) -> LogisticModel:
    means, scales = standardisation(rows)
    standard = [[(v - m) / s for v, m, s in zip(row, means, scales, strict=True)] for row in rows]
    coefficients, intercept = fit_logistic(standard, labels, l2=config.l2, iterations=config.iterations)
    return LogisticModel(tuple(coefficients), intercept, tuple(means), tuple(scales))


def fit_platt(logits: Sequence[float], labels: Sequence[bool]) -> tuple[float, float]:
    """Platt scaling: ``(a, b)`` so that ``sigmoid(a * logit + b)`` is calibrated on held-out data."""
    (a,), b = fit_logistic([[z] for z in logits], labels, l2=1e-6, iterations=50)
    return a, b


# --------------------------------------------------------------------------------------------- metrics


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann–Whitney, ties counted half); None without both classes."""
    positives = sum(1 for y in labels if y)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        average_rank = (i + j) / 2 + 1
        rank_sum += average_rank * sum(1 for k in range(i, j + 1) if labels[order[k]])
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def brier_score(probabilities: Sequence[float], labels: Sequence[bool]) -> float:
    return sum((p - (1.0 if y else 0.0)) ** 2 for p, y in zip(probabilities, labels, strict=True)) / max(1, len(labels))


def reliability_bins(probabilities: Sequence[float], labels: Sequence[bool], bins: int = 10) -> list[dict]:
    """Equal-width bins of predicted probability: count, mean predicted, observed rate."""
    totals = [[0, 0.0, 0] for _ in range(bins)]
    for p, y in zip(probabilities, labels, strict=True):
        slot = totals[min(bins - 1, int(p * bins))]
        slot[0] += 1
        slot[1] += p
        slot[2] += 1 if y else 0
    return [
        {
            "bin": f"{i / bins:.1f}-{(i + 1) / bins:.1f}",
            "n": n,
            "predicted": round(s / n, 4),
            "observed": round(k / n, 4),
        }
        for i, (n, s, k) in enumerate(totals)
        if n
    ]


def expected_calibration_error(bins: Sequence[dict]) -> float:
    total = sum(b["n"] for b in bins)
    return sum(b["n"] * abs(b["predicted"] - b["observed"]) for b in bins) / max(1, total)


# -------------------------------------------------------------------------------------------- pipeline


def _sample(pairs: list[tuple[tuple[float, ...], bool]], limit: int, seed: int) -> list:
    if len(pairs) <= limit:
        return pairs
    return random.Random(seed).sample(pairs, limit)


def train_one(
    examples: Sequence[Example], label_of, horizon_s: float, cutoffs: Sequence[float], config: TrainingConfig
) -> tuple[LogisticModel, dict[str, Any]]:
    """Fit, calibrate and evaluate one model on the examples that have a label."""
    labelled = [(e.cutoff, e.features, label_of(e)) for e in examples if label_of(e) is not None]
    usable = sorted({cutoff for cutoff, _, _ in labelled})
    if len(usable) < 3:
        message = f"too few cut-offs with labels ({len(usable)}); use a longer event log"
        raise ConfigError(message)
    split = usable[min(len(usable) - 1, max(1, int(len(usable) * (1 - config.test_fraction))))]
    train = [(c, x, y) for c, x, y in labelled if c + horizon_s <= split]
    test = [(x, y) for c, x, y in labelled if c >= split]
    if not train:  # short logs: fall back to no embargo rather than no model
        train = [(c, x, y) for c, x, y in labelled if c < split]
    train_cutoffs = sorted({c for c, _, _ in train})
    calibration_split = train_cutoffs[max(1, int(len(train_cutoffs) * 0.75))] if len(train_cutoffs) > 1 else math.inf
    early = _sample([(x, y) for c, x, y in train if c < calibration_split], config.max_examples, config.seed)
    late = _sample([(x, y) for c, x, y in train if c >= calibration_split], config.max_examples, config.seed)
    a, b = 1.0, 0.0
    if early and late and len({y for _, y in early}) == 2 and len({y for _, y in late}) == 2:
        provisional = fit_model([x for x, _ in early], [y for _, y in early], config)
        a, b = fit_platt([provisional.logit(x) for x, _ in late], [y for _, y in late])
    everything = _sample([(x, y) for _, x, y in train], config.max_examples, config.seed)
    if len({y for _, y in everything}) < 2:
        message = "training labels are all one class; use a longer or larger event log"
        raise ConfigError(message)
    fitted = fit_model([x for x, _ in everything], [y for _, y in everything], config)
    model = LogisticModel(fitted.coefficients, fitted.intercept, fitted.means, fitted.scales, a, b)
    test = _sample(test, config.max_examples, config.seed)
    probabilities = [model.probability(x) for x, _ in test]
    raw = [fitted.probability(x) for x, _ in test]
    labels = [y for _, y in test]
    bins = reliability_bins(probabilities, labels, config.bins)
    metrics = {
        "auc": _round(roc_auc(probabilities, labels)),
        "brier": round(brier_score(probabilities, labels), 5),
        "brier_uncalibrated": round(brier_score(raw, labels), 5),
        "brier_base_rate": round(brier_score([sum(labels) / max(1, len(labels))] * len(labels), labels), 5),
        "ece": round(expected_calibration_error(bins), 5),
        "base_rate": round(sum(labels) / max(1, len(labels)), 4),
        "train_examples": len(everything),
        "test_examples": len(test),
        "train_cutoffs": len(train_cutoffs),
        "test_cutoffs": len({c for c, _, _ in labelled if c >= split}),
        "reliability": bins,
    }
    return LogisticModel(model.coefficients, model.intercept, model.means, model.scales, a, b, metrics), metrics


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def train_models(
    events: Sequence[Event], config: TrainingConfig, *, trained_at: str, stats: ReplayStats | None = None
) -> PropensityModels:
    """Both models from a time-ordered event list."""
    stats = stats or ReplayStats(events=len(events))
    examples = build_examples(events, config, stats)
    purchase, _ = train_one(
        examples, lambda e: e.purchased, config.purchase_horizon_days * DAY_S, stats.cutoffs, config
    )
    models = {PURCHASE_7D: purchase}
    notes = {}
    try:
        churn, _ = train_one(examples, lambda e: e.churned, config.churn_horizon_days * DAY_S, stats.cutoffs, config)
        models[CHURN_60D] = churn
    except ConfigError as exc:
        notes["churn_60d"] = f"not trained: {exc}"
    training = {
        "lines": stats.lines,
        "invalid_lines": stats.invalid,
        "events": stats.events,
        "customers": stats.customers,
        "cutoffs": len(stats.cutoffs),
        "examples": len(examples),
        "cutoff_every_days": config.cutoff_every_days,
        "test_fraction": config.test_fraction,
        "l2": config.l2,
        **notes,
    }
    return PropensityModels(MODEL_VERSION, trained_at, FEATURES, models, training)


def format_report(models: PropensityModels) -> str:
    """A short human report of the metrics of each model."""
    lines = [
        f"{models.version} trained {models.trained_at}: "
        + ", ".join(f"{k}={v}" for k, v in (models.training or {}).items())
    ]
    for name, model in models.models.items():
        m = dict(model.metrics or {})
        lines.append(
            f"  {name}: AUC {m.get('auc')}  Brier {m.get('brier')} (uncalibrated "
            f"{m.get('brier_uncalibrated')}, base rate only {m.get('brier_base_rate')})  ECE {m.get('ece')}"
            f"  base rate {m.get('base_rate')}  train/test {m.get('train_examples')}/"
            f"{m.get('test_examples')}"
        )
        for b in m.get("reliability", []):
            lines.append(
                f"      {b['bin']}: n={b['n']:>6}  predicted {b['predicted']:.3f}  observed {b['observed']:.3f}"
            )
    return "\n".join(lines)


def train_from_file(path: Path, config: TrainingConfig, *, trained_at: str) -> tuple[bytes, str]:
    """Read a JSONL log, train, and return (model file bytes, report)."""
    stats = ReplayStats()
    try:
        with path.open("rb") as handle:
            events = decode_lines(handle, stats)
    except OSError as exc:
        message = f"{path}: cannot read event log: {exc}"
        raise ConfigError(message) from None
    models = train_models(events, config, trained_at=trained_at, stats=stats)
    return models.to_json(), format_report(models)
