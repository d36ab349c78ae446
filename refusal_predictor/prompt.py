"""PromptClassifier: will a given LLM refuse this prompt? Decided before any text is generated.

One model per *target* LLM, because LLMs refuse different things. Shipped targets live in
``models/prompt/<target>/``; :func:`refusal_predictor.prompt_training.train_prompt_model` (the
``train-prompt`` command) builds one for your own LLM from its logs, with labels bootstrapped by the
:class:`~refusal_predictor.ResponseClassifier`.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .artifacts import ModelFileError, PathLike, shipped_name_key, shipped_path, write_json
from .calibration import temper
from .classifiers import RefusalClassifier
from .inputs import as_texts
from .heads import contributions, leaf_heads

logger = logging.getLogger(__name__)

DEFAULT_TARGET = "gpt-3.5-turbo"
TARGET_ALIASES = {"chatgpt": "gpt-3.5-turbo", "gpt-3.5": "gpt-3.5-turbo", "gpt4": "gpt-4"}


def _target_key(name: str) -> str:
    key = shipped_name_key(name)
    return TARGET_ALIASES.get(key, key)


class PromptClassifier(RefusalClassifier):
    """Predicts from the prompt alone whether the target LLM will refuse it.

    >>> pc = PromptClassifier.load()                 # ChatGPT (gpt-3.5-turbo)
    >>> pc.predict_proba(["How do I pick a lock?"])  # (n, 2): compliance, refusal
    """

    kind = "prompt"
    default_subdir = ("prompt", DEFAULT_TARGET)
    default_encoder = "minilm-prompt-int8"  # MiniLM fine-tuned on bootstrapped prompts (training/recipes.py)
    default_C = 1.0

    @staticmethod
    def available_targets() -> list[str]:
        """Names of the shipped target LLMs (folders of ``models/prompt``)."""
        root = shipped_path("prompt")
        if not root.is_dir():
            return []
        # Not dot-folders: a save interrupted while swapping a target in leaves one with a manifest.
        return sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and (p / "manifest.json").is_file())

    @classmethod
    def load(cls, path: PathLike | None = None, *, target: str | None = None, verify: bool = True) -> "PromptClassifier":
        """Load a model folder, or a shipped target by name (default: gpt-3.5-turbo).

        ``load("gpt-4")`` works too: a ``path`` that is not an existing folder but names a shipped
        target loads that target (a folder of the same name wins).
        """
        if path is not None and target is not None:
            raise ValueError("give a model folder or a target name, not both")
        if path is not None and not Path(path).is_dir():
            if _target_key(str(path)) in cls.available_targets():
                path, target = None, str(path)
            else:
                raise ValueError(f"{str(path)!r} is neither a model folder nor a shipped target; "
                                 f"available targets: {cls.available_targets()}")
        elif path is not None and _target_key(str(path)) in cls.available_targets() \
                and not (Path(path) / "manifest.json").is_file():
            # A folder of outputs named like a target would otherwise hide it behind "manifest missing".
            raise ModelFileError(f"{Path(path) / 'manifest.json'}: manifest missing; the folder {str(path)!r} is "
                                 f"taken before the shipped target of that name, which loads with "
                                 f"PromptClassifier.load(target={_target_key(str(path))!r})")
        if path is not None and not str(path).strip():
            raise ValueError(f"empty model path; available targets: {cls.available_targets()}")
        if path is None:
            if target is not None and not str(target).strip():
                raise ValueError(f"empty target name; available targets: {cls.available_targets()}")
            if target is not None and not isinstance(target, str):  # 0 or False loaded the default
                raise TypeError(f"target must be a target name (a str), got {target!r}; available targets: "
                                f"{cls.available_targets()}")
            name = _target_key(DEFAULT_TARGET if target is None else target)
            available = cls.available_targets()
            if name not in available:
                raise ValueError(f"unknown target {target!r}; available targets: {available}")
            path = shipped_path("prompt", name)
        return super().load(path, verify=verify)

    @property
    def target(self) -> str | None:
        return self.metadata.get("target")

    def explain(self, prompt: str, top_k: int = 10) -> dict[str, Any]:
        """The n-grams of ``prompt`` that push the prediction toward refusal and toward compliance.

        Only n-grams that occur in the prompt are listed. Contributions are in the head's log-odds
        units (before calibration): for logistic regression, n-gram weight x TF-IDF value; for
        LightGBM, per-feature SHAP values; for the blend, the mean of the two. A tree head also
        learns from n-grams being *absent*; that share is reported as one number
        (``absent_ngrams_contribution``), as is the embedding block's (``embedding_contribution``),
        since its 384 dimensions have no words attached.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
            raise ValueError(f"top_k must be a whole number of at least 0, got {top_k!r}")
        if not isinstance(prompt, str):  # a list given here was reported as "prompt 0 is list"
            raise TypeError(f"explain takes one prompt, a str; got {type(prompt).__name__} (for many prompts, "
                            "call it once per prompt)")
        (text,) = as_texts([prompt], what="prompt")
        check_is_fitted(self, "model_")
        matrix = self.features_.transform([text]).tocsr()
        contrib, bias = contributions(self._fitted_head(), matrix)
        n_ngrams = len(self.features_.vectorizer_.vocabulary_) if self.features_.use_ngrams else 0
        present = np.zeros(n_ngrams, dtype=bool)
        present[matrix[:, :n_ngrams].nonzero()[1]] = True
        ngram_part = contrib[:n_ngrams]
        idx = np.flatnonzero(present)
        order = idx[np.argsort(ngram_part[idx])]
        top_refusal = [i for i in order[::-1][:top_k] if ngram_part[i] > 0]
        top_compliance = [i for i in order[:top_k] if ngram_part[i] < 0]
        chosen = top_refusal + top_compliance
        names = dict(zip(chosen, self.features_.ngram_names(chosen))) if chosen else {}
        return {
            "prompt": text,
            # From the matrix built above: predict_proba would transform (and embed) the text again.
            "refusal_probability": float(temper(self.model_.predict_proba(matrix)[0, 1], self.temperature)),
            "toward_refusal": [(str(names[i]), float(ngram_part[i])) for i in top_refusal],
            "toward_compliance": [(str(names[i]), float(ngram_part[i])) for i in top_compliance],
            "absent_ngrams_contribution": float(ngram_part[~present].sum()),
            "embedding_contribution": float(contrib[n_ngrams:].sum()),
            "bias": bias,
        }

    def top_ngrams(self, k: int = 20) -> dict[str, list[tuple[str, float]]]:
        """The globally strongest n-grams: ``refusal`` / ``compliance`` hold logistic-regression
        weights, ``importance`` LightGBM gains (no direction); a blend has both.

        A weight is what one unit of the n-gram's TF-IDF adds to the model's log-odds before
        calibration, as :meth:`explain` counts it: a blend averages its heads' log-odds, so its
        logistic half's weights are divided by the number of heads.
        """
        check_is_fitted(self, "model_")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if not self.features_.use_ngrams:
            raise ValueError("this model has no n-gram features (use_ngrams=False): it has no n-grams to rank")
        n_ngrams = len(self.features_.vectorizer_.vocabulary_)
        names = self.features_.get_feature_names_out()[:n_ngrams]
        top: dict[str, list[tuple[str, float]]] = {}
        heads = leaf_heads(self._fitted_head())
        for head in heads:  # a blend reports both of its heads
            if hasattr(head, "coef_"):
                weights = head.coef_[0][:n_ngrams] / len(heads)
                order = np.argsort(weights)
                top["refusal"] = [(str(names[i]), float(weights[i])) for i in order[::-1][:k]]
                top["compliance"] = [(str(names[i]), float(weights[i])) for i in order[:k]]
            else:
                gains = head.booster_.feature_importance(importance_type="gain")[:n_ngrams]
                order = np.argsort(gains)[::-1][:k]
                top["importance"] = [(str(names[i]), float(gains[i])) for i in order]
        return top

    def _fitted_head(self):
        model = self.model_
        if hasattr(model, "calibrated_classifiers_"):
            return model.calibrated_classifiers_[0].estimator
        return model

    def _write_card(self, staging: Path, metadata: dict[str, Any], folder: Path) -> None:
        """A card describes the model beside it. It is rewritten from ``metadata`` when that is a
        card (it names a target). A card carried over from ``folder`` is kept only when this is the
        model loaded from (or last saved to) that folder, not fitted since: a loaded model saved
        back, say with a new threshold, is still the model its card describes. Otherwise the card
        would describe the model this save replaces, and it is dropped."""
        if metadata.get("target"):
            write_model_card(staging, metadata, where=folder)
            return
        if not self._fitted_since_load() and self._folder_of_record() == folder.resolve():
            return
        stale = [name for name in CARD_FILES if (staging / name).is_file()]
        for name in stale:
            (staging / name).unlink()
        if stale:
            logger.warning("%s: dropped %s: it described the model this save replaces, and this model has no "
                           "card (save(path, metadata=card) writes one)", folder, ", ".join(stale))


