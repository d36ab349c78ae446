"""Build the shipped response classifier (``models/response``).

    python -m training.train_response --data-dir DATA [--select] [-o models/response]

Training pool: the paper's train + validation split (never its test split), XSTest v2 and
GPTFuzz's labelled responses. ``--select`` compares the candidate recipes of
``training.recipes.RESPONSE_CANDIDATES`` by grouped cross-validation on that pool (folds split by
prompt, so one prompt's responses from several LLMs never straddle train and test) and trains the
best; without it the recipe in ``training.recipes.RESPONSE_RECIPE`` is trained.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from refusal_predictor import ResponseClassifier
from refusal_predictor.metrics import binary_metrics, format_table

from . import data, recipes

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent


def training_pool(data_dir: Path) -> pd.DataFrame:
    pool = data.load_labelled_responses(data_dir, include_paper_test=False)
    return pool.reset_index(drop=True)


def make_classifier(recipe: dict[str, Any], **overrides) -> ResponseClassifier:
    params = {**recipe, **overrides}
    return ResponseClassifier(**params)


def fit_with_cache(clf: ResponseClassifier, texts: list[str], y, cache: dict | None) -> ResponseClassifier:
    """Fit, reusing embeddings already computed for the same texts (model selection, LOMO)."""
    features = clf.make_features()
    if cache is not None and features.use_embeddings:
        features.use_cache(cache)
    features.fit(texts)
    return clf.fit(texts, y, features=features)


def grouped_cv(recipe: dict[str, Any], pool: pd.DataFrame, cache: dict, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Out-of-fold metrics of one recipe on the pool, folds grouped by prompt."""
    texts = pool["response"].tolist()
    y = (pool["label"] == "refusal").astype(int).to_numpy()
    groups = pool["prompt"].fillna("").to_numpy()
    oof = np.zeros(len(texts))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(texts, y, groups):
        clf = make_classifier(recipe, validation_curve=False)
        fit_with_cache(clf, [texts[i] for i in train_idx], y[train_idx], cache)
        oof[test_idx] = clf.refusal_probability([texts[i] for i in test_idx])
    return binary_metrics(y, oof)


def select_recipe(pool: pd.DataFrame, cache: dict) -> tuple[str, list[dict]]:
    rows = []
    for name, recipe in recipes.RESPONSE_CANDIDATES.items():
        start = time.perf_counter()
        metrics = grouped_cv(recipe, pool, cache)
        rows.append({"recipe": name, **metrics, "seconds": round(time.perf_counter() - start, 1)})
        logger.info("%s: %s", name, metrics)
    best = max(rows, key=lambda r: (r["accuracy"], r["f1"]))["recipe"]
    return best, rows


def train(data_dir: Path, output: Path, select: bool) -> ResponseClassifier:
    pool = training_pool(data_dir)
    texts = pool["response"].tolist()
    y = (pool["label"] == "refusal").astype(int).to_numpy()
    cache: dict = {}
    selection_rows: list[dict] = []
    name = recipes.RESPONSE_RECIPE_NAME
    if select:
        name, selection_rows = select_recipe(pool, cache)
        print(format_table(selection_rows, ["recipe", "n", "accuracy", "f1", "auroc", "seconds"],
                           title="grouped 5-fold cross-validation on the training pool"))
    recipe = recipes.RESPONSE_CANDIDATES[name]
    clf = fit_with_cache(make_classifier(recipe), texts, y, cache)
    sources = (
        pool.groupby(["source", "model"])
        .agg(rows=("label", "size"), refusal_rate=("label", lambda s: float((s == "refusal").mean())))
        .reset_index()
        .to_dict("records")
    )
    metadata = {
        "summary": f"response classifier, recipe {name!r}, trained on {len(pool)} labelled responses",
        "recipe": name,
        "training": {"rows": len(pool), "refusal_rate": float(y.mean()), "sources": sources,
                     "excluded": "the paper's test split (256 rows)"},
        "model_selection": selection_rows,
    }
    clf.save(output, metadata=metadata)
    print(f"saved {output}: {metadata['summary']}")
    return clf


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder of the public data sets")
    parser.add_argument("-o", "--output", type=Path, default=REPO / "models" / "response")
    parser.add_argument("--select", action="store_true", help="choose the recipe by cross-validation first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    train(args.data_dir, args.output, args.select)


if __name__ == "__main__":
    main()
