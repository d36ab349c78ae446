"""Build the shipped prompt classifiers (``models/prompt/<target>``), one per target LLM.

    python -m training.train_prompt --data-dir DATA [--targets gpt-3.5-turbo gpt-4 ...] [-o DIR]

For each target, every public log of that LLM (``training.data.load_bootstrap_pool``) is labelled
by the shipped ResponseClassifier (or ``--response-model DIR``: the bootstrap), duplicate prompts are merged (majority label),
and a PromptClassifier is trained on those labels, with the prompts other LLMs answered in the
auxiliary sources at a lower weight. Held out of every target: the paper's test split (the
evaluation retrains without the Quora prompts for the Quora protocol). Left out as prompts:
GPTFuzz (its responses answer a jailbreak template we do not have, not the question) and
refusal_direction's activation-edited completions (not the model's own behaviour).

Each target's model card gets its training sources and cross-validation here; the held-out
protocols' metrics are added by ``python -m training.evaluate --data-dir DATA --write-cards``.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from refusal_predictor import PromptClassifier, ResponseClassifier
from refusal_predictor.metrics import format_table
from refusal_predictor.prompt import TARGET_ALIASES
from refusal_predictor.bootstrap import merge_duplicates
from refusal_predictor.text import text_key
from refusal_predictor.prompt_training import MIN_PER_CLASS
from refusal_predictor.paths import check_output_path

from . import data, recipes, selection
from .baselines import refusal_y

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent
DEFAULT_TARGETS = ("gpt-3.5-turbo", "gpt-4", "llama-2-7b-chat", "llama-3-8b-instruct", "mistral-7b-instruct")
MIN_PROMPTS = 300
# The recipe is chosen once, by CV on this target's labels (the largest log), for every target.
SELECTION_TARGET = DEFAULT_TARGETS[0]
# Logs of any LLM from these sources join every target's training as auxiliary rows: they hold the
# harmful, jailbreak and borderline prompts that a single LLM's logs cover thinly.
AUXILIARY_SOURCES = ("xstest-v2", "refusal-direction", "jailbreakbench", "llm-past-tense")


def held_out_prompts() -> set[str]:
    """Prompts no shipped prompt model may see: the paper's test split."""
    _, _, test = data.paper_split()
    return set(test["prompt"])


def same_prompt(prompts: pd.Series, among: Iterable[str]) -> pd.Series:
    """Which of ``prompts`` are one of ``among`` up to whitespace and case (``text_key``): what
    a protocol holds out is held out in every spelling, as ``merge_duplicates`` merges them."""
    keys = {text_key(p) for p in among}
    return prompts.fillna("").map(text_key).isin(keys)


def prompt_pool(data_dir: Path) -> pd.DataFrame:
    pool = data.load_bootstrap_pool(data_dir)
    keep = pool["source"] != "gptfuzz"
    if "intervention" in pool:
        keep &= pool["intervention"].isna()
    keep &= ~same_prompt(pool["prompt"], held_out_prompts())
    keep &= pool["prompt"].fillna("").str.strip() != ""
    return pool[keep].reset_index(drop=True)


def bootstrapped_pool(data_dir: Path, rc: ResponseClassifier, cache: Path | None = None,
                      targets: Sequence[str] = DEFAULT_TARGETS) -> pd.DataFrame:
    """The targets' logs plus the auxiliary sources, labelled by the response classifier."""
    whole = prompt_pool(data_dir)
    check_targets(whole, targets)
    pool = whole[whole["model"].isin(targets) | whole["source"].isin(AUXILIARY_SOURCES)].reset_index(drop=True)
    logger.info("bootstrap pool: %d responses of %d LLMs", len(pool), pool["model"].nunique())
    return bootstrap(pool, rc, cache, universe=whole)


class UnknownTargetError(ValueError):
    """A ``--targets`` name that no log in the data answered."""


def canonical_target(name: str) -> str:
    """A target as the logs and ``PromptClassifier.load(target=...)`` name it: ``GPT4``, ``gpt4``
    and ``chatgpt`` are ``gpt-4``, ``gpt-4`` and ``gpt-3.5-turbo``."""
    return data.normalize_model_name(TARGET_ALIASES.get(name.strip().lower(), name))


def check_targets(pool: pd.DataFrame, targets: Sequence[str]) -> None:
    """Refuse, before the bootstrap (minutes), a target no log answered: a misspelt name only
    failed once every response had been labelled."""
    known = set(pool["model"].dropna())
    unknown = [t for t in targets if t not in known]
    if unknown:
        counts = pool["model"].value_counts()
        listed = ", ".join(f"{m} ({n} rows)" for m, n in counts.items())
        raise UnknownTargetError(f"no logs of target(s) {', '.join(map(repr, unknown))} in the data; "
                                 f"the logs' LLMs are: {listed}")


