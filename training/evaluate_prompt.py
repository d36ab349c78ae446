"""Prompt-classifier protocols, each printed beside a baseline measured in the same run.

- Paper split: the shipped gpt-3.5-turbo model (bootstrapped labels only; the test prompts were
  held out of its training) on the 256 test prompts' hand labels. Baseline: TF-IDF + LogReg
  trained on the hand labels of the paper's train split.
- Quora protocol (the paper's): the shipped gpt-3.5-turbo recipe retrained with nothing of
  quora_insincere_hand_labeled.json, not even bootstrapped; test on its usable prompts. Baseline:
  TF-IDF + LogReg on the hand labels of the paper's other prompts.
- Cross-LLM: XSTest v2, "did model M refuse prompt P": 5 folds split by prompt; a PromptClassifier
  trained on M's bootstrapped labels in 4 folds, scored against M's human labels on the fifth.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from refusal_predictor import PromptClassifier, ResponseClassifier
from refusal_predictor.artifacts import read_manifest, shipped_path, write_json
from refusal_predictor.classifiers import FORMAT_VERSION, HEADS, MANIFEST, MODEL_FORMAT
from refusal_predictor.metrics import binary_metrics, format_table
from refusal_predictor.heads import leaf_heads
from refusal_predictor.prompt import DEFAULT_TARGET, write_model_card

from . import data, recipes
from .baselines import paper_tfidf_logreg, refusal_y
from .selection import fit_with_cache

logger = logging.getLogger(__name__)
COLUMNS = ["model", "n", "accuracy", "f1", "auroc", "majority_rate", "brier", "ece"]
PAPER_QUORA = {"paper BERT (10k in-distribution bootstrap)": 0.7594, "paper TF-IDF+LogReg (same)": 0.7391}
# What each protocol's row means in a model card (the protocol measures the shipped model, or its
# recipe retrained under the protocol's exclusions).
CARD_PROTOCOLS = {
    "paper_split": "shipped model; the paper's 256 test prompts, hand labels (held out of training)",
    "quora": "recipe retrained without any Quora prompt; 985 hand-labelled Quora prompts",
    "cross_llm": "recipe trained on the target's bootstrapped labels of 4/5 of XSTest v2's prompts; human labels of the fifth",
}


def paper_split_protocol(model: PromptClassifier) -> list[dict[str, Any]]:
    train, _, test = data.paper_split()
    texts, y = test["prompt"].tolist(), refusal_y(test)
    baseline = paper_tfidf_logreg(train["prompt"].tolist(), refusal_y(train))
    return [
        {"model": f"refusal-predictor {model.target} (bootstrapped)", **binary_metrics(y, model.refusal_probability(texts), model.threshold)},
        {"model": "TF-IDF+LogReg on hand labels (paper train)", **binary_metrics(y, baseline(texts))},
    ]


def quora_protocol(labelled: pd.DataFrame, recipe_name: str = recipes.PROMPT_RECIPE_NAME,
                   threshold: float = 0.5) -> list[dict[str, Any]]:
    """The shipped gpt-3.5-turbo recipe retrained with every Quora prompt removed, on Quora.
    ``threshold``: the labelling response model's (ties between a prompt's answers)."""
    from .train_prompt import fit_target, same_prompt

    quora = data.load_quora_hand_labelled()
    paper = data.load_paper()
    quora_prompts = set(quora["prompt"])
    others = paper[~same_prompt(paper["prompt"], quora_prompts)]
    texts, y = quora["prompt"].tolist(), refusal_y(quora)
    baseline = paper_tfidf_logreg(others["prompt"].tolist(), refusal_y(others))
    model, _ = fit_target(labelled[~same_prompt(labelled["prompt"], quora_prompts)], "gpt-3.5-turbo", recipe_name,
                          threshold=threshold, validation_curve=False)
    rows = [
        {"model": "refusal-predictor gpt-3.5-turbo recipe, no Quora (bootstrapped)", **binary_metrics(y, model.refusal_probability(texts), model.threshold)},
        {"model": "TF-IDF+LogReg on hand labels (paper's non-Quora)", **binary_metrics(y, baseline(texts))},
    ]
    rows += [{"model": name, "n": 985, "accuracy": acc} for name, acc in PAPER_QUORA.items()]
    return rows


def bootstrapped_xstest(data_dir: Path, rc: ResponseClassifier) -> pd.DataFrame:
    """XSTest v2's responses with the response classifier's label (``boot``) beside the human one."""
    xstest = data.load_xstest(data_dir)
    return xstest.assign(boot=rc.refusal_probability(xstest["response"].tolist()) >= rc.threshold)


def cross_llm_protocol(
    xstest: pd.DataFrame, auxiliary: pd.DataFrame | None = None, aux_weight: float = 0.0, folds: int = 5,
    recipe_name: str = recipes.PROMPT_RECIPE_NAME, recipe: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Per XSTest model M: 5-fold by prompt, trained on M's bootstrapped labels of 4 folds.

    ``xstest`` comes from :func:`bootstrapped_xstest`. ``auxiliary`` (bootstrapped prompts of other
    sources, never XSTest's) joins each fold's training at ``aux_weight``: the generic refusal
    prior a user's own small log would lack. ``recipe`` (PromptClassifier parameters) replaces the
    named recipe.
    """
    recipe = recipe if recipe is not None else recipes.PROMPT_CANDIDATES[recipe_name]
    cache: dict = {}
    rows = []
    for model_name, frame in xstest.groupby("model"):
        frame = frame.reset_index(drop=True)
        prompts, human, boot = frame["prompt"].tolist(), refusal_y(frame), frame["boot"].astype(int).to_numpy()
        oof = np.zeros(len(frame))
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
        for train_idx, test_idx in splitter.split(prompts, human):
            clf = PromptClassifier(**recipe, validation_curve=False)
            train_p = [prompts[i] for i in train_idx]
            train_y = boot[train_idx]
            weights = np.ones(len(train_p))
            if auxiliary is not None and aux_weight > 0:
                train_p = train_p + auxiliary["prompt"].tolist()
                train_y = np.concatenate([train_y, refusal_y(auxiliary)])
                weights = np.concatenate([weights, np.full(len(auxiliary), aux_weight)])
            fit_with_cache(clf, train_p, train_y, cache, sample_weight=weights)
            oof[test_idx] = clf.refusal_probability([prompts[i] for i in test_idx])
        rows.append({"model": model_name, **binary_metrics(human, oof),
                     "bootstrap_agreement": float((boot == human).mean())})
    return rows


