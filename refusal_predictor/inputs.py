"""What a user hands the estimators: texts, labels and sample weights, checked at the door.

``fit``, ``predict``, ``score`` and the CLI's labelled files all read input through these
functions, so a wrong type, a label of no known meaning or a negative weight gets the same error,
naming the item, wherever it comes in; nothing is coerced silently (a DataFrame would iterate its
column names, a dict its keys).
"""
from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Set as AbstractSet
from decimal import Context, Decimal, InvalidOperation, localcontext
from typing import Any, Iterable

import numpy as np

from .text import lone_surrogate_at

CLASSES = ("compliance", "refusal")
"""The estimators' ``classes_``, in this order: column 1 of ``predict_proba`` is P(refusal)."""

_LABEL_ALIASES = {
    "refusal": 1, "refused": 1, "refuse": 1, "r": 1, "1": 1, "true": 1,
    "compliance": 0, "complied": 0, "comply": 0, "c": 0, "0": 0, "false": 0,
}


def as_texts(X: str | Iterable[str], what: str = "text") -> list[str]:
    """A str or an iterable of str -> list of str; anything else is a TypeError naming the item."""
    if isinstance(X, str):
        return [X]
    if isinstance(X, (bytes, bytearray, Mapping, AbstractSet)) or X is None or not isinstance(X, Iterable):
        # A dict would iterate its keys and a set has no order to match the scores against.
        raise TypeError(f"expected a str or a list of str, got {type(X).__name__}")
    if hasattr(X, "columns"):
        # A DataFrame iterates its column names: it would score the word "response".
        raise TypeError(f"expected a str or a list of str, got a {type(X).__name__}; pass one column, "
                        "e.g. df['response']")
    texts = list(X)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what} {i} is {type(t).__name__}, expected str")
        at = lone_surrogate_at(t)
        if at is not None:
            raise ValueError(f"{what} {i} holds a lone UTF-16 surrogate {t[at]!r} at character "
                             f"{at} (half of a character, e.g. an emoji cut in two)")
    return texts


_BOOLEAN_WORDS = {"true": "1", "false": "0"}


def _label_key(value: Any) -> str | None:
    """A label value as a lower-case key, numbers by their exact value, so ``True``, ``"true"``,
    ``1``, ``1.0`` and ``"1.0"`` (a CSV export of float labels) are one value, ``2.5`` and
    ``"2.50"`` another, ``inf`` and ``"Infinity"`` a third; None, NaN (``"nan"`` in a CSV too),
    pandas' NA / NaT or blank is no label. Read exactly, 10000000000000001 is not
    10000000000000000, as it was through a float, and ``"1_0"`` is text, not 10."""
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if value is None or type(value).__name__ in ("NAType", "NaTType") or (
            isinstance(value, (float, np.floating)) and np.isnan(value)) or (
            isinstance(value, (np.datetime64, np.timedelta64)) and np.isnat(value)):
        return None
    key = str(value).strip().lower()
    if key in _BOOLEAN_WORDS:  # a JSON or Parquet boolean is read as 1/0: its spelling in a CSV too
        return _BOOLEAN_WORDS[key]
    if not _NUMBER.fullmatch(key):
        return key or None
    try:
        with localcontext(_READING):
            number = Decimal(key)
    except ArithmeticError:  # an exponent past what Decimal holds (1e9999999999999999999): its spelling is its key
        return key
    return _number_key(number)


# A number as Python's Decimal reads one, without the underscores it also takes ("1_0" is text).
# Matched first, so that Decimal reads only numbers; the dot's group splits a run of digits one
# way only (a "\d+\.?\d*" took 4 s to turn down 16,000 digits and a letter).
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?|[+-]?(?:inf|infinity|s?nan\d*)")
# Decimal reads a string exactly whatever the precision; this context only makes sure a number it
# cannot hold signals (a host application's context may have untrapped that and made it NaN).
_READING = Context(traps=[InvalidOperation])


def _number_key(number: Decimal) -> str | None:
    """One spelling per value, from the digits and exponent alone: no arithmetic, so no decimal
    context, no rounding, and no million-digit integer for ``1e999999`` (which took 26 s)."""
    if number.is_nan():
        return None
    sign, digits, exponent = number.as_tuple()
    if number.is_infinite():
        return "-inf" if sign else "inf"
    text = "".join(map(str, digits)).lstrip("0")
    if not text:
        return "0"  # -0, 0.000 and 0e5 alike
    stripped = text.rstrip("0")
    exponent += len(text) - len(stripped)  # 1.50 -> 15e-1; 100 -> 1e2
    sign_text = "-" if sign else ""
    if 0 <= exponent and len(stripped) + exponent <= 30:
        return f"{sign_text}{stripped}{'0' * exponent}"
    if exponent < 0 and len(stripped) + (-exponent) <= 60:
        whole, fraction = stripped[:exponent] or "0", stripped[exponent:].rjust(-exponent, "0")
        return f"{sign_text}{whole}.{fraction}"
    return f"{sign_text}{stripped[0]}.{stripped[1:] or '0'}e{exponent + len(stripped) - 1}"