def model_card_markdown(card: dict[str, Any], where: PathLike | None = None) -> str:
    """Render a model card (the manifest's metadata) as Markdown for humans.

    A section whose field has a shape this renderer does not know (a user's own metadata) says
    so and points at ``model_card.json``, which holds every field as given; the rest renders.
    """
    lines = [f"# Prompt classifier: {card.get('target', '?')}", ""]
    if card.get("summary"):
        lines += [str(card["summary"]), ""]
    recalibration = card.get("recalibration")
    if isinstance(recalibration, dict) and isinstance(recalibration.get("temperature"), (int, float)):
        source = f" ({recalibration['source']})" if recalibration.get("source") else ""
        lines += [f"Probabilities recalibrated: temperature {recalibration['temperature']:.4f}, fitted on "
                  f"{recalibration.get('rows', '?')} labelled texts{source} (`recalibrate`).", ""]
    for key, title, render in (("training", "Training data", _training_markdown),
                               ("evaluation", "Evaluation", _evaluation_markdown),
                               ("model_selection", "Model selection", _selection_markdown),
                               ("encoder", "Encoder", _encoder_markdown)):
        if not card.get(key):
            continue
        try:
            lines += [f"## {title}", "", *render(card)]
        except Exception as exc:  # noqa: BLE001 - any field shape: the card must not fail a save
            logger.warning("%smodel card field %r could not be rendered as Markdown (%s: %s); it is in "
                           "model_card.json", f"{where}: " if where else "", key, type(exc).__name__, exc)
            lines += [f"## {title}", "", f"The card's `{key}` field could not be rendered here "
                      f"({type(exc).__name__}: {exc}); it is in `model_card.json`.", ""]
    if card.get("notes"):
        lines += ["## Notes", "", str(card["notes"]), ""]
    return "\n".join(lines)


