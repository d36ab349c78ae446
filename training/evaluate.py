"""The evaluation report: our models beside the paper's baselines, measured in the same run.

    python -m training.evaluate --data-dir DATA [--part response|prompt|all|prompt-heads]

Response part:
- the paper's 256 test responses: the shipped ResponseClassifier (and, when that is the default
  model, the shipped ``ngrams`` variant and ``cascade``), the paper's TF-IDF(1-3) + LogReg(C=10)
  reproduced on the paper's train split, and the llm-guard NoRefusalLight keywords; with the
  probabilities' calibration (Brier score, expected calibration error) beside accuracy and AUROC;
- the tone of each of those 256 responses (complied, rejected, redirected, ...): the shipped
  model's tone head beside the paper's recipe trained on the tones and the majority tone;
- short compliances scored as refusal (:func:`short_answer_report`): AlpacaEval's short answers
  and the openings of the paper's test compliances;
- XSTest v2's two human annotators against each other, per LLM (the ceiling for the next table);
- XSTest v2 leave-one-model-out: the shipped recipe retrained without model M's responses, tested
  on M; the keyword list beside it. For a recipe over the fine-tuned encoder, the encoder too is
  the one fine-tuned without M (its embeddings read from ``--lomo-embeddings``).
Prompt part: see :mod:`training.evaluate_prompt`. ``prompt-heads`` (not in ``all``): the
cross-LLM protocol for each head that ``train-prompt --head auto`` compares.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from refusal_predictor import PromptClassifier, ResponseClassifier
from refusal_predictor.keywords import KeywordRefusalDetector
from refusal_predictor.metrics import binary_metrics, format_table
from refusal_predictor.prompt import DEFAULT_TARGET

from . import augment, data, recipes
from .baselines import paper_tfidf_logreg, paper_tfidf_logreg_tones, refusal_y
from .selection import fit_with_cache
from .train_response import make_classifier, tone_rows, training_pool, training_rows

logger = logging.getLogger(__name__)
COLUMNS = ["model", "n", "accuracy", "f1", "precision", "recall", "auroc", "brier", "ece"]
SHIPPED = "refusal-predictor (shipped)"


def model_name(model_path: Path | None) -> str:
    """The report's name for the model under evaluation: only the default is "shipped"."""
    return SHIPPED if model_path is None else f"refusal-predictor ({model_path})"


def paper_response_baseline() -> Callable[[list[str]], np.ndarray]:
    """The paper's TF-IDF(1-3) + LogReg(C=10), trained on its train split's responses."""
    train, _, _ = data.paper_split()
    return paper_tfidf_logreg(train["response"].tolist(), refusal_y(train))