def check_writable_file(option: str, path: Path | None) -> None:
    """A file the run writes at its end (or after its first long step) must have a folder to go to
    (the writers do not make one), and one it may write in (``paths.check_output_path``)."""
    if path is None:
        return
    if not path.parent.is_dir():
        raise ValueError(f"{option} {path}: folder {path.parent} does not exist")
    check_output_path(path, option)


def check_outputs(output_root: Path, targets: Sequence[str]) -> None:
    """Each target's folder must be one a save may replace (new, empty, or a prompt model), checked
    before the bootstrap rather than after the training."""
    from refusal_predictor.classifiers import check_save_folder

    for target in targets:
        check_save_folder(output_root / target, PromptClassifier.kind)


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells as plain str ("" for missing): a Parquet round trip turns object columns into pandas
    string columns, which ``DataFrame.equals`` tells apart from the same values as objects."""
    return frame.astype("object").where(frame.notna(), "").astype(str).reset_index(drop=True)


CACHE_KEY = ["prompt", "response", "model", "source"]


class LabelsCacheError(ValueError):
    """A ``--labels-cache`` file this script cannot read as one it wrote."""


def read_labels_cache(cache: Path) -> pd.DataFrame | None:
    """The cached labels, or None when there is no cache yet; an unreadable file is an error
    naming it (it is not overwritten: it may be something else the user keeps there)."""
    if not cache.exists():
        return None
    try:
        cached = pd.read_parquet(cache)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise LabelsCacheError(f"--labels-cache {cache}: not a readable Parquet file ({exc}); give another "
                               f"path or delete it") from exc
    missing = [c for c in CACHE_KEY + ["refusal_probability", "label", "response_model"] if c not in cached]
    if missing:
        raise LabelsCacheError(f"--labels-cache {cache}: not a labels cache of this script (no column(s) "
                               f"{', '.join(missing)}); give another path or delete it")
    proba = pd.to_numeric(cached["refusal_probability"], errors="coerce").to_numpy(dtype=float)
    bad = ~((proba >= 0) & (proba <= 1))  # NaN included
    if bad.any():
        raise LabelsCacheError(f"--labels-cache {cache}: {int(bad.sum())} refusal_probability value(s) not in "
                               f"[0, 1] (row {int(np.argmax(bad))} first); give another path or delete it")
    return cached


def labels_model_key(rc: ResponseClassifier) -> str:
    """Which response model labelled a cache's rows: its model.joblib's sha256, and its temperature
    when it has one (the file does not hold it, and it moves the probabilities a cache keeps)."""
    sha = rc.manifest_["files"]["model.joblib"]
    temperature = getattr(rc, "temperature", 1.0)  # a stand-in model without one labels as the head does
    return sha if temperature == 1.0 else f"{sha}+temperature={temperature!r}"


def bootstrap(pool: pd.DataFrame, rc: ResponseClassifier, cache: Path | None = None,
              universe: pd.DataFrame | None = None) -> pd.DataFrame:
    """Label every response with the response classifier; one row per (prompt, response).

    ``cache`` (Parquet) keeps the labels between runs, row by row: a run reuses the rows the same
    response model labelled before and labels only the others. A run over fewer rows
    (``--targets``) once replaced a whole pool's cache with its own rows, so the next full run,
    and ``finetune_encoder --labels``, lost the rest. The file is written in ``universe``'s order
    (the whole data pool, of which ``pool`` is a part) and holds only its rows: so it is the same
    whatever runs came before, and rows the data no longer has leave it. Labels are recomputed
    at the model's threshold; labels another response model made are stale and replaced.
    """
    key = labels_model_key(rc)
    rows = pool[CACHE_KEY].reset_index(drop=True)
    cached = read_labels_cache(cache) if cache is not None else None
    if cached is not None and not (cached["response_model"] == key).all():
        logger.warning("%s holds labels by another response model; they are replaced", cache)
        cached = None
    known = pd.DataFrame(columns=CACHE_KEY + ["_p"])
    if cached is not None:
        known = _as_text(cached[CACHE_KEY]).assign(_p=cached["refusal_probability"].to_numpy(dtype=float))
        known = known.drop_duplicates(subset=CACHE_KEY)
    proba = _as_text(rows).merge(known, on=CACHE_KEY, how="left")["_p"].to_numpy(dtype=float, copy=True)
    new = np.isnan(proba)
    if new.any():
        proba[new] = rc.refusal_probability(rows.loc[new, "response"].fillna("").tolist())
    labelled = rows.assign(refusal_probability=proba, label=_labels(proba, rc.threshold))
    if cache is not None:
        print(f"bootstrap labels: {int((~new).sum())} from {cache}, {int(new.sum())} labelled now")
        _write_cache(cache, labelled, cached, universe, key, rc.threshold)
    return labelled


def _labels(proba: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(proba >= threshold, "refusal", "compliance")


def _write_cache(cache: Path, labelled: pd.DataFrame, cached: pd.DataFrame | None,
                 universe: pd.DataFrame | None, key: str, threshold: float) -> None:
    """Every row of ``universe`` with a label (this run's or the cache's), in its order; without a
    universe, the cache's rows and then this run's new ones. Written only when it changed."""
    columns = CACHE_KEY + ["refusal_probability"]
    key_columns = [f"_{c}" for c in CACHE_KEY]
    both = pd.concat(([] if cached is None else [cached[columns]]) + [labelled[columns]], ignore_index=True)
    both[key_columns] = _as_text(both[CACHE_KEY]).to_numpy()
    both = both.drop_duplicates(subset=key_columns, keep="last")
    if universe is not None:
        order = universe[CACHE_KEY].reset_index(drop=True)
        order[key_columns] = _as_text(order).to_numpy()
        both = order.drop_duplicates(subset=key_columns).merge(both[key_columns + ["refusal_probability"]], on=key_columns)
    proba = both["refusal_probability"].to_numpy(dtype=float)
    out = both[CACHE_KEY].assign(refusal_probability=proba, label=_labels(proba, threshold),
                                 response_model=key).reset_index(drop=True)
    if cached is not None and len(cached) == len(out) and _as_text(out).equals(_as_text(cached[out.columns])):
        return
    _write_atomically(out, cache)


def _write_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Parquet written beside ``path`` (a link's target: a symlinked shared cache stays shared)
    and renamed over it, so a run stopped mid-write leaves the previous cache, not half of one.
    Two runs sharing one cache at once are not supported: the last to finish wins."""
    import tempfile

    path = path.resolve()
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    partial = Path(name)
    try:
        frame.to_parquet(partial)
        partial.chmod(0o644)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def labels_threshold(labels: pd.DataFrame) -> float:
    """A cut that reproduces a labels cache's labels, for merges' ties (the cache does not record
    its response model's threshold): 0.5 when the labels agree with it (the shipped response
    model's), else the lowest refusal probability labelled refusal (any cut above the highest
    compliance's probability and up to that one reproduces them). A cache whose labels no single
    cut explains is an error (not a cache this script wrote)."""
    proba = labels["refusal_probability"].to_numpy(dtype=float)
    refused = (labels["label"] == "refusal").to_numpy()
    if np.array_equal(proba >= 0.5, refused):
        return 0.5
    cut = float(proba[refused].min()) if refused.any() else 1.0
    if not np.array_equal(proba >= cut, refused):
        raise ValueError("the labels cache's labels are not one cut of its refusal probabilities")
    return cut