def _training_markdown(card: dict[str, Any]) -> list[str]:
    training = card["training"]
    # One training row per prompt (duplicates merged), so the column says "prompts": a log's
    # rows are counted under "Bootstrap" below.
    lines = ["| source | prompts | refusal rate |", "|---|---|---|"]
    for src in training.get("sources", []):
        lines.append(f"| {src['source']} | {src['rows']} | {src['refusal_rate']:.3f} |")
    lines += ["", f"Total: {training.get('rows')} prompts, refusal rate {training.get('refusal_rate', float('nan')):.3f}.", ""]
    fitted = [f"head {card['head']}"] if card.get("head") else []
    if training.get("sample_weight"):
        fitted.append(f"sample weight: {training['sample_weight']}")
    if fitted:
        lines += [f"Trained with {'; '.join(fitted)}.", ""]
    if training.get("bootstrap"):
        lines += [_bootstrap_markdown(training["bootstrap"]), ""]
    return lines


def _evaluation_markdown(card: dict[str, Any]) -> list[str]:
    evaluation = card["evaluation"]
    lines = ["| protocol | n | accuracy | F1 | AUROC | majority rate | Brier | ECE |", "|---|---|---|---|---|---|---|---|"]
    for name, m in evaluation.items():
        # Brier and ECE (calibration) are blank in cards written before binary_metrics reported them.
        calibration = " | ".join(_figure(m.get(k), "") for k in ("brier", "ece"))
        lines.append(
            f"| {name} | {m.get('n')} | {_figure(m.get('accuracy'))} | {_figure(m.get('f1'))} | "
            f"{_figure(m.get('auroc'))} | {_figure(m.get('majority_rate'))} | {calibration} |"
        )
    lines.append("")
    lines += [f"- {name}: {m['protocol']}" for name, m in evaluation.items() if m.get("protocol")]
    lines.append("")
    return lines