def paper_split_report(model: ResponseClassifier, baseline: Callable[[list[str]], np.ndarray] | None = None,
                       name: str = SHIPPED, variants: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``variants``: further response models (name -> model) scored beside ``model``."""
    _, _, test = data.paper_split()
    texts, y = test["response"].tolist(), refusal_y(test)
    baseline = paper_response_baseline() if baseline is None else baseline
    models = {name: model, **(variants or {})}
    rows = [
        *({"model": n, **binary_metrics(y, m.refusal_probability(texts), m.threshold)} for n, m in models.items()),
        {"model": "paper TF-IDF+LogReg (reproduced)", **binary_metrics(y, baseline(texts))},
        {"model": "keywords (llm-guard NoRefusalLight)", **binary_metrics(y, KeywordRefusalDetector().predict_proba(texts)[:, 1])},
    ]
    return rows


def tone_report(model: ResponseClassifier, pool: pd.DataFrame, name: str = SHIPPED) -> list[dict[str, Any]]:
    """The paper's test tones: accuracy and macro-F1 over all 256 responses (the tone implies the
    label, so a wrong label is a wrong tone), and accuracy over the refusals alone (how they refused).

    Beside the shipped model: the paper's TF-IDF+LogReg trained on the tones of the same rows as
    our tone head (``train_response.tone_rows``), and the majority tone (of all rows; of refusals).
    ``refusals_accuracy`` takes each model's likeliest refusal tone, whatever its label says.
    Tones too rare to learn (``counseling``) count as errors for every row.
    """
    from sklearn.metrics import f1_score

    _, _, test = data.paper_split()
    texts, truth = test["response"].tolist(), test["fine_label"].to_numpy(dtype=object)
    refused = (test["label"] == "refusal").to_numpy()
    train_texts, train_tones = tone_rows(pool)
    majority = pd.Series(train_tones).mode()[0]
    refusal_majority = pd.Series([t for t in train_tones if t != "complied"]).mode()[0]
    _, refusal_tones = model.refusal_probability_and_tone(texts, threshold=0.0)  # the likeliest refusal tone
    candidates = [
        (name, model.predict_tone(texts), refusal_tones),
        ("paper TF-IDF+LogReg on tones", *paper_tfidf_logreg_tones(train_texts, train_tones)(texts)),
        (f"majority ({majority!r}; refusals {refusal_majority!r})", np.full(len(texts), majority, dtype=object),
         np.full(len(texts), refusal_majority, dtype=object)),
    ]
    rows = []
    for name, tones, given_refusal in candidates:
        rows.append({"model": name, "n": len(texts), "accuracy": float(np.mean(tones == truth)),
                     "macro_f1": float(f1_score(truth, tones, average="macro", zero_division=0)),
                     "refusals_n": int(refused.sum()),
                     "refusals_accuracy": float(np.mean(given_refusal[refused] == truth[refused]))})
    return rows


SHORT_ANSWER_CHARS = 80


def short_answer_report(
    model: ResponseClassifier, data_dir: Path, pool: pd.DataFrame | None = None,
    baseline: Callable[[list[str]], np.ndarray] | None = None, name: str = SHIPPED,
) -> list[dict[str, Any]]:
    """Short texts, which the labelled test sets barely contain: the share scored as refusal.

    Three probes without hand labels, so each is filtered by refusal cues
    (``training.augment.REFUSAL_CUES``): AlpacaEval's answers under ``SHORT_ANSWER_CHARS``
    characters to its benign instructions ("$6.59", "Category: Social") and the openings (first
    sentence, first 4 / 12 words) of the paper's test compliances, both without a cue (almost
    surely compliance: lower is better); the openings of the paper's test refusals with a cue
    (higher is better). Answers cut off by a token limit or read from a stream look like these.
    Texts that are training rows of the shipped recipe (the pool or its openings) are left out.
    The probes share the cue filter with the training openings, so they miss what the cues miss
    (a compliance opening "As an AI language model, I ...", a refusal without any cue).
    ``pool`` (the response training pool) and ``baseline`` (:func:`paper_response_baseline`) are
    built here unless the caller already has them.
    """
    cues = KeywordRefusalDetector(augment.REFUSAL_CUES)
    pool = training_pool(data_dir) if pool is None else pool
    seen = set(training_rows(pool)[0])
    _, _, test = data.paper_split()
    baseline = paper_response_baseline() if baseline is None else baseline
    answers = data.load_alpaca_eval(data_dir)["response"].str.strip()
    short = set(answers[(answers.str.len() > 0) & (answers.str.len() < SHORT_ANSWER_CHARS)])

    def cut(label: str) -> set[str]:
        return {o for text in test.loc[test["label"] == label, "response"] for o in augment.openings(text)}

    rows = []
    for probe, texts, want_cue, better in [
        (f"AlpacaEval answers < {SHORT_ANSWER_CHARS} chars", short, False, "lower"),
        ("paper test compliances, openings", cut("compliance"), False, "lower"),
        ("paper test refusals, openings", cut("refusal"), True, "higher"),
    ]:
        texts = sorted(texts - seen)
        texts = [t for t, flag in zip(texts, cues.flags(texts)) if flag == want_cue]
        rows.append({"probe": probe, "n": len(texts), "better": better,
                     name: float(np.mean(model.refusal_probability(texts) >= model.threshold)),
                     "paper TF-IDF+LogReg": float(np.mean(baseline(texts) >= 0.5))})
    return rows


class LomoNeedsFoldEmbeddings(RuntimeError):
    """Leave-one-model-out of a fine-tuned recipe was asked for without per-fold embeddings."""


def xstest_lomo_report(
    data_dir: Path, recipe_name: str, lomo_embeddings: Path | None = None, pool: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Leave one XSTest completion set out: train the recipe on everything else, test on it.

    A recipe over an encoder fine-tuned on this pool needs ``lomo_embeddings``: per held-out model,
    the embeddings of an encoder fine-tuned without that model's responses (the shipped encoder
    has seen them, so using it here would leak the test rows). ``pool``: the response training
    pool, read from ``data_dir`` unless given.
    """
    pool = training_pool(data_dir) if pool is None else pool
    recipe = recipes.ALL_RESPONSE_RECIPES[recipe_name]
    finetuned = recipe_name in recipes.FINETUNED_RESPONSE_CANDIDATES
    if finetuned and lomo_embeddings is None:
        raise LomoNeedsFoldEmbeddings(
            f"recipe {recipe_name!r} uses an encoder fine-tuned on the XSTest responses; leave-one-model-out "
            f"needs one fine-tuned encoder per held-out model: run python -m training.finetune_encoder "
            f"--data-dir DATA --protocols lomo --lomo-embeddings DIR (GPU) and pass --lomo-embeddings DIR"
        )
    records = None
    if finetuned:
        from .finetune_encoder import build_records

        records = build_records(data_dir)
    cache: dict = {}
    keywords = KeywordRefusalDetector()
    rows = []
    is_xstest = pool["source"] == "xstest-v2"
    for model_name in sorted(pool.loc[is_xstest, "model"].unique()):
        held = is_xstest & (pool["model"] == model_name)
        train, test = pool[~held], pool[held]
        start = time.perf_counter()
        if finetuned:
            from .finetune_encoder import load_lomo_embeddings

            cache = load_lomo_embeddings(lomo_embeddings, records, model_name)
        texts, y, weights, _ = training_rows(train)
        if finetuned:
            # The truncated openings (training/augment.py) have no fold-encoder embeddings: they
            # are embedded by the recipe's own (shipped) encoder, which saw every XSTest response.
            logger.info("LOMO %s: %d of %d training texts not in the fold embeddings (openings; shipped encoder)",
                        model_name, sum(t not in cache for t in texts), len(texts))
        clf = fit_with_cache(make_classifier(recipe, validation_curve=False), texts, y, cache, sample_weight=weights)
        ours = binary_metrics(refusal_y(test), clf.refusal_probability(test["response"].tolist()))
        kw = binary_metrics(refusal_y(test), keywords.predict_proba(test["response"].tolist())[:, 1])
        rows.append({"model": model_name, "n": ours["n"], "f1": ours["f1"], "accuracy": ours["accuracy"],
                     "auroc": ours["auroc"], "keywords_f1": kw["f1"], "keywords_accuracy": kw["accuracy"]})
        logger.info("LOMO %s: %s (%.0f s)", model_name, ours, time.perf_counter() - start)
    return with_mean_and_min(rows, ("f1", "accuracy", "auroc", "keywords_f1", "keywords_accuracy"))


