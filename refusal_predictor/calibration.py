"""Temperature scaling: post-hoc calibration of a fitted model on texts it has not learned from.

Why it exists: a model calibrates itself at ``fit`` by cross-validation, which is honest only
when the features are new to every held-out fold. The shipped default response model reads an
encoder fine-tuned on its own training responses, so its cross-validated calibration believed
in a separation that new responses do not have: on the paper's held-out test responses it
said 0.01 where 7 % were refusals (README, "How good is it?"). A temperature ``T`` fitted on
labelled texts that neither the encoder nor the head has seen rescales the log-odds,
``p -> sigmoid(logit(p) / T)``: one number, so a few hundred texts fix it; monotone, so the
ranking (AUROC) is kept; and it leaves 0.5 where it is, so with the threshold mapped through
it (:func:`temper`), every decision stays (Guo et al., 2017, "On Calibration of Modern Neural
Networks").
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit

# Probabilities are clipped this far from 0 and 1 before taking log-odds (|logit| <= 34.5).
_EPS = 1e-15
# Temperatures are searched in [1/100, 100]: beyond, a model is sure of nothing or of everything.
_LOG_T_BOUND = math.log(100.0)


def check_temperature(value: Any, name: str = "temperature") -> float:
    """A temperature, or a ValueError naming ``name``: a positive, finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def temper(p: Any, temperature: float, before: float = 1.0) -> np.ndarray:
    """Refusal probabilities ``p`` (given at temperature ``before``) at ``temperature``.

    Monotone in ``p`` (ties stay ties, order stays order); 0.5 maps to 0.5, and 0 and 1 to
    themselves, so a threshold mapped alongside the scores keeps every decision, the thresholds
    0 ("flag everything") and 1 included. Returns float64.
    """
    p = np.asarray(p, dtype=np.float64)
    out = expit(logit(np.clip(p, _EPS, 1 - _EPS)) * (before / temperature))
    return np.where(p <= 0, 0.0, np.where(p >= 1, 1.0, out))


def fit_temperature(p: Any, y: Any, sample_weight: Any = None) -> float:
    """The temperature minimising the weighted log loss of ``p`` (at temperature 1) against ``y``.

    ``y`` is 0/1 (1 = refusal) and must hold both classes.
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if len(np.unique(y)) != 2:
        raise ValueError("a temperature needs both classes among the labelled texts")
    z = logit(np.clip(p, _EPS, 1 - _EPS))

    def loss(log_t: float) -> float:
        q = np.clip(expit(z / math.exp(log_t)), _EPS, 1 - _EPS)
        return float(-np.sum(w * (y * np.log(q) + (1 - y) * np.log1p(-q))) / np.sum(w))

    found = minimize_scalar(loss, bounds=(-_LOG_T_BOUND, _LOG_T_BOUND), method="bounded",
                            options={"xatol": 1e-6})
    return float(math.exp(found.x))


def log_loss(y: Any, p: Any) -> float:
    """Mean log loss of refusal probabilities ``p`` against 0/1 ``y`` (clipped as above)."""
    y = np.asarray(y, dtype=np.float64)
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))