def _selection_markdown(card: dict[str, Any]) -> list[str]:
    lines = [f"Chosen: {card.get('recipe', '?')}. "
             + card.get("model_selection_protocol", "Cross-validated on training data only."), "",
             "| recipe | accuracy | F1 | AUROC |", "|---|---|---|---|"]
    lines += [f"| {r.get('recipe')} | {_figure(r.get('accuracy'))} | {_figure(r.get('f1'))} | {_figure(r.get('auroc'))} |"
              for r in card["model_selection"]]
    lines.append("")
    return lines


def _figure(value: Any, missing: str = "n/a") -> str:
    """A metric to four places; ``missing`` for one the card lacks, or one undefined (an AUROC of
    one class: NaN when computed, ``null`` once the card is written as strict JSON)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.4f}"
    return missing


def _encoder_markdown(card: dict[str, Any]) -> list[str]:
    enc = card["encoder"]
    return [f"{enc.get('name')} (sha256 {enc.get('sha256')})", ""]


def _bootstrap_markdown(b: dict[str, Any]) -> str:
    """How a log's rows became the training prompts (``train-prompt``'s card), in one paragraph."""
    read = f"{b.get('read')} rows"
    unreadable = f", {b['unreadable_lines']} of them unreadable" if b.get("unreadable_lines") else ""
    if b.get("model_filter") is not None:
        read += f" with model {b['model_filter']!r} (of {b.get('rows_in_log')} in the log{unreadable})"
    elif unreadable:
        read += f" (of {b.get('rows_in_log')} lines in the log{unreadable})"
    cut = (f"{b.get('dropped_low_confidence')} dropped below --min-confidence {b['min_confidence']}"
           if b.get("min_confidence") is not None else "none dropped (no --min-confidence)")
    answered = ", ".join(f"{name} {n}" for name, n in (b.get("answered_by") or {}).items())
    sha = str(b.get("response_model_sha256") or "?")[:12]
    cascade = b.get("response_cascade") if isinstance(b.get("response_cascade"), dict) else None
    labels_by = (f"the response model {b.get('response_model')} (a cascade: the model with sha256 "
                 f"{str(cascade.get('fast_model_sha256') or '?')[:12]}... first, then the one with sha256 {sha}... "
                 f"where the first scored strictly between {cascade.get('low')} and {cascade.get('high')})"
                 if cascade is not None else f"the response model {b.get('response_model')} (sha256 {sha}...)")
    return (
        f"Bootstrap: read {read}; {b.get('labelled')} labelled, {b.get('skipped_bad_rows')} skipped as "
        f"unusable, {cut}; {b.get('merged_duplicate_rows')} duplicate "
        f"rows merged into their prompts ({b.get('conflicting_prompts')} prompts with conflicting labels, "
        f"majority kept). Answered by: {answered or '?'}. Labels by {labels_by} "
        f"at threshold {b.get('response_threshold')}."
    )


CARD_FILES = ("model_card.json", "MODEL_CARD.md")


def write_model_card(folder: PathLike, card: dict[str, Any], where: PathLike | None = None) -> None:
    """The model card twice: ``model_card.json`` for tools, ``MODEL_CARD.md`` for people.

    The same dictionary is the ``metadata`` of the folder's manifest, which load() reads.
    """
    write_json(Path(folder, "model_card.json"), card)
    Path(folder, "MODEL_CARD.md").write_text(model_card_markdown(card, where or folder), encoding="utf-8")
