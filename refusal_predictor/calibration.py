"""Temperature scaling: post-hoc calibration of a fitted model on texts it has not learned from.

Why it exists: a model calibrates itself at ``fit`` by cross-validation, which is honest only
when the features are new to every held-out fold. The shipped default response model reads an
encoder fine-tuned on its own training responses, so its cross-validated calibration believed
in a separation that new responses do not have: on the paper's held-out test responses it
said 0.01 where 7 % were refusals (README, "How good is it?"). A temperature ``T`` fitted on
labelled texts that neither the encoder nor the head has seen rescales the log-odds,
``p -> sigmoid(logit(p) / T)``: one number, so a few hundred texts fix it; monotone, so the
ranking (AUROC) is kept; and it leaves 0.5 where it is, so at threshold 0.5 every decision stays
(Guo et al., 2017, "On Calibration of Modern Neural Networks").
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit, logit

# Probabilities are clipped this far from 0 and 1 before taking log-odds (|logit| <= 34.5).
_EPS = 1e-15
# Temperatures lie in [0.5, 20]. Below 1 the log-odds grow, and float64 has little room near 0
# and 1: at T = 0.2 a few hundred distinct high scores round to the same value or to 1.0, which
# breaks the ranking and the cuts taken between them (measured on 1,500 responses; none at 0.5).
# Wanting T below 0.5 means the texts are scored right and near-certainly: the model's own
# training texts, most likely. Above 20 a model is left next to no confidence at all.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.5, 20.0
FIT_RANGE = (MIN_TEMPERATURE, MAX_TEMPERATURE)
# The search runs a little beyond the range, so that a fit outside it shows as one.
_LOG_T_BOUND = math.log(100.0)


def check_temperature(value: Any, name: str = "temperature") -> float:
    """A temperature, or a ValueError naming ``name``: a number in [MIN_TEMPERATURE, MAX_TEMPERATURE]."""
    problem = f"{name} must be a positive number from {MIN_TEMPERATURE} to {MAX_TEMPERATURE:g}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(problem)
    if not math.isfinite(float(value)) or not MIN_TEMPERATURE <= float(value) <= MAX_TEMPERATURE:
        raise ValueError(problem)
    return float(value)


def temper(p: Any, temperature: float, before: float = 1.0) -> np.ndarray:
    """Refusal probabilities ``p`` (given at temperature ``before``) at ``temperature``.

    Monotone in ``p`` (ties stay ties, order stays order); 0.5 maps to 0.5, and 0 and 1 to
    themselves, so a threshold mapped alongside the scores keeps every decision, the thresholds
    0 ("flag everything") and 1 included. Returns float64; at ``temperature == before`` the
    scores themselves, with no float round trip through the log-odds.
    """
    p = np.asarray(p, dtype=np.float64)
    if temperature == before:
        return p.copy()
    out = expit(logit(np.clip(p, _EPS, 1 - _EPS)) * (before / temperature))
    # Rounding must not carry a score across 0.5 (0.5 - 1e-16 came out as exactly 0.5 at T=2.15).
    out = np.where((p < 0.5) & (out >= 0.5), np.nextafter(0.5, 0.0), np.where((p >= 0.5) & (out < 0.5), 0.5, out))
    return np.where(p <= 0, 0.0, np.where(p >= 1, 1.0, out))


def fit_temperature(p: Any, y: Any, sample_weight: Any = None) -> float:
    """The temperature minimising the weighted log loss of ``p`` (at temperature 1) against ``y``.

    ``y`` is 0/1 (1 = refusal) and must hold both classes with weight. A fit outside ``FIT_RANGE``
    is refused: texts the model already scores right and near 0 or 1 (its own training texts,
    say) push it toward 0, where its probabilities would collapse to 0 and 1 and lose their order.
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if not (np.sum(w[y == 1]) > 0 and np.sum(w[y == 0]) > 0):
        raise ValueError("a temperature needs both classes, with weight, among the labelled texts")
    z = logit(np.clip(p, _EPS, 1 - _EPS))

    def loss(log_t: float) -> float:
        # in log-odds, without clipping the probabilities: on texts it scores right the loss keeps
        # falling as T does (until exp underflows, far below the range), not flat from T = 0.1
        scaled = z / math.exp(log_t)
        return float(-np.average(y * log_expit(scaled) + (1 - y) * log_expit(-scaled), weights=w))

    found = minimize_scalar(loss, bounds=(-_LOG_T_BOUND, _LOG_T_BOUND), method="bounded",
                            options={"xatol": 1e-6})
    temperature = float(math.exp(found.x))
    if not FIT_RANGE[0] <= temperature <= FIT_RANGE[1]:
        side = "are scored right, and near-certainly, nearly all of them (texts it trained on?)" \
            if temperature < FIT_RANGE[0] else "are scored no better than chance"
        raise ValueError(f"the temperature fitted, {temperature:.4g}, is outside [{FIT_RANGE[0]}, {FIT_RANGE[1]:g}]: "
                         f"these texts {side}; recalibrate on labelled texts the model did not train on")
    return temperature


def log_loss(y: Any, p: Any, sample_weight: Any = None) -> float:
    """Mean (weighted) log loss of refusal probabilities ``p`` against 0/1 ``y`` (clipped as above)."""
    y = np.asarray(y, dtype=np.float64)
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return float(np.average(-(y * np.log(q) + (1 - y) * np.log1p(-q)), weights=sample_weight))
