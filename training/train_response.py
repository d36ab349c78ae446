"""Build the shipped response classifier (``models/response``).

    python -m training.train_response --data-dir DATA [--select] [-o models/response]

Training pool: the paper's train + validation split (never its test split), XSTest v2 and
GPTFuzz's labelled responses. ``--select`` compares the candidate recipes of
``training.recipes.RESPONSE_CANDIDATES`` by grouped cross-validation on that pool (folds split by
prompt, so one prompt's responses from several LLMs never straddle train and test) and trains the
best; without it the recipe named by ``training.recipes.RESPONSE_RECIPE_NAME`` is trained.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from refusal_predictor import ResponseClassifier
from refusal_predictor.metrics import format_table

from . import data, recipes, selection
from .baselines import refusal_y
from .selection import fit_with_cache

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent


GPTFUZZ_MAX_ROWS = 1500


def training_pool(data_dir: Path, gptfuzz_max_rows: int = GPTFUZZ_MAX_ROWS) -> pd.DataFrame:
    """Paper train+val, XSTest v2 and a de-duplicated sample of GPTFuzz.

    GPTFuzz is capped because, whole, it is 62 % of the pool and teaches a false prior: its short
    responses are 2,407 refusals to 12 answers (and label 0 means "not jailbroken", which
    includes role-play preambles such as "Sure! Here's ..."), so short compliant answers from
    other LLMs came out as refusals. 1,500 de-duplicated rows keep what it teaches about
    GPT-4-style one-line refusals (XSTest leave-one-model-out) without that prior.
    """
    pool = data.load_labelled_responses(data_dir, include_paper_test=False)
    is_fuzz = pool["source"] == "gptfuzz"
    fuzz = pool[is_fuzz].drop_duplicates(subset=["response"])
    if len(fuzz) > gptfuzz_max_rows:
        fuzz = fuzz.sample(n=gptfuzz_max_rows, random_state=0)
    return pd.concat([pool[~is_fuzz], fuzz]).reset_index(drop=True)


def make_classifier(recipe: dict[str, Any], **overrides) -> ResponseClassifier:
    return ResponseClassifier(**{**recipe, **overrides})


def train(data_dir: Path, output: Path, select: bool) -> ResponseClassifier:
    pool = training_pool(data_dir)
    texts = pool["response"].tolist()
    y = refusal_y(pool)
    cache: dict = {}
    selection_rows: list[dict] = []
    name = recipes.RESPONSE_RECIPE_NAME
    if select:
        groups = pool["prompt"].fillna("").tolist()
        name, selection_rows = selection.select(ResponseClassifier, recipes.RESPONSE_CANDIDATES, texts, y, groups, cache)
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
