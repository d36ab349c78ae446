"""Choose the shipped cascade's band: how often the n-gram variant may answer alone.

    python -m training.cascade_band --data-dir DATA [--n 4000] [--min-agreement 0.99]

A :class:`~refusal_predictor.cascade.ResponseCascade` keeps the n-gram variant's probability
outside ``(low, high)`` and asks the full model inside it. The band is chosen without labels
and without any test split: on ``--n`` logged responses drawn from the unlabelled logs (sources
that no response model trains on), each candidate band is scored by how often the cascade's
label equals the full model's and by the share of responses it sends to the encoder; the band
sending the fewest to the encoder while agreeing on at least ``--min-agreement`` is chosen.

Printed beside it, for each band, and not used in the choice:
- the paper's 256 test responses (held out from both models): accuracy of the cascade;
- agreement with the logs' own weak labels (LLM judges or refusal-string rules, where the log
  has them): the cascade's and the full model's.
The encoder's share is what sets the speed; ``benchmarks/bench_scoring.py`` times the result.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from refusal_predictor.cli import _probability, at_least_one
from refusal_predictor.cascade import DEFAULT_HIGH, DEFAULT_LOW, ResponseCascade, in_band

from . import data
from .baselines import refusal_y

CANDIDATES = ((0.01, 0.99), (0.02, 0.98), (0.05, 0.95), (0.1, 0.9), (0.2, 0.8))


def unlabelled_sample(data_dir: Path, n: int, seed: int = 0):
    """``n`` responses of the unlabelled logs (none of them a response model's training row)."""
    frames = [loader(data_dir) for loader in data.BOOTSTRAP_LOADERS.values()]
    pool = pd.concat(frames, ignore_index=True).drop_duplicates(subset=["response"])
    return pool.sample(n=min(n, len(pool)), random_state=seed).reset_index(drop=True)


def band_table(fast_p: np.ndarray, full_p: np.ndarray, weak: np.ndarray | None,
               test_fast: np.ndarray, test_full: np.ndarray, test_y: np.ndarray,
               threshold: float, bands=CANDIDATES) -> list[dict]:
    """One row per band: what the cascade would do, from the two models' scores alone."""
    full_label = full_p >= threshold
    rows = []
    for low, high in bands:
        unsure = in_band(fast_p, low, high)
        label = np.where(unsure, full_p, fast_p) >= threshold
        test_unsure = in_band(test_fast, low, high)
        test_label = np.where(test_unsure, test_full, test_fast) >= threshold
        row = {"low": low, "high": high, "to_encoder": float(unsure.mean()),
               "agreement_with_full": float((label == full_label).mean()),
               "paper_test_to_encoder": float(test_unsure.mean()),
               "paper_test_accuracy": float((test_label == test_y).mean())}
        if weak is not None:
            known = ~np.isnan(weak)
            row["weak_agreement"] = float((label[known] == weak[known].astype(bool)).mean())
        rows.append(row)
    return rows


def choose(rows: list[dict], min_agreement: float) -> dict:
    """The band sending the fewest responses to the encoder among those agreeing enough."""
    good = [r for r in rows if r["agreement_with_full"] >= min_agreement]
    if not good:
        raise SystemExit(f"no candidate band agrees with the full model on {min_agreement:.3f} of the sample; "
                         "lower --min-agreement or add wider bands")
    return min(good, key=lambda r: (r["to_encoder"], -r["agreement_with_full"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="the shared data folder")
    parser.add_argument("--n", type=at_least_one, default=4000, help="unlabelled responses to score (default: 4000)")
    parser.add_argument("--min-agreement", type=_probability, default=0.99,
                        help="least share of the sample on which the cascade keeps the full model's label (default: 0.99)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    fast, full = ResponseCascade.load()._stages()  # the shipped stages, by their package paths
    sample = unlabelled_sample(args.data_dir, args.n)
    texts = sample["response"].tolist()
    weak = sample["weak_label"].map({"refusal": 1.0, "compliance": 0.0}).astype(float).to_numpy()
    _, _, test = data.paper_split()
    test_texts, test_y = test["response"].tolist(), refusal_y(test).astype(bool)
    fast_p, test_fast = fast.refusal_probability(texts), fast.refusal_probability(test_texts)
    full_p, test_full = full.refusal_probability(texts), full.refusal_probability(test_texts)
    threshold = full.threshold
    known = ~np.isnan(weak)
    rows = band_table(fast_p, full_p, weak if known.any() else None, test_fast, test_full, test_y, threshold)
    print(f"{len(texts)} unlabelled logged responses ({', '.join(f'{k} {v}' for k, v in sample['source'].value_counts().items())}); "
          f"{int(known.sum())} carry a weak label")
    for name, model, logs, paper_test in (("full model", full, full_p, test_full), ("n-gram variant", fast, fast_p, test_fast)):
        weak_note = (f", weak-label agreement {((logs >= model.threshold)[known] == weak[known].astype(bool)).mean():.4f}"
                     if known.any() else "")
        print(f"{name} alone: paper test accuracy {((paper_test >= model.threshold) == test_y).mean():.4f}{weak_note}")
    print()
    print("| band | to the encoder (logs) | label = full model's (logs) | weak-label agreement (logs) "
          "| to the encoder (paper test) | paper test accuracy |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| ({r['low']}, {r['high']}) | {r['to_encoder']:.3f} | {r['agreement_with_full']:.4f} | "
              f"{r.get('weak_agreement', float('nan')):.4f} | {r['paper_test_to_encoder']:.3f} | {r['paper_test_accuracy']:.4f} |")
    best = choose(rows, args.min_agreement)
    print(f"\nchosen (fewest to the encoder with agreement >= {args.min_agreement}): ({best['low']}, {best['high']})")
    if (best["low"], best["high"]) != (DEFAULT_LOW, DEFAULT_HIGH):
        print(f"the shipped band is ({DEFAULT_LOW}, {DEFAULT_HIGH}): set refusal_predictor.cascade.DEFAULT_LOW / "
              f"DEFAULT_HIGH to the chosen band")


if __name__ == "__main__":
    main()