def cross_llm_heads_report(data_dir: Path) -> list[dict[str, Any]]:
    """The cross-LLM protocol for each head of ``train-prompt --head auto`` (PromptClassifier's
    defaults otherwise): how the heads compare on a small log, 360 training prompts per fold."""
    xstest = bootstrapped_xstest(data_dir, ResponseClassifier.load())
    rows = []
    for head in HEADS:
        for row in cross_llm_protocol(xstest, recipe={"head": head}):
            rows.append({"head": head, **row})
    print(format_table(rows, ["head"] + COLUMNS, title="\nPrompt heads: cross-LLM on XSTest v2 (5-fold by prompt, "
                                                     "360 training prompts per fold; PromptClassifier defaults)"))
    return rows


def plot_top_ngrams(model: PromptClassifier, path: Path, k: int = 15) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = model.top_ngrams(k)  # a ValueError for a model without n-grams, before a figure is made
    signed = "refusal" in top  # a logistic head (alone or half of a blend), else LightGBM's gains
    items = top["refusal"][::-1] + top["compliance"][::-1] if signed else top["importance"][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(items) + 1.5))
    ax.barh([n for n, _ in items], [w for _, w in items],
            color=["#c0392b" if w > 0 else "#2471a3" for _, w in items] if signed else "#7f8c8d")
    blend = len(leaf_heads(model._fitted_head())) > 1
    ax.set_xlabel("weight toward refusal (log-odds per unit TF-IDF" + (", the logistic half's share of the blend)" if blend else ")")
                  if signed else "LightGBM gain (split importance; no direction)")
    ax.set_title(f"Top n-grams of the {model.target or 'prompt'} prompt classifier"
                 + (" (logistic half of a blend)" if blend else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def auxiliary_prompts(labelled: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Bootstrapped prompts of the auxiliary sources other than XSTest, one row per prompt
    (``threshold``: the labelling response model's, for ties)."""
    from .train_prompt import AUXILIARY_SOURCES, merge_by_prompt

    aux = labelled[labelled["source"].isin(AUXILIARY_SOURCES) & (labelled["source"] != "xstest-v2")]
    return merge_by_prompt(aux, threshold)


def card_evaluations(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Protocol rows per shipped target, for its model card: the protocols whose test data that
    target answered (gpt-3.5-turbo: the paper's data; XSTest's models: cross-LLM)."""
    per_target: dict[str, dict[str, dict[str, Any]]] = {}
    for protocol in ("paper_split", "quora"):
        per_target.setdefault(DEFAULT_TARGET, {})[protocol] = {**results[protocol][0], "protocol": CARD_PROTOCOLS[protocol]}
    for row in results["cross_llm"]:
        per_target.setdefault(row["model"], {})["cross_llm"] = {**row, "protocol": CARD_PROTOCOLS["cross_llm"]}
    return per_target


def write_card_evaluations(results: dict[str, Any], root: Path | None = None) -> list[str]:
    """Put the protocol metrics into each shipped target's model card (manifest metadata,
    ``model_card.json``, ``MODEL_CARD.md``); a target no protocol covers says so. Returns the
    targets written. Only metadata changes, so the manifest's file hashes stay valid."""
    root = shipped_path("prompt") if root is None else root
    per_target = card_evaluations(results)
    written = []
    for folder in sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()):
        manifest = read_manifest(folder, MANIFEST, MODEL_FORMAT, (FORMAT_VERSION,))
        card = manifest.setdefault("metadata", {})
        evaluation = {k: v for k, v in card.get("evaluation", {}).items() if k not in CARD_PROTOCOLS}
        evaluation.update(per_target.get(card.get("target", folder.name), {}))
        card["evaluation"] = evaluation
        if set(evaluation) & set(CARD_PROTOCOLS):
            card.pop("notes", None)
        else:
            card["notes"] = ("No held-out human labels of this LLM's refusals are in the public data: only the "
                             "cross-validation against its bootstrapped labels is reported.")
        write_json(folder / MANIFEST, manifest)
        write_model_card(folder, card)
        written.append(folder.name)
    return written


def check_cards_labelled_by(rc: ResponseClassifier, root: Path | None = None) -> None:
    """The protocols retrain on ``rc``'s labels; cards of models whose data another response model
    labelled would get metrics that are not theirs (``evaluate --labels-model X --write-cards``
    over the shipped models, which the shipped response model labelled)."""
    root = shipped_path("prompt") if root is None else root
    sha = rc.manifest_["files"]["model.joblib"]
    temperature = getattr(rc, "temperature", 1.0)  # a stand-in model without one labels as the head does
    for folder in sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()):
        card = read_manifest(folder, MANIFEST, MODEL_FORMAT, (FORMAT_VERSION,)).get("metadata", {})
        training = card.get("training", {})
        labelled_by = training.get("response_model_sha256")
        # Cards written before temperatures existed record the sha256 only, which is checked alone.
        if "response_temperature" in training and training["response_temperature"] != temperature:
            raise ValueError(f"{folder}: its training data was labelled by the response model of sha256 {labelled_by} "
                             f"at temperature {training['response_temperature']}, not at this run's labels model's "
                             f"{temperature}: pass --labels-model with the response model that labelled it")
        if labelled_by != sha:
            raise ValueError(f"{folder}: its training data was labelled by the response model of sha256 {labelled_by}, "
                             f"not by the labels model of this run ({sha}); its card would get another model's "
                             f"metrics: pass --labels-model with the response model that labelled it")


def prompt_report(data_dir: Path, plot_path: Path | None = None, labels_cache: Path | None = None,
                  response_model: Path | ResponseClassifier | None = None,
                  prompt_models: Path | None = None) -> dict[str, Any]:
    """``response_model`` (a folder or a loaded model) bootstraps the labels the protocols retrain
    on (default: shipped);
    ``prompt_models`` holds the target folders scored as they are (default: shipped)."""
    from .train_prompt import bootstrapped_pool

    rc = response_model if isinstance(response_model, ResponseClassifier) else ResponseClassifier.load(response_model)
    model = PromptClassifier.load(None if prompt_models is None else prompt_models / DEFAULT_TARGET)
    labelled = bootstrapped_pool(data_dir, rc, labels_cache)
    # The protocols retrain the recipe the shipped default was trained with (train_prompt --select).
    recipe_name = model.metadata.get("recipe", recipes.PROMPT_RECIPE_NAME)
    results: dict[str, Any] = {"recipe": recipe_name}
    results["paper_split"] = paper_split_protocol(model)
    print(format_table(results["paper_split"], COLUMNS, title="\nPrompt classifier: the paper's test split (256 prompts, hand labels)"))
    results["quora"] = quora_protocol(labelled, recipe_name, rc.threshold)
    print(format_table(results["quora"], COLUMNS, title="\nPrompt classifier: Quora protocol (hand-labelled Quora prompts, none in training)"))
    xstest = bootstrapped_xstest(data_dir, rc)
    results["cross_llm"] = cross_llm_protocol(xstest, recipe_name=recipe_name)
    print(format_table(results["cross_llm"], COLUMNS + ["bootstrap_agreement"],
                       title="\nPrompt classifier: cross-LLM on XSTest v2 (5-fold by prompt, M's bootstrapped labels only; human test labels)"))
    aux = auxiliary_prompts(labelled, rc.threshold)
    results["cross_llm_with_auxiliary"] = cross_llm_protocol(xstest, aux, recipes.CROSS_LLM_AUX_WEIGHT,
                                                             recipe_name=recipe_name)
    print(format_table(results["cross_llm_with_auxiliary"], COLUMNS,
                       title=f"\nPrompt classifier: cross-LLM on XSTest v2, plus {len(aux)} auxiliary bootstrapped prompts "
                             f"of other sources at weight {recipes.CROSS_LLM_AUX_WEIGHT}"))
    if plot_path is not None:
        plot_top_ngrams(model, plot_path)
        print(f"\ntop n-gram chart: {plot_path}")
    return results
