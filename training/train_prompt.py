"""Build the shipped prompt classifiers (``models/prompt/<target>``), one per target LLM.

    python -m training.train_prompt --data-dir DATA [--targets gpt-3.5-turbo gpt-4 ...]

For each target, every public log of that LLM (``training.data.load_bootstrap_pool``) is labelled
by the shipped ResponseClassifier (the bootstrap), duplicate prompts are merged (majority label),
and a PromptClassifier is trained on those labels. Held out of every target, so the evaluation
protocols stay clean: the paper's test split and every prompt of the paper's Quora file. Left out
as prompts: GPTFuzz (its responses answer a jailbreak template we do not have, not the question)
and refusal_direction's activation-edited completions (not the model's own behaviour).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from refusal_predictor import PromptClassifier, ResponseClassifier
from refusal_predictor.metrics import format_table
from refusal_predictor.prompt import write_model_card
from refusal_predictor.prompt_training import MIN_PER_CLASS, dedupe_by_prompt

from . import data, recipes, selection

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent
DEFAULT_TARGETS = ("gpt-3.5-turbo", "gpt-4", "llama-2-7b-chat", "llama-3-8b-instruct", "mistral-7b-instruct")
MIN_PROMPTS = 300


def held_out_prompts() -> set[str]:
    """Prompts no shipped prompt model may see: the paper's test split and its Quora file."""
    _, _, test = data.paper_split()
    quora = data.load_quora_hand_labelled()
    return set(test["prompt"]) | set(quora["prompt"])


def prompt_pool(data_dir: Path) -> pd.DataFrame:
    pool = data.load_bootstrap_pool(data_dir)
    keep = pool["source"] != "gptfuzz"
    if "intervention" in pool:
        keep &= pool["intervention"].isna()
    keep &= ~pool["prompt"].isin(held_out_prompts())
    keep &= pool["prompt"].fillna("").str.strip() != ""
    return pool[keep].reset_index(drop=True)


def bootstrap(pool: pd.DataFrame, rc: ResponseClassifier) -> pd.DataFrame:
    """Label every response with the response classifier; one row per (prompt, response)."""
    proba = rc.refusal_probability(pool["response"].fillna("").tolist())
    return pool.assign(refusal_probability=proba, label=np.where(proba >= rc.threshold, "refusal", "compliance"))


def target_rows(labelled: pd.DataFrame, target: str) -> pd.DataFrame:
    rows = labelled[labelled["model"] == target]
    merged = dedupe_by_prompt(rows[["prompt", "label", "refusal_probability", "model", "source"]].to_dict("records"))
    return pd.DataFrame(merged)


def select_recipe(labelled: pd.DataFrame, target: str = "gpt-3.5-turbo") -> tuple[str, list[dict]]:
    """Compare the prompt recipes by 5-fold CV on one target's bootstrapped labels."""
    rows = target_rows(labelled, target)
    prompts = rows["prompt"].tolist()
    y = (rows["label"] == "refusal").astype(int).to_numpy()
    name, table = selection.select(PromptClassifier, recipes.PROMPT_CANDIDATES, prompts, y, prompts, {})
    print(format_table(table, ["recipe", "n", "accuracy", "f1", "auroc", "seconds"],
                       title=f"prompt recipes: 5-fold cross-validation on {target}'s bootstrapped labels"))
    return name, table


def train_target(
    target: str, labelled: pd.DataFrame, output_root: Path, rc: ResponseClassifier,
    recipe_name: str = recipes.PROMPT_RECIPE_NAME, selection_rows: list[dict] | None = None,
) -> dict[str, Any] | None:
    rows = target_rows(labelled, target)
    y = (rows["label"] == "refusal").astype(int).to_numpy() if len(rows) else np.zeros(0, dtype=int)
    n_ref, n_comp = int(y.sum()), int(len(y) - y.sum())
    if len(rows) < MIN_PROMPTS or min(n_ref, n_comp) < MIN_PER_CLASS:
        print(f"skip {target}: {len(rows)} prompts ({n_ref} refused, {n_comp} complied); need {MIN_PROMPTS} and {MIN_PER_CLASS} of each")
        return None
    recipe = recipes.PROMPT_CANDIDATES[recipe_name]
    model = PromptClassifier(**recipe).fit(rows["prompt"].tolist(), y)
    sources = (
        rows.assign(refused=y).groupby("source").agg(rows=("refused", "size"), refusal_rate=("refused", "mean"))
        .reset_index().to_dict("records")
    )
    card = {
        "target": target,
        "summary": f"Predicts whether {target} refuses a prompt; {len(rows)} prompts with bootstrapped labels.",
        "recipe": recipe_name,
        "model_selection": selection_rows or [],
        "training": {
            "rows": len(rows), "refusal_rate": float(y.mean()), "sources": sources,
            "labels": "bootstrapped by the shipped ResponseClassifier (majority over duplicate prompts)",
            "response_model_sha256": rc.manifest_["files"]["model.joblib"],
            "excluded": "the paper's test split and all prompts of quora_insincere_hand_labeled.json",
        },
        "evaluation": {"cross_validation_vs_bootstrapped_labels": model.metadata.get("cross_validation", {})},
        "encoder": {"name": model.features_.encoder_name_, "sha256": model.features_.encoder_sha256_},
    }
    folder = output_root / target
    model.save(folder, metadata=card)
    write_model_card(folder, model.metadata)
    print(f"saved {folder}: {card['summary']} CV AUROC {card['evaluation']['cross_validation_vs_bootstrapped_labels'].get('auroc', float('nan')):.3f}")
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--targets", nargs="+", default=list(DEFAULT_TARGETS))
    parser.add_argument("-o", "--output-root", type=Path, default=REPO / "models" / "prompt")
    parser.add_argument("--select", action="store_true", help="choose the recipe by CV on gpt-3.5-turbo first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    rc = ResponseClassifier.load()
    pool = prompt_pool(args.data_dir)
    pool = pool[pool["model"].isin(args.targets)]
    print(f"bootstrapping {len(pool)} responses of {pool['model'].nunique()} target LLMs")
    labelled = bootstrap(pool, rc)
    name, table = select_recipe(labelled) if args.select else (recipes.PROMPT_RECIPE_NAME, [])
    for target in args.targets:
        train_target(target, labelled, args.output_root, rc, name, table)


if __name__ == "__main__":
    main()