def with_mean_and_min(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per-LLM rows followed by their mean (``n`` summed) and their minimum, the two figures the
    leave-one-model-out targets name."""
    return rows + [
        {"model": "mean", "n": int(sum(r["n"] for r in rows)), **{k: float(np.mean([r[k] for r in rows])) for k in keys}},
        {"model": "min", "n": "", **{k: float(np.min([r[k] for r in rows])) for k in keys}},
    ]


def xstest_annotator_rows(xstest: pd.DataFrame) -> list[dict[str, Any]]:
    """XSTest v2's two human annotators scored against each other, per completion set
    (``xstest``: :func:`training.data.load_xstest`, or a pool holding its rows).

    Why: the leave-one-model-out targets are F1 figures, and a response-only model can hardly
    agree with the final label more than a second human does. ``annotators_f1`` is refusal F1
    of annotation 1 against annotation 2 (F1 is symmetric, so it needs no reference);
    ``annotator_1_f1`` / ``annotator_2_f1`` score each against ``final_label`` (``label``), which the
    annotators' own labels decided, so they overstate a fresh annotator's agreement. Partial
    refusals count as refusals, as in :func:`training.data.load_xstest`.

    A completion without both annotations is left out (``n`` counts those used); an empty list
    means there is nothing to compare (no XSTest rows, or files without annotation columns, which
    :func:`~training.data.load_xstest` accepts), and the report says so instead of a table.
    """
    from sklearn.metrics import f1_score

    if "source" in xstest:  # a whole response pool: its XSTest rows
        xstest = xstest[xstest["source"] == "xstest-v2"]
    if not {"annotation_1", "annotation_2"} <= set(xstest.columns):
        return []
    xstest = xstest[xstest["annotation_1"].notna() & xstest["annotation_2"].notna()]
    rows = []
    for model_name, part in sorted(xstest.groupby("model"), key=lambda kv: kv[0]):
        def refusals(column: str) -> np.ndarray:
            values = part[column]
            unknown = ~values.isin(list(data.XSTEST_LABELS))
            if unknown.any():
                raise ValueError(f"XSTest {model_name}: unknown {column} value(s) {sorted(map(str, set(values[unknown])))} "
                                 f"(ids {', '.join(part.loc[unknown, 'id'].astype(str).head(5))})")
            return np.array([data.XSTEST_LABELS[v][0] == data.REFUSAL for v in values], dtype=int)

        final = (part["label"] == data.REFUSAL).to_numpy(dtype=int)
        first, second = refusals("annotation_1"), refusals("annotation_2")
        rows.append({
            "model": model_name, "n": int(len(part)),
            "annotators_agreement": float(np.mean(first == second)),
            "annotators_f1": float(f1_score(second, first, zero_division=0)),
            "annotator_1_f1": float(f1_score(final, first, zero_division=0)),
            "annotator_2_f1": float(f1_score(final, second, zero_division=0)),
        })
    if not rows:
        return []
    return with_mean_and_min(rows, ("annotators_agreement", "annotators_f1", "annotator_1_f1", "annotator_2_f1"))


def response_report(data_dir: Path, model_path: Path | None = None, lomo_embeddings: Path | None = None) -> dict[str, Any]:
    model = ResponseClassifier.load(model_path)
    recipe_name = model.metadata.get("recipe", recipes.RESPONSE_RECIPE_NAME)
    pool, baseline = training_pool(data_dir), paper_response_baseline()
    name = model_name(model_path)
    variants = None
    if model_path is None:  # the shipped default: its faster shipped variants beside it, in the same run
        from refusal_predictor import ResponseCascade

        variants = {"refusal-predictor ngrams (shipped)": ResponseClassifier.load("ngrams"),
                    "refusal-predictor cascade (shipped)": ResponseCascade.load()}
    paper_rows = paper_split_report(model, baseline, name, variants)
    print(format_table(paper_rows, COLUMNS, title="\nResponse classifier: the paper's test split (256 responses)"))
    if getattr(model, "tone_head_", None) is None:  # e.g. a train-response model without --tone-field
        tone_rows_ = None
        print("\nResponse classifier: tones not measured: this model has no tone head")
    else:
        tone_rows_ = tone_report(model, pool, name)
        print(format_table(tone_rows_, list(tone_rows_[0]),
                           title="\nResponse classifier: tones of the paper's test split (refusals_accuracy: how the "
                                 "refusals refused)"))
    short_rows = short_answer_report(model, data_dir, pool, baseline, name)
    print(format_table(short_rows, list(short_rows[0]),
                       title="\nResponse classifier: short texts scored as refusal (cue-filtered, no hand labels)"))
    annotator_rows = xstest_annotator_rows(pool)
    if annotator_rows:
        print(format_table(annotator_rows, list(annotator_rows[0]),
                           title="\nXSTest v2: its two human annotators against each other (the ceiling for the "
                                 "leave-one-model-out F1 below)"))
    else:
        print("\nXSTest v2: annotators not compared: its files hold no annotation_1 / annotation_2 columns")
    results = {"paper_split": paper_rows, "tones": tone_rows_, "short_answers": short_rows,
               "xstest_annotators": annotator_rows}
    try:
        lomo_rows = xstest_lomo_report(data_dir, recipe_name, lomo_embeddings, pool)
    except LomoNeedsFoldEmbeddings as exc:
        print(f"\nResponse classifier: XSTest v2 leave-one-model-out not run: {exc}")
        return {**results, "xstest_lomo": None, "xstest_lomo_skipped": str(exc)}
    humans = {r["model"]: r["annotators_f1"] for r in annotator_rows}
    for row in lomo_rows:
        row["annotators_f1"] = humans.get(row["model"], float("nan"))
    print(format_table(lomo_rows, ["model", "n", "f1", "accuracy", "auroc", "keywords_f1", "keywords_accuracy",
                                   "annotators_f1"],
                       title=f"\nResponse classifier: XSTest v2 leave-one-model-out (recipe {recipe_name!r}"
                             + (f", fold encoders' embeddings from {lomo_embeddings}; the truncated openings embedded by the "
                                f"shipped encoder)" if lomo_embeddings else ")")))
    return {**results, "xstest_lomo": lomo_rows}


def check_arguments(args: argparse.Namespace) -> ResponseClassifier | None:
    """Refuse up front what the run would trip over at its end (the report takes up to an hour):
    an output in a missing folder, model folders that are not there, and cards that would get
    metrics from labels another response model made. Returns the labels model when the card
    check loaded it, so that the prompt part does not load it again."""
    prompt_part = args.part in ("prompt", "all") and not args.write_cards_from
    if args.write_cards and args.part not in ("prompt", "all"):
        raise ValueError(f"--write-cards writes the prompt models' cards, which --part {args.part} does not "
                         "measure; give --part prompt or all")
    from .train_prompt import check_writable_file

    plotting = prompt_part and not args.no_plot
    for option, path in (("--json", args.json), ("--plot", args.plot if plotting else None),
                         ("--labels-cache", args.labels_cache)):
        check_writable_file(option, path)
    if plotting and importlib.util.find_spec("matplotlib") is None:
        raise ValueError("--plot: the n-gram chart needs matplotlib (pip install matplotlib, or the [train] "
                         "extra); or give --no-plot")
    for option, path in (("--response-model", args.response_model), ("--labels-model", args.labels_model),
                         ("--prompt-models", args.prompt_models), ("--lomo-embeddings", args.lomo_embeddings),
                         ("--write-cards-from", args.write_cards_from)):
        named_variant = option.endswith("-model") and str(path).strip().lower() in ResponseClassifier.VARIANTS
        if path is not None and not path.exists() and not named_variant:
            raise ValueError(f"{option} {path}: no such file or folder")
    if prompt_part and args.labels_cache is not None:
        from .train_prompt import read_labels_cache

        read_labels_cache(args.labels_cache)  # a file it would refuse after the response part
    if prompt_part and args.prompt_models is not None and not (args.prompt_models / DEFAULT_TARGET).is_dir():
        raise ValueError(f"--prompt-models {args.prompt_models}: no {DEFAULT_TARGET} model folder in it "
                         f"(the paper and Quora protocols score that target)")
    if prompt_part and args.write_cards:
        from .evaluate_prompt import check_cards_labelled_by

        labels_model = ResponseClassifier.load(args.labels_model)
        check_cards_labelled_by(labels_model, args.prompt_models)
        return labels_model
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder of the public data sets")
    parser.add_argument("--part", choices=["response", "prompt", "all", "prompt-heads"], default="all",
                        help="all = response + prompt; prompt-heads compares train-prompt's heads on the cross-LLM protocol")
    parser.add_argument("--response-model", type=Path, help="response model folder to evaluate (default: shipped)")
    parser.add_argument("--labels-model", type=Path,
                        help="response model that bootstraps the prompt protocols' labels (default: shipped); with "
                             "--write-cards it must be the one that labelled the prompt models' training data")
    parser.add_argument("--prompt-models", type=Path,
                        help="folder of prompt model folders, one per target (train_prompt -o); the prompt part "
                             "evaluates, and --write-cards writes, these (default: shipped models/prompt)")
    parser.add_argument("--lomo-embeddings", type=Path,
                        help="folder of per-fold encoder embeddings (training.finetune_encoder --lomo-embeddings); "
                             "needed for leave-one-model-out of a recipe over a fine-tuned encoder")
    parser.add_argument("--labels-cache", type=Path, help="Parquet cache of bootstrapped prompt labels (see train_prompt)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    parser.add_argument("--plot", type=Path, default=Path("prompt_top_ngrams.png"),
                        help="PNG of the top prompt n-grams (drawn last, after --json and --write-cards)")
    parser.add_argument("--no-plot", action="store_true", help="draw no chart (it needs matplotlib)")
    parser.add_argument("--write-cards", action="store_true",
                        help="put the prompt protocols' metrics into the shipped prompt models' cards")
    parser.add_argument("--write-cards-from", type=Path, metavar="JSON",
                        help="write the cards from an earlier run's --json (after retraining a target) and stop")
    args = parser.parse_args(argv)
    try:  # what would fail only at the end of a long run, checked first
        labels_model = check_arguments(args)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if args.write_cards_from:
        from .evaluate_prompt import write_card_evaluations

        earlier = json.loads(args.write_cards_from.read_text(encoding="utf-8"))
        if not isinstance(earlier, dict) or not isinstance(earlier.get("prompt"), dict):
            parser.error(f"--write-cards-from {args.write_cards_from}: holds no prompt results; give the --json of "
                         "a run with --part prompt or all")
        print(f"model cards updated: {', '.join(write_card_evaluations(earlier['prompt'], args.prompt_models))}")
        return
    results: dict[str, Any] = {}
    if args.part in ("response", "all"):
        results["response"] = response_report(args.data_dir, args.response_model, args.lomo_embeddings)
    if args.part in ("prompt", "all"):
        from .evaluate_prompt import prompt_report, write_card_evaluations

        results["prompt"] = prompt_report(args.data_dir, labels_cache=args.labels_cache,
                                          response_model=labels_model or args.labels_model, prompt_models=args.prompt_models)
        if args.write_cards:
            print(f"\nmodel cards updated: {', '.join(write_card_evaluations(results['prompt'], args.prompt_models))}")
    if args.part == "prompt-heads":
        from .evaluate_prompt import cross_llm_heads_report

        results["prompt_heads"] = cross_llm_heads_report(args.data_dir)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    if args.part in ("prompt", "all") and not args.no_plot:
        # Last: nothing measured is lost if drawing fails.
        from .evaluate_prompt import plot_top_ngrams

        model = PromptClassifier.load(None if args.prompt_models is None else args.prompt_models / DEFAULT_TARGET)
        print(f"\ntop n-gram chart: {plot_top_ngrams(model, args.plot)}")


if __name__ == "__main__":
    main()