def merge_by_prompt(rows: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """One row per prompt (:func:`~refusal_predictor.bootstrap.merge_duplicates`); a tie goes to the
    mean probability cut at ``threshold``, the one of the response model that labelled ``rows``."""
    records = rows[["prompt", "label", "refusal_probability", "model", "source"]].to_dict("records")
    return pd.DataFrame(merge_duplicates(records, ("prompt",), threshold=threshold))


def target_rows(labelled: pd.DataFrame, target: str, aux_weight: float = 0.0, threshold: float = 0.5) -> pd.DataFrame:
    """The target's own prompts (weight 1), plus, with ``aux_weight > 0``, the auxiliary sources'
    prompts of other LLMs that the target's logs lack (that weight). ``threshold``: the labelling
    response model's, for ties between a prompt's answers."""
    own = merge_by_prompt(labelled[labelled["model"] == target], threshold).assign(weight=1.0, auxiliary=False)
    if aux_weight <= 0:
        return own
    aux = labelled[(labelled["model"] != target) & labelled["source"].isin(AUXILIARY_SOURCES)]
    aux = aux[~same_prompt(aux["prompt"], own["prompt"])]
    if aux.empty:
        return own
    return pd.concat([own, merge_by_prompt(aux, threshold).assign(weight=aux_weight, auxiliary=True)], ignore_index=True)


def select_recipe(labelled: pd.DataFrame, target: str = SELECTION_TARGET, threshold: float = 0.5) -> tuple[str, list[dict]]:
    """Compare the prompt recipes by 5-fold CV on one target's bootstrapped labels."""
    rows = target_rows(labelled, target, threshold=threshold)
    prompts = rows["prompt"].tolist()
    y = refusal_y(rows)
    name, table = selection.select(PromptClassifier, recipes.PROMPT_CANDIDATES, prompts, y, prompts, {})
    print(format_table(table, ["recipe", "n", "accuracy", "f1", "auroc", "seconds"],
                       title=f"prompt recipes: 5-fold cross-validation on {target}'s bootstrapped labels"))
    return name, table


def fit_target(
    labelled: pd.DataFrame, target: str, recipe_name: str = recipes.PROMPT_RECIPE_NAME,
    aux_weight: float = recipes.PROMPT_AUX_WEIGHT, threshold: float = 0.5, **overrides: Any,
) -> tuple[PromptClassifier | None, pd.DataFrame]:
    """Train one target's PromptClassifier; ``None`` when it has too few prompts of a class.
    ``threshold``: the labelling response model's (ties between a prompt's answers)."""
    rows = target_rows(labelled, target, aux_weight, threshold)
    y = refusal_y(rows) if len(rows) else np.zeros(0, dtype=int)
    own = ~rows["auxiliary"].to_numpy() if len(rows) else np.zeros(0, dtype=bool)
    n_ref, n_comp = int(y[own].sum()), int(own.sum() - y[own].sum())
    if own.sum() < MIN_PROMPTS or min(n_ref, n_comp) < MIN_PER_CLASS:
        print(f"skip {target}: {int(own.sum())} prompts ({n_ref} refused, {n_comp} complied); need {MIN_PROMPTS} and {MIN_PER_CLASS} of each")
        return None, rows
    recipe = {**recipes.PROMPT_CANDIDATES[recipe_name], **overrides}
    # The stored validation curve and CV metrics describe the target's own prompts: the auxiliary
    # prompts other LLMs answered (65 % of llama-2-7b-chat's rows) would set its thresholds.
    model = PromptClassifier(**recipe).fit(rows["prompt"].tolist(), y, sample_weight=rows["weight"].to_numpy(),
                                           validation_rows=own)
    return model, rows


def train_target(
    target: str, labelled: pd.DataFrame, output_root: Path, rc: ResponseClassifier,
    recipe_name: str = recipes.PROMPT_RECIPE_NAME, selection_rows: list[dict] | None = None,
    aux_weight: float = recipes.PROMPT_AUX_WEIGHT, recorded: bool = False,
) -> dict[str, Any] | None:
    """Fit and save one target with its card. ``selection_rows``: the CV table that chose the
    recipe, from this run (``--select``) or ``recorded`` from the shipped default's card."""
    model, rows = fit_target(labelled, target, recipe_name, aux_weight, threshold=rc.threshold)
    if model is None:
        return None
    y = refusal_y(rows)
    own = ~rows["auxiliary"].to_numpy()
    sources = (
        rows.assign(refused=y, source=np.where(own, rows["source"], "auxiliary:" + rows["source"])).groupby("source").agg(rows=("refused", "size"), refusal_rate=("refused", "mean"))
        .reset_index().to_dict("records")
    )
    card = {
        "target": target,
        "summary": f"Predicts whether {target} refuses a prompt; {int(own.sum())} of its prompts "
                   f"(+{int((~own).sum())} auxiliary prompts of other LLMs, weight {aux_weight}) with bootstrapped labels.",
        "recipe": recipe_name,
        "model_selection": selection_rows or [],
        "model_selection_protocol": selection_protocol(selection_rows or [], recorded),
        "training": {
            "rows": int(own.sum()), "refusal_rate": float(y[own].mean()), "sources": sources,
            "auxiliary_rows": int((~own).sum()), "auxiliary_weight": aux_weight,
            "auxiliary_sources": list(AUXILIARY_SOURCES) if aux_weight > 0 else [],
            "labels": f"bootstrapped by {'the shipped' if is_shipped(rc) else 'a'} ResponseClassifier "
                      f"(majority over duplicate prompts)",
            "response_model_sha256": rc.manifest_["files"]["model.joblib"],
            "response_temperature": getattr(rc, "temperature", 1.0),
            "excluded": "the paper's test split (256 prompts)",
        },
        "evaluation": {"cross_validation_vs_bootstrapped_labels": model.metadata.get("cross_validation", {})},
        "encoder": {"name": model.features_.encoder_name_, "sha256": model.features_.encoder_sha256_},
    }
    folder = output_root / target
    model.save(folder, metadata=card)  # the card is written with the model
    print(f"saved {folder}: {card['summary']} CV AUROC {card['evaluation']['cross_validation_vs_bootstrapped_labels'].get('auroc', float('nan')):.3f}")
    return card


def is_shipped(rc: ResponseClassifier) -> bool:
    """Whether ``rc`` is the shipped default response model (the card says which labelled the prompts)."""
    return rc.manifest_["files"]["model.joblib"] == _shipped_response_sha256()


@functools.lru_cache(maxsize=1)
def _shipped_response_sha256() -> str | None:
    try:
        return ResponseClassifier.load().manifest_["files"]["model.joblib"]
    except Exception:  # noqa: BLE001 - no shipped model: nothing is it
        return None


def selection_protocol(selection_rows: list[dict], recorded: bool = False) -> str:
    """What a card's model-selection table measured. The recipe is chosen once, on
    ``SELECTION_TARGET``'s labels, and serves every target: a gpt-4 card must not read as if its
    table were cross-validated on gpt-4's prompts."""
    n = selection_rows[0].get("n") if selection_rows else None
    prompts = f"{n} bootstrapped prompts" if n is not None else "bootstrapped prompts"
    text = (f"5-fold cross-validation on {SELECTION_TARGET}'s {prompts} (training data only), best accuracy; "
            f"the recipe chosen there serves every target")
    if recorded:
        text += "; recorded from the run that chose it (train_prompt --select), with the response model of that run"
    return text + "."


def recorded_selection(recipe_name: str = recipes.PROMPT_RECIPE_NAME) -> list[dict]:
    """The CV table that chose ``recipe_name``, from the shipped default's card (``--select`` ran there).

    A target trained later without ``--select`` keeps in its card why its recipe is the one it is;
    an empty list when the shipped default was chosen otherwise (its card then says nothing false).
    """
    try:
        card = PromptClassifier.load().metadata
    except Exception as e:  # noqa: BLE001 - no shipped default yet: nothing to carry forward
        logger.info("no recorded recipe selection (%s)", e)
        return []
    return list(card.get("model_selection", [])) if card.get("recipe") == recipe_name else []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder of the public data sets")
    parser.add_argument("--targets", nargs="+", default=list(DEFAULT_TARGETS),
                        help=f"LLMs to train a model for, each into OUTPUT_ROOT/TARGET (default: {' '.join(DEFAULT_TARGETS)})")
    parser.add_argument("-o", "--output-root", type=Path, default=REPO / "models" / "prompt",
                        help="folder of the targets' model folders (default: this checkout's models/prompt, "
                             "replacing the shipped models)")
    parser.add_argument("--response-model", type=Path,
                        help="response model folder that bootstraps the labels (default: the shipped one)")
    parser.add_argument("--select", action="store_true", help="choose the recipe by CV on gpt-3.5-turbo first")
    parser.add_argument("--aux-weight", type=float, default=recipes.PROMPT_AUX_WEIGHT,
                        help="sample weight of other LLMs' prompts from the auxiliary sources (0: target only)")
    parser.add_argument("--labels-cache", type=Path, help="Parquet file keeping the bootstrapped labels between runs")
    parser.add_argument("--labels-only", action="store_true",
                        help="write the bootstrapped labels to --labels-cache and stop, training nothing (what "
                             "training.finetune_encoder --labels fine-tunes the prompt encoder on)")
    args = parser.parse_args(argv)
    if args.labels_only and args.labels_cache is None:
        parser.error("--labels-only needs --labels-cache")
    if args.labels_only and args.select:
        parser.error("--labels-only trains nothing; --select chooses a recipe to train")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:  # bad target names, output folders, cache folder or response model: before any labelling
        args.targets = list(dict.fromkeys(canonical_target(t) for t in args.targets))
        if not args.labels_only:
            check_outputs(args.output_root, args.targets)
        check_writable_file("--labels-cache", args.labels_cache)
        rc = ResponseClassifier.load(args.response_model)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        labelled = bootstrapped_pool(args.data_dir, rc, args.labels_cache, args.targets)
    except (UnknownTargetError, LabelsCacheError) as exc:  # raised before the labelling starts
        parser.error(str(exc))
    if args.labels_only:
        print(f"bootstrapped labels of {len(labelled)} responses in {args.labels_cache}")
        return
    name, table = select_recipe(labelled, threshold=rc.threshold) if args.select else (recipes.PROMPT_RECIPE_NAME, recorded_selection())
    skipped = [target for target in args.targets
               if train_target(target, labelled, args.output_root, rc, name, table, args.aux_weight,
                               recorded=not args.select) is None]
    if skipped:  # asked for by name, so a run that saved none of them is not a success
        raise SystemExit(f"not trained (too few prompts, see above): {', '.join(skipped)}")

if __name__ == "__main__":
    main()
