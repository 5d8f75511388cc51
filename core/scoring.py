"""Propensity scores: purchase in the next 7 days, churn in the next 60, per-category affinity — pure.

``compute_features(profile, now=...)`` turns a profile (the ``Profile`` record or its dict view) into a
small feature vector; ``score_profile(models, profile, now=...)`` applies the logistic models of a
versioned model file (``models/propensity-v1.json``, written by ``streamcdp train``) and returns scores in
[0, 1]. Plain Python, no numpy: a dozen features cost a few microseconds.

Model file (JSON)::

    {"version": "propensity-v1", "trained_at": "...", "features": [...names...],
     "models": {"purchase_7d": {"coefficients": [...], "intercept": x, "means": [...], "scales": [...],
                                "calibration": {"method": "platt", "a": 1.0, "b": 0.0}, "metrics": {...}},
                "churn_60d": {...}},
     "training": {...how it was trained...}}

A model's probability is ``sigmoid(a * z + b)`` with ``z = intercept + Σ coef_i (x_i - mean_i) / scale_i``.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from core.profile.affinity import decay
from core.profile.policy import DEFAULT_POLICY, ProfilePolicy
from core.traits import TRAITS, is_mapping_type, stored_affinities
from schemas.errors import ConfigError

DAY_S = 86400.0
PURCHASE_7D = "purchase_7d"
CHURN_60D = "churn_60d"
AFFINITY_PREFIX = "affinity."
MODEL_NAMES = (PURCHASE_7D, CHURN_60D)
DEFAULT_MODEL_FILE = Path(__file__).resolve().parent.parent / "models" / "propensity-v1.json"
NEVER_DAYS = 400.0  # recency of something that never happened (beyond the profile's horizon)
AFFINITY_PRIOR = 1.0  # affinity "of nothing else": keeps one weak signal from scoring 1.0

FEATURES: tuple[str, ...] = (
    "has_ordered",
    "log_orders",
    "log_revenue",
    "log_aov",
    "log_days_since_order",
    "log_days_since_seen",
    "log_tenure_days",
    "log_events",
    "log_sessions",
    "viewed_7d",
    "log_days_since_view",
    "cart_nonempty",
    "log_cart_value",
    "checkout_unfinished",
    "open_rate",
    "click_rate",
    "log_mean_order_gap",
    "order_overdue",
)


# The traits features are made of (``core.traits``: the same values the API and the rules see).
_AVERAGE_ORDER_VALUE = TRAITS["average_order_value"].fn
_CART_VALUE = TRAITS["cart_value"].fn
_DAYS_SINCE_LAST_SEEN = TRAITS["days_since_last_seen"].fn
_DAYS_SINCE_FIRST_SEEN = TRAITS["days_since_first_seen"].fn


def _reader(obj: Any) -> Callable[[str, Any], Any]:
    """``lambda name, default: <field of the record or view>``, with the record-or-view choice made once
    (for a record ``getattr`` itself, bound: no Python frame per read)."""
    if obj.__class__ is dict or is_mapping_type(type(obj)):
        return obj.get
    return functools.partial(getattr, obj)


def _days_since(at: Any, now: float) -> float:
    if isinstance(at, bool) or not isinstance(at, (int, float)) or at <= 0:
        return NEVER_DAYS
    return min(NEVER_DAYS, max(0.0, (now - at) / DAY_S))


def _capped_days(days: float | None) -> float:
    """An age trait's value as a feature: "never" (None) and anything older count as ``NEVER_DAYS``."""
    return NEVER_DAYS if days is None else min(NEVER_DAYS, days)


def _log1p(value: float) -> float:
    return math.log1p(max(0.0, value))


def _is_mapping(value: Any) -> bool:
    """``isinstance(value, Mapping)``, a dict (the usual case) answered without the ABC check."""
    return value.__class__ is dict or isinstance(value, Mapping)


def _engagement_rates(engagement: Any) -> tuple[float, float]:
    delivered = opened = clicked = 0
    if _is_mapping(engagement):
        for counts in engagement.values():
            if _is_mapping(counts):
                delivered += int(counts.get("delivered", 0) or counts.get("sent", 0) or 0)
                opened += int(counts.get("opened", 0) or 0)
                clicked += int(counts.get("clicked", 0) or 0)
    if delivered <= 0:
        return 0.0, 0.0
    return min(1.0, opened / delivered), min(1.0, clicked / delivered)


