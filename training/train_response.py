"""Build the shipped response classifier (``models/response``).

    python -m training.train_response --data-dir DATA [--select] [-o models/response]

The tone head (how a refusal refused: :mod:`refusal_predictor.tones`) is fitted on the paper's
hand-labelled tones of the same rows; ``--tones-only`` refits only that, keeping model.joblib.

Training pool: the paper's train + validation split (never its test split), XSTest v2 and
GPTFuzz's labelled responses, plus the openings of those responses at a lower weight
(:mod:`training.augment`: short compliances, which the labelled sets lack). ``--select`` compares the candidate recipes of
``training.recipes.RESPONSE_CANDIDATES`` by grouped cross-validation on that pool (folds split by
prompt, so one prompt's responses from several LLMs never straddle train and test) and trains the
best; without it the recipe named by ``--recipe`` or ``training.recipes.RESPONSE_RECIPE_NAME`` is
trained. Recipes over an encoder fine-tuned on this pool (``recipes.FINETUNED_RESPONSE_CANDIDATES``)
are not in the cross-validation: their embeddings saw every fold's test rows; they are compared by
leave-one-model-out with per-fold encoders (``training.evaluate --lomo-embeddings``).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from refusal_predictor import ResponseClassifier
from refusal_predictor.classifiers import check_save_folder
from refusal_predictor.metrics import format_table

from . import augment, data, recipes, selection
from .baselines import refusal_y
from .selection import fit_with_cache

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent


GPTFUZZ_MAX_ROWS = 1500
# Stored beside the validation curve of a recipe whose encoder was fine-tuned on the same pool;
# ``threshold_for`` warns with it. Measured for the shipped model on the paper's 256 held-out
# test responses: threshold_for(recall=0.95) reached recall 0.75 there (see the README).
FINETUNED_CURVE_CAVEAT = (
    "optimistic: the encoder was fine-tuned on the same rows, so the out-of-fold scores behind this "
    "curve (and cross_validation) saw their labels and are near 0 or 1, and thresholds picked here miss "
    "their goals on new responses (the probabilities themselves were recalibrated on held-out "
    "responses: see 'recalibration'). Pick a threshold "
    "on labelled responses of your own: refusal_predictor.thresholds.pick_threshold("
    "validation_curve(y, model.refusal_probability(texts)), recall=...)")


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


def training_rows(pool: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray, pd.DataFrame]:
    """Texts, 0/1 targets and weights the response recipe trains on: ``pool`` plus the openings of
    its responses (:mod:`training.augment`) at weight ``recipes.TRUNCATION_WEIGHT``.

    The shipped model and every leave-one-model-out fold are trained through here, so what the
    report measures is what ships. Also returns the added rows (for the model card).
    """
    extra = augment.truncated_responses(pool)
    rows = pd.concat([pool, extra], ignore_index=True)
    weights = np.concatenate([np.ones(len(pool)), np.full(len(extra), recipes.TRUNCATION_WEIGHT)])
    return rows["response"].tolist(), refusal_y(rows), weights, extra


def tone_rows(pool: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Responses and tones the tone head learns from: the pool's paper rows (its train and
    validation splits), the one labelled set that says *how* a response refused. XSTest's
    full/partial refusal is another scheme and is not mixed in."""
    paper = pool[(pool["source"] == "chatgpt-refusals") & pool["fine_label"].notna()]
    return paper["response"].tolist(), paper["fine_label"].tolist()


def add_tones(clf: ResponseClassifier, pool: pd.DataFrame) -> dict[str, Any]:
    """Fit ``clf``'s tone head on :func:`tone_rows`; returns what the model card records of it."""
    texts, tones = tone_rows(pool)
    clf.fit_tones(texts, tones)
    return {"source": "chatgpt-refusals train + validation splits (hand-labelled tones)",
            **clf.metadata["tones"]}


def make_classifier(recipe: dict[str, Any], **overrides) -> ResponseClassifier:
    return ResponseClassifier(**{**recipe, **overrides})


def lomo_selection(data_dir: Path, lomo_embeddings: Path) -> tuple[str, list[dict]]:
    """Frozen cross-validation winner vs the fine-tuned recipes, by XSTest leave-one-model-out.

    Each fine-tuned recipe is scored with encoders fine-tuned without the held-out model
    (``lomo_embeddings``); the best mean F1 (ties: the higher minimum) wins.
    """
    from .evaluate import xstest_lomo_report

    rows = []
    for name in ["ngrams-logreg", *recipes.FINETUNED_RESPONSE_CANDIDATES]:
        table = xstest_lomo_report(data_dir, name, lomo_embeddings)
        per_model = {r["model"]: round(float(r["f1"]), 4) for r in table if r["model"] not in ("mean", "min")}
        rows.append({"recipe": name, "mean_f1": round(float(np.mean(list(per_model.values()))), 4),
                     "min_f1": round(float(min(per_model.values())), 4), "f1_by_model": per_model})
        logger.info("leave-one-model-out %s: %s", name, rows[-1])
    best = max(rows, key=lambda r: (r["mean_f1"], r["min_f1"]))["recipe"]
    return best, rows