def label_keys(values: Iterable[Any] | None) -> frozenset[str]:
    """A user's label values as the keys :func:`label_value` compares: ``{3.0}``, ``{"3.0"}`` and
    ``{3}`` all mean the file's ``3`` / ``3.0``, as the file's own values are read. Compared raw,
    ``--compliance-values 3.0`` matched no row of a CSV of 3.0s, and every row became a refusal."""
    keys = set()
    for value in values or ():
        key = _label_key(value)
        if key is None and value is not None and str(value).strip():  # blanks are a stray comma's
            raise ValueError(f"{value!r} is no label value: a NaN label is read as no label, and its row is skipped")
        if key is not None:
            keys.add(key)
    return frozenset(keys)


def check_label_values(refusal_values: Collection[str] | None, compliance_values: Collection[str] | None,
                       names: tuple[str, str] = ("refusal_values", "compliance_values")) -> None:
    """A value may name one class only: checked once per call of :func:`as_labels` or a file read.
    ``names``: what the caller calls the two sets (the CLI's options)."""
    both = set(refusal_values or ()) & set(compliance_values or ())
    if both:
        raise ValueError(f"label values {sorted(both)} are in both {names[0]} and {names[1]}")


def label_value(value: Any, refusal_values: Collection[str] | None = None,
                compliance_values: Collection[str] | None = None,
                names: tuple[str, str] = ("refusal_values", "compliance_values")) -> int:
    """One label as 0 (compliance) / 1 (refusal), or a ValueError saying why it is none.

    Accepts the class names, 0/1 and booleans, and a user's own scheme (e.g. the paper's tones):
    values in ``refusal_values`` / ``compliance_values``, given as :func:`label_keys`. Given one set alone, every
    other value is the other class, as the paper counts every tone but ``complied`` as a refusal.
    Given both, a value in neither is an error. A built-in name (``1``, ``true``, ``refusal``, ...)
    outside the given sets keeps its meaning only where that rule agrees: a scheme of refusals
    ``"0"`` made "1" a refusal by its name and a compliance by the rule, and either reading
    silently mislabels someone's data, so it is an error asking to name the value. ``names``: what
    the caller calls the two sets, so the error points at the caller's own options.
    """
    refusal_values, compliance_values = refusal_values or (), compliance_values or ()
    key = _label_key(value)
    if key is None:
        raise ValueError("no label (empty)" if value is None or not str(value).strip() else "no label (NaN)")
    if key in refusal_values:
        return 1
    if key in compliance_values:
        return 0
    if refusal_values and compliance_values:
        raise ValueError(f"neither in the refusal values {sorted(refusal_values)} nor in the compliance values {sorted(compliance_values)}")
    if refusal_values or compliance_values:
        other = 0 if refusal_values else 1
        if _LABEL_ALIASES.get(key, other) != other:
            given, given_name = (sorted(refusal_values), names[0]) if refusal_values else (sorted(compliance_values), names[1])
            raise ValueError(
                f"{CLASSES[1 - other]} by its name, but not in the {given_name} {given}, whose every other value "
                f"is {CLASSES[other]}; name it in {names[0]} or {names[1]}"
            )
        return other
    if key in _LABEL_ALIASES:
        return _LABEL_ALIASES[key]
    raise ValueError(f"expected 'refusal'/'compliance', 1/0 or a bool (or name your values with {names[0]} / {names[1]})")


def as_labels(y: Iterable[Any], refusal_values: Collection[str] | None = None,
              compliance_values: Collection[str] | None = None) -> np.ndarray:
    """Labels as 0 (compliance) / 1 (refusal); see :func:`label_value` for what is accepted."""
    refusal_values, compliance_values = label_keys(refusal_values), label_keys(compliance_values)
    check_label_values(refusal_values, compliance_values)
    out = []
    for i, value in enumerate(y):
        try:
            out.append(label_value(value, refusal_values, compliance_values))
        except ValueError as exc:
            raise ValueError(f"label {i} is {_shown(value)}; {exc}") from None
    return np.asarray(out, dtype=np.int64)


def _shown(value: Any, limit: int = 200) -> str:
    """A value for an error message: an int of 5,000 digits has no repr (Python's digit limit)."""
    try:
        text = repr(value)
    except ValueError:
        return f"a {type(value).__name__} too long to show"
    return text if len(text) <= limit else text[:limit] + "..."


def label_accuracy(predicted: np.ndarray, y: Iterable[Any], sample_weight: Any = None) -> float:
    """Accuracy of ``predict``'s class names against labels read as ``fit`` reads them."""
    from sklearn.metrics import accuracy_score

    truth = as_labels(y)
    hits = (np.asarray(predicted) == CLASSES[1]).astype(np.int64)
    if len(truth) != len(hits):
        raise ValueError(f"{len(hits)} texts but {len(truth)} labels")
    return float(accuracy_score(truth, hits, sample_weight=sample_weight))


def checked_weights(sample_weight: Any, n: int) -> np.ndarray:
    """Sample weights as float64, checked: one per row, finite, none negative, some positive.

    scikit-learn accepted negative weights for the tone head (a degenerate head whose
    cross-validation was still recorded as valid) and refused them in ``fit`` with "max() arg is
    an empty sequence"; both now get this message.
    """
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n,):
        raise ValueError(f"{n} texts but sample_weight has shape {weights.shape}")
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if len(bad):
        raise ValueError(f"sample_weight must be finite and not negative; row {bad[0]} is {weights[bad[0]]}"
                         + (f" ({len(bad)} such rows)" if len(bad) > 1 else ""))
    if n and not (weights > 0).any():
        raise ValueError("sample_weight is zero for every row: nothing to learn from")
    return weights