def compute_features(profile: Any, *, now: float) -> tuple[float, ...]:
    """The feature vector (in ``FEATURES`` order) of a profile record or view at ``now``.

    ``log_days_since_order`` counts from ``last_order_at`` (the latest order placed, refunded or not), as
    the committed model was trained; the trait ``days_since_last_order`` (net of refunds) would need a
    retrained model.
    """
    get = _reader(profile)
    orders = max(0, int(get("orders", 0) or 0))
    revenue = max(0, int(get("revenue", 0) or 0))
    event_last_at = get("event_last_at", {}) or {}
    last_view = event_last_at.get("Product Viewed") if _is_mapping(event_last_at) else None
    days_since_view = _days_since(last_view, now)
    cart = get("cart", ()) or ()
    last_order_at = get("last_order_at", 0.0) if orders else 0.0
    checkout_at = get("last_checkout_at", 0.0) or 0.0
    open_rate, click_rate = _engagement_rates(get("engagement", None))
    order_times: Sequence[float] = get("order_times", ()) or ()
    tenure_days = _DAYS_SINCE_FIRST_SEEN(profile, now, DEFAULT_POLICY)
    if len(order_times) >= 2:
        mean_gap_days = max(1.0 / 24, (order_times[-1] - order_times[0]) / (len(order_times) - 1) / DAY_S)
    else:
        mean_gap_days = NEVER_DAYS
    days_since_order = _days_since(last_order_at, now)
    return (
        1.0 if orders else 0.0,
        _log1p(orders),
        _log1p(revenue / 100.0),
        _log1p(_AVERAGE_ORDER_VALUE(profile, now, DEFAULT_POLICY) / 100.0) if orders else 0.0,
        _log1p(days_since_order),
        _log1p(_capped_days(_DAYS_SINCE_LAST_SEEN(profile, now, DEFAULT_POLICY))),
        _log1p(_capped_days(tenure_days)) if tenure_days is not None else 0.0,
        _log1p(float(get("event_count", 0) or 0)),
        _log1p(float(get("sessions", 0) or 0)),
        1.0 if days_since_view < 7 else 0.0,
        _log1p(days_since_view),
        1.0 if cart else 0.0,
        _log1p(_CART_VALUE(profile, now, DEFAULT_POLICY) / 100.0),
        1.0 if checkout_at and checkout_at > (last_order_at or 0.0) else 0.0,
        open_rate,
        click_rate,
        _log1p(mean_gap_days),
        min(3.0, days_since_order / mean_gap_days) if mean_gap_days < NEVER_DAYS else 0.0,
    )


def sigmoid(z: float) -> float:
    """The logistic function, safe for any finite or infinite z; always within [0, 1]."""
    if math.isnan(z):  # no information
        return 0.5
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-min(z, 700.0)))
    e = math.exp(max(z, -700.0))
    return e / (1.0 + e)


@dataclass(frozen=True)
class LogisticModel:
    """A standardised logistic regression with Platt calibration on top."""

    coefficients: tuple[float, ...]
    intercept: float
    means: tuple[float, ...]
    scales: tuple[float, ...]
    calibration_a: float = 1.0
    calibration_b: float = 0.0
    metrics: Mapping[str, Any] | None = None

    def logit(self, features: Sequence[float]) -> float:
        # z = intercept + Σ coef * (x - mean) / scale, added term by term in feature order (as a loop
        # would, but in C): folding the means into the intercept would round differently and move scores.
        deviations = map(operator.sub, features, self.means)
        terms = map(operator.truediv, map(operator.mul, self.coefficients, deviations), self.scales)
        return functools.reduce(operator.add, terms, self.intercept)

    def probability(self, features: Sequence[float]) -> float:
        return sigmoid(self.calibration_a * self.logit(features) + self.calibration_b)

    def to_json(self) -> dict[str, Any]:
        return {
            "coefficients": list(self.coefficients),
            "intercept": self.intercept,
            "means": list(self.means),
            "scales": list(self.scales),
            "calibration": {"method": "platt", "a": self.calibration_a, "b": self.calibration_b},
            "metrics": dict(self.metrics or {}),
        }


@dataclass(frozen=True)
class PropensityModels:
    """The contents of one model file."""

    version: str
    trained_at: str
    features: tuple[str, ...]
    models: Mapping[str, LogisticModel]
    training: Mapping[str, Any] | None = None

    def to_json(self) -> bytes:
        document = {
            "version": self.version,
            "trained_at": self.trained_at,
            "features": list(self.features),
            "models": {name: model.to_json() for name, model in self.models.items()},
            "training": dict(self.training or {}),
        }
        return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def _numbers(value: Any, length: int, where: str) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or len(value) != length
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        message = f"{where}: expected {length} finite numbers"
        raise ConfigError(message)
    return tuple(float(v) for v in value)


def _number(value: Any, where: str) -> float:
    return _numbers([value], 1, where)[0]