def train(data_dir: Path, output: Path, select: bool, recipe_name: str | None = None,
          lomo_embeddings: Path | None = None) -> ResponseClassifier:
    pool = training_pool(data_dir)
    texts = pool["response"].tolist()
    y = refusal_y(pool)
    cache: dict = {}
    selection_rows: list[dict] = []
    name = recipe_name or recipes.RESPONSE_RECIPE_NAME
    if select:
        groups = pool["prompt"].fillna("").tolist()
        name, selection_rows = selection.select(ResponseClassifier, recipes.RESPONSE_CANDIDATES, texts, y, groups, cache)
        print(format_table(selection_rows, ["recipe", "n", "accuracy", "f1", "auroc", "seconds"],
                           title="grouped 5-fold cross-validation on the training pool"))
    lomo_rows: list[dict] = []
    if lomo_embeddings is not None:
        name, lomo_rows = lomo_selection(data_dir, lomo_embeddings)
        print(format_table([{k: v for k, v in r.items() if k != "f1_by_model"} for r in lomo_rows],
                           ["recipe", "mean_f1", "min_f1"], title="XSTest v2 leave-one-model-out F1"))
    recipe = recipes.ALL_RESPONSE_RECIPES[name]
    train_texts, train_y, weights, truncated = training_rows(pool)
    # The selection's cache holds the frozen encoder's embeddings (every candidate shares it): a
    # recipe chosen by leave-one-model-out over another encoder must not read them (both give 384
    # numbers, so nothing failed; the head learned one encoder's embeddings and scored with another).
    final_cache = cache if name in recipes.RESPONSE_CANDIDATES else {}
    clf = fit_with_cache(make_classifier(recipe), train_texts, train_y, final_cache, sample_weight=weights,
                         validation_rows=np.arange(len(train_texts)) < len(pool))
    tones = add_tones(clf, pool)
    sources = (
        pool.groupby(["source", "model"])
        .agg(rows=("label", "size"), refusal_rate=("label", lambda s: float((s == "refusal").mean())))
        .reset_index()
        .to_dict("records")
    )
    metadata = {
        "summary": f"response classifier, recipe {name!r}, trained on {len(pool)} labelled responses "
                   f"and {len(truncated)} of their openings",
        "recipe": name,
        "training": {"rows": len(pool), "refusal_rate": float(y.mean()), "sources": sources,
                     "excluded": "the paper's test split (256 rows)",
                     "truncated_openings": {"rows": len(truncated), "weight": recipes.TRUNCATION_WEIGHT,
                                            "refusal_rate": float((truncated["label"] == "refusal").mean()),
                                            "what": "openings of the pool's responses (training/augment.py)"}},
        "model_selection": selection_rows,
        "lomo_selection": lomo_rows,
        "tones": tones,
    }
    if name in recipes.FINETUNED_RESPONSE_CANDIDATES:
        # Its cross-validated calibration saw the encoder's own training rows: over-confident.
        from .recalibrate_response import heldout_responses, recalibrate_on

        metadata["validation_curve_caveat"] = FINETUNED_CURVE_CAVEAT
        recalibrate_on(clf, heldout_responses(data_dir, pool, trained_texts=train_texts))
    clf.save(output, metadata=metadata)
    print(f"saved {output}: {metadata['summary']}")
    return clf


def train_tones(data_dir: Path, folder: Path) -> ResponseClassifier:
    """Give the model in ``folder`` a tone head (or a new one), leaving its model.joblib as it is
    (``save_tones``), so the prompt models whose labels it bootstrapped still name it by its sha256.
    """
    clf = ResponseClassifier.load(folder)
    tones = add_tones(clf, training_pool(data_dir))
    clf.save_tones(folder, metadata={"tones": tones})
    print(f"saved {folder}: tone head over {', '.join(map(str, clf.tones_[1:]))} "
          f"(cross-validated accuracy {tones['cross_validation']['accuracy']:.4f})")
    return clf


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder of the public data sets")
    parser.add_argument("-o", "--output", type=Path, default=REPO / "models" / "response",
                        help="model folder to write (default: this checkout's models/response, replacing the "
                             "shipped default model; the n-gram variant is models/response-ngrams)")
    parser.add_argument("--select", action="store_true",
                        help="choose among the frozen-encoder recipes by grouped cross-validation and train the best "
                             "(the fine-tuned encoder's recipe, the shipped default, competes only with --lomo-embeddings)")
    parser.add_argument("--lomo-embeddings", type=Path,
                        help="per-fold fine-tuned encoder embeddings (training.finetune_encoder --lomo-embeddings): "
                             "choose between the n-gram recipe and the fine-tuned ones by leave-one-model-out")
    parser.add_argument("--recipe", choices=sorted(recipes.ALL_RESPONSE_RECIPES),
                        help=f"recipe to train (default {recipes.RESPONSE_RECIPE_NAME}; "
                             f"models/response-ngrams is ngrams-logreg)")
    parser.add_argument("--tones-only", action="store_true",
                        help="only (re)fit the tone head of the model already in --output, keeping its model.joblib")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.tones_only:
        train_tones(args.data_dir, args.output)
        return
    if args.recipe is not None and (args.select or args.lomo_embeddings is not None):
        # Either chooses the recipe: the one asked for was silently replaced by the winner.
        parser.error("--recipe names the recipe; --select and --lomo-embeddings choose one: give one or the other")
    try:  # before the training (minutes), not after it
        check_save_folder(args.output, ResponseClassifier.kind)
    except ValueError as exc:
        parser.error(str(exc))
    if args.lomo_embeddings is not None and not args.lomo_embeddings.is_dir():
        parser.error(f"--lomo-embeddings {args.lomo_embeddings}: no such folder")
    train(args.data_dir, args.output, args.select, args.recipe, args.lomo_embeddings)

if __name__ == "__main__":
    main()