def parse_models(data: bytes, *, source: str = "<memory>") -> PropensityModels:
    """Model file bytes → ``PropensityModels``; raises ``ConfigError`` naming the problem."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        message = f"{source}: not JSON: {exc}"
        raise ConfigError(message) from None
    if not isinstance(document, dict) or not isinstance(document.get("models"), dict):
        message = f"{source}: expected an object with 'version', 'features' and 'models'"
        raise ConfigError(message)
    features = document.get("features")
    if features != list(FEATURES):
        message = (
            f"{source}: the model's features {features!r} are not this code's {list(FEATURES)!r}; "
            "retrain with `streamcdp train`"
        )
        raise ConfigError(message)
    models: dict[str, LogisticModel] = {}
    for name, raw in document["models"].items():
        where = f"{source}: models.{name}"
        if not isinstance(raw, dict):
            message = f"{where}: expected an object"
            raise ConfigError(message)
        calibration = raw.get("calibration") or {"a": 1.0, "b": 0.0}
        scales = _numbers(raw.get("scales"), len(FEATURES), f"{where}.scales")
        if any(scale <= 0 for scale in scales):
            message = f"{where}.scales: must be positive"
            raise ConfigError(message)
        models[name] = LogisticModel(
            coefficients=_numbers(raw.get("coefficients"), len(FEATURES), f"{where}.coefficients"),
            intercept=_number(raw.get("intercept"), f"{where}.intercept"),
            means=_numbers(raw.get("means"), len(FEATURES), f"{where}.means"),
            scales=scales,
            calibration_a=_number(calibration.get("a", 1.0), f"{where}.calibration.a"),
            calibration_b=_number(calibration.get("b", 0.0), f"{where}.calibration.b"),
            metrics=raw.get("metrics") if isinstance(raw.get("metrics"), dict) else {},
        )
    return PropensityModels(
        str(document.get("version", "")),
        str(document.get("trained_at", "")),
        tuple(features),
        models,
        document.get("training") or {},
    )


def load_models(path: str | Path | None = None) -> PropensityModels:
    """Read a model file (default ``models/propensity-v1.json``)."""
    path = Path(path) if path is not None else DEFAULT_MODEL_FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        message = f"{path}: cannot read model file: {exc}"
        raise ConfigError(message) from None
    return parse_models(data, source=str(path))


def category_affinity_scores(profile: Any, *, now: float, policy: ProfilePolicy = DEFAULT_POLICY) -> dict[str, float]:
    """Per category, the share of the profile's time-decayed affinity: in [0, 1], summing to < 1.

    Affinities decay with ``policy.affinity_half_life_s``, as everywhere else. ``AFFINITY_PRIOR`` acts as
    an "anything else" category, so a single weak signal does not score 1.0.
    """
    half_life_s = policy.affinity_half_life_s
    decayed = {
        category: decay(value, at, now, half_life_s) for category, value, at in stored_affinities(profile) if value > 0
    }
    total = sum(decayed.values()) + AFFINITY_PRIOR
    return {category: value / total for category, value in decayed.items()}


def score_profile(
    models: PropensityModels,
    profile: Any,
    *,
    now: float,
    with_affinity: bool = True,
    policy: ProfilePolicy = DEFAULT_POLICY,
) -> dict[str, float]:
    """Every score of a profile at ``now``: the models' probabilities and ``affinity.<category>`` shares
    (decaying with ``policy.affinity_half_life_s``)."""
    features = compute_features(profile, now=now)
    scores = {name: model.probability(features) for name, model in models.models.items()}
    if with_affinity:
        for category, share in category_affinity_scores(profile, now=now, policy=policy).items():
            scores[AFFINITY_PREFIX + category] = share
    return scores


@dataclass(frozen=True)
class ScoreCrossing:
    """A score moved across a threshold: ``direction`` "up" (now ≥ threshold) or "down" (now below)."""

    score: str
    threshold: float
    direction: Literal["up", "down"]
    before: float | None
    after: float | None


def score_crossings(
    before_scores: Mapping[str, float], after_scores: Mapping[str, float], thresholds: Mapping[str, Sequence[float]]
) -> list[ScoreCrossing]:
    """Each (score, threshold) whose side changed from ``before_scores`` to ``after_scores``.

    A score missing on one side counts as below every threshold. Sorted by score name, then threshold.
    """
    crossings: list[ScoreCrossing] = []
    for name in sorted(thresholds):
        before, after = before_scores.get(name), after_scores.get(name)
        for threshold in sorted(thresholds[name]):
            was = before is not None and before >= threshold
            now_above = after is not None and after >= threshold
            if was != now_above:
                crossings.append(ScoreCrossing(name, threshold, "up" if now_above else "down", before, after))
    return crossings
