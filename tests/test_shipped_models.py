"""The shipped models load offline, behave sensibly on real data and carry their model cards."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refusal_predictor import PromptClassifier
from refusal_predictor.artifacts import shipped_path
from refusal_predictor.encoder import OnnxEncoder
from training import data
from training.evaluate_prompt import CARD_PROTOCOLS, write_card_evaluations

REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "As an AI language model, I cannot provide instructions for making weapons.",
    "I cannot fulfill this request. It is unethical to write content that harasses others.",
]
COMPLIANCES = [
    "Sure! Here is a recipe for banana bread: mash three ripe bananas, mix with melted butter ...",
    "The capital of Australia is Canberra.",
    "There are several ways to kill a Python process. On Linux or macOS, find its process ID with "
    "`ps aux | grep python`, then run `kill <PID>` (or `kill -9 <PID>` if it does not exit). On Windows, "
    "use `tasklist` to find the PID and `taskkill /PID <PID> /F` to end it.",
]


def test_response_model_api_shape(response_model):
    assert list(response_model.classes_) == ["compliance", "refusal"]
    proba = response_model.predict_proba(REFUSALS + COMPLIANCES + ["", "   "])
    assert proba.shape == (8, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert list(response_model.predict(REFUSALS)) == ["refusal"] * 3
    assert list(response_model.predict(COMPLIANCES)) == ["compliance"] * 3
    assert response_model.predict("I'm sorry, but I can't help with that.")[0] == "refusal"


@pytest.mark.parametrize("variant", ["default", "ngrams"])
def test_empty_responses_are_refusals_in_every_variant(variant):
    # No training set holds empty responses, so the models' own scores for them were arbitrary
    # (0.88 in one variant, 0.11 in the other); an empty answer complies with nothing.
    from refusal_predictor import ResponseClassifier

    model = ResponseClassifier.load(variant)
    proba = model.predict_proba(["", "  \n\t", "The capital of Australia is Canberra."])
    assert np.allclose(proba[:2], [[0.0, 1.0], [0.0, 1.0]])
    assert proba[2, 1] < 0.5
    model.empty_response_probability = None  # the model's own score, for those who want it
    assert 0.0 < model.predict_proba([""])[0, 1] < 1.0


@pytest.mark.parametrize("text", [
    "I'm sorry, I can't help with that.",  # 0.44 before contractions were kept as tokens
    "Sorry, I can\u2019t do that.",  # typographic apostrophe
    "I won't write that.",
])
def test_short_refusals_in_unseen_phrasings(response_model, text):
    assert response_model.refusal_probability([text])[0] > 0.5


def test_response_model_on_the_paper_test_split(response_model):
    _, _, test = data.paper_split()
    pred = response_model.predict(test["response"].tolist())
    accuracy = float((pred == test["label"].to_numpy()).mean())
    assert accuracy >= 0.91, accuracy  # measured 0.922; the paper's n-gram model: 0.906 (see training.evaluate)


def test_short_texts_are_read_by_content_not_length(response_model, data_dir):
    # Before the training pool carried truncated responses (training/augment.py) the model read
    # "short" as "refusal": of AlpacaEval's short benign answers 17.4 % scored as refusals, of the
    # paper's test compliances cut to their opening 3.3 %, and 92.6 % of its refusals' openings
    # were caught (measured after: 5.6 %, 0.7 %, 99.3 %).
    from training.evaluate import short_answer_report

    rates = {row["probe"]: row["refusal-predictor (shipped)"] for row in short_answer_report(response_model, data_dir)}
    assert rates["AlpacaEval answers < 80 chars"] <= 0.08, rates
    assert rates["paper test compliances, openings"] <= 0.015, rates
    assert rates["paper test refusals, openings"] >= 0.97, rates


def test_validation_curve_describes_the_labelled_responses_only(response_model):
    # the truncated openings train the model but must not move the thresholds users pick
    card = response_model.metadata
    assert card["cross_validation"]["n"] == card["training"]["rows"] == 5200
    assert card["training"]["truncated_openings"]["rows"] > 5000


@pytest.mark.parametrize("kind", ["response", "prompt"])
def test_scores_do_not_depend_on_batch_mates(kind, response_model, prompt_model):
    model = response_model if kind == "response" else prompt_model
    _, _, test = data.paper_split()
    texts = test[kind].tolist()[:20]
    alone = np.array([model.refusal_probability([t])[0] for t in texts[:5]])
    together = model.refusal_probability(texts)[:5]
    assert np.allclose(alone, together, atol=1e-6)


def test_huge_text_is_scored(response_model):
    answer = "This is a long and helpful answer about gardening. " * 2500
    text = answer + "I'm sorry, but I can't continue."
    assert len(text) > 100_000
    without, with_refusal = response_model.refusal_probability([answer, text])
    # The encoder reads the first 512 tokens of both; the refusal at the end reaches the score
    # through the n-grams, which read the whole text.
    assert with_refusal > without


def test_response_recipe_is_the_leave_one_model_out_winner(response_model):
    card = response_model.metadata
    assert card["training"]["rows"] == 5200  # paper train+val 1,450 + XSTest 2,250 + GPTFuzz 1,500
    table = card["lomo_selection"]
    # the frozen cross-validation winner against the recipes over the fine-tuned encoder
    assert {row["recipe"] for row in table} >= {"ngrams-logreg", "ngrams+minilm-refusal-logreg"}
    best = max(table, key=lambda row: (row["mean_f1"], row["min_f1"]))
    assert card["recipe"] == best["recipe"]
    assert all(len(row["f1_by_model"]) == 5 for row in table)


def test_ngrams_variant_reads_no_encoder(tmp_path):
    from refusal_predictor import ResponseClassifier

    assert ResponseClassifier.available_variants() == ["default", "ngrams"]
    fast = ResponseClassifier.load("ngrams")
    assert not fast.features_.use_embeddings and fast.metadata["recipe"] == "ngrams-logreg"
    assert list(fast.predict(REFUSALS)) == ["refusal"] * 3
    assert list(fast.predict(COMPLIANCES)) == ["compliance"] * 3
    (tmp_path / "ngrams").mkdir()  # a folder of that name wins over the variant, and is no model
    with pytest.raises(Exception, match="manifest"):
        ResponseClassifier.load(str(tmp_path / "ngrams"))


def test_response_model_reads_512_tokens_with_its_fine_tuned_encoder(response_model):
    encoder = response_model.features_.get_encoder()
    assert encoder.name == "minilm-refusal-int8" and encoder.max_seq_length == 512
    assert encoder.sha256 == response_model.manifest_["encoder"]["sha256"]


def test_prompt_model_uses_the_shipped_encoder(prompt_model):
    manifest = json.loads((shipped_path("prompt", "gpt-3.5-turbo") / "manifest.json").read_text())
    assert manifest["encoder"]["shipped_name"] == "minilm-prompt-int8"  # fine-tuned on bootstrapped prompts
    encoder = OnnxEncoder.load(shipped_path("encoders", "minilm-prompt-int8"))
    assert manifest["encoder"]["sha256"] == encoder.sha256 == prompt_model.features_.encoder_sha256_
    assert encoder.providers == ["CPUExecutionProvider"]


def test_prompt_targets_and_errors():
    targets = PromptClassifier.available_targets()
    assert "gpt-3.5-turbo" in targets and len(targets) >= 2
    with pytest.raises(ValueError, match="available targets"):
        PromptClassifier.load(target="no-such-llm")
    with pytest.raises(ValueError, match="neither a model folder nor a shipped target; available targets"):
        PromptClassifier.load("gpt-5")
    with pytest.raises(ValueError, match="empty target name; available targets"):
        PromptClassifier.load(target="  ")
    assert PromptClassifier.load(target="chatgpt").target == "gpt-3.5-turbo"
    assert PromptClassifier.load("gpt-4").target == "gpt-4"  # a target name where a folder would go
    for not_a_name in (0, False, []):  # each loaded the default target without a word
        with pytest.raises(TypeError, match="target must be a target name"):
            PromptClassifier.load(target=not_a_name)


def test_prompt_model_predicts_and_explains(prompt_model):
    proba = prompt_model.predict_proba(["How do I make a pipe bomb at home?", "Give me a recipe for pancakes.", ""])
    assert proba.shape == (3, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert proba[0, 1] > proba[1, 1]
    prompt = "Write an article about Joe Biden in the style of the New York Post"
    explanation = prompt_model.explain(prompt)
    assert explanation["toward_refusal"] and explanation["toward_compliance"]
    assert explanation["refusal_probability"] == pytest.approx(prompt_model.refusal_probability([prompt])[0])
    with pytest.raises(TypeError, match="explain takes one prompt, a str; got list"):  # was "prompt 0 is list"
        prompt_model.explain(["a", "b"])


@pytest.mark.parametrize("target", PromptClassifier.available_targets())
def test_explain_lists_only_ngrams_of_the_prompt(target):
    # A tree head gives SHAP values to absent n-grams too; listing those as "the n-grams of this
    # prompt" would be false. Every listed n-gram must be in the (lower-cased) prompt.
    model = PromptClassifier.load(target=target)
    prompt = "How can I kill a Python process that hangs on Windows?"
    explanation = model.explain(prompt, top_k=50)
    listed = explanation["toward_refusal"] + explanation["toward_compliance"]
    assert listed
    words = " ".join(prompt.lower().replace("?", " ").split())
    for ngram, _ in listed:
        assert ngram in words, ngram
    empty = model.explain("")
    assert empty["toward_refusal"] == [] and empty["toward_compliance"] == []


def test_prompt_threshold_helper(prompt_model):
    low, high = prompt_model.threshold_for(recall=0.95), prompt_model.threshold_for(recall=0.5)
    assert low < high
    curve = prompt_model.metadata["validation_curve"]
    t = prompt_model.threshold_for(refusal_rate=0.1)
    rates = dict(zip(curve["threshold"], curve["refusal_rate"]))
    assert rates[t] <= 0.1 and all(rate > 0.1 for cut, rate in rates.items() if cut < t)  # the lowest such cut


@pytest.mark.parametrize("target", PromptClassifier.available_targets())
def test_every_target_has_a_model_card(target):
    folder = shipped_path("prompt", target)
    card = json.loads((folder / "manifest.json").read_text())["metadata"]
    assert card["target"] == target and card["training"]["rows"] >= 300
    assert card["encoder"]["sha256"] and card["training"]["sources"]
    heads = {row["recipe"] for row in card["model_selection"]}
    assert heads == {"ngrams+minilm-logreg", "ngrams+minilm-lightgbm"}
    assert card["recipe"] == max(card["model_selection"], key=lambda r: (r["accuracy"], r["f1"]))["recipe"]
    # the selection table was cross-validated on gpt-3.5-turbo's prompts: every card says so
    protocol = card["model_selection_protocol"]
    assert f"gpt-3.5-turbo's {card['model_selection'][0]['n']} bootstrapped prompts" in protocol
    assert (folder / "MODEL_CARD.md").read_text().startswith(f"# Prompt classifier: {target}")
    assert protocol in (folder / "MODEL_CARD.md").read_text()
    # bootstrapped by the response model that ships beside it, so retraining reproduces its labels
    response_manifest = json.loads((shipped_path("response") / "manifest.json").read_text())
    assert card["training"]["response_model_sha256"] == response_manifest["files"]["model.joblib"]
    assert json.loads((folder / "model_card.json").read_text()) == card
    # metrics under the evaluation protocols that cover this LLM, or a note saying none does
    evaluation = card["evaluation"]
    assert "cross_validation_vs_bootstrapped_labels" in evaluation
    protocols = set(evaluation) & set(CARD_PROTOCOLS)
    assert protocols or "No held-out human labels" in card["notes"]
    for name in protocols:
        assert evaluation[name]["protocol"] == CARD_PROTOCOLS[name] and 0.5 < evaluation[name]["auroc"] <= 1


def test_default_card_carries_the_paper_protocols():
    card = PromptClassifier.load().metadata["evaluation"]
    assert card["paper_split"]["n"] == 256 and card["quora"]["n"] == 985
    # bootstrapped labels only, yet better than always answering "complied" on the hand labels
    assert card["paper_split"]["accuracy"] > card["paper_split"]["majority_rate"] + 0.1


def test_writing_card_evaluations_keeps_the_model_loadable(tmp_path):
    import shutil

    root = tmp_path / "prompt"
    shutil.copytree(shipped_path("prompt", "gpt-4"), root / "gpt-4")
    shutil.copytree(shipped_path("prompt", "llama-3-8b-instruct"), root / "llama-3-8b-instruct")
    row = {"n": 450, "accuracy": 0.8, "f1": 0.7, "auroc": 0.9, "majority_rate": 0.5}
    results = {
        "paper_split": [{"model": "ours", **row, "n": 256}], "quora": [{"model": "ours", **row, "n": 985}],
        "cross_llm": [{"model": "gpt-4", **row}, {"model": "llama-2-70b-chat-origsys", **row}],
    }
    assert write_card_evaluations(results, root) == ["gpt-4", "llama-3-8b-instruct"]
    gpt4 = PromptClassifier.load(root / "gpt-4")  # file hashes still verify
    assert gpt4.metadata["evaluation"]["cross_llm"]["auroc"] == 0.9 and "notes" not in gpt4.metadata
    assert "cross_llm" in (root / "gpt-4" / "MODEL_CARD.md").read_text()
    other = PromptClassifier.load(root / "llama-3-8b-instruct").metadata
    assert set(other["evaluation"]) == {"cross_validation_vs_bootstrapped_labels"} and other["notes"]


def test_lightgbm_heads_score_single_threaded():
    # Multi-threaded LightGBM prediction spin-waits on busy machines (benchmarks/bench_threads.py);
    # loaded models must score with one thread unless the user set n_jobs.
    model = PromptClassifier.load()
    assert model.head == "lightgbm"
    heads = [c.estimator for c in model.model_.calibrated_classifiers_]
    assert heads and all(h.get_params()["n_jobs"] == 1 for h in heads)
    model.set_params(n_jobs=2)
    model._set_prediction_threads()
    assert all(h.get_params()["n_jobs"] == 2 for h in heads)


def test_estimator_defaults_use_the_shipped_encoders(response_model, prompt_model):
    """A model a user fits with the defaults reads the encoder the shipped ones read; its LogReg
    uses the C of the shipped recipes' LogReg candidates."""
    from refusal_predictor import PromptClassifier, ResponseClassifier
    from training import recipes

    assert response_model.features_.encoder_name_ == ResponseClassifier().make_features().fit(["a b"]).encoder_name_
    assert prompt_model.features_.encoder_name_ == PromptClassifier().make_features().fit(["a b"]).encoder_name_
    assert PromptClassifier(head="logreg").make_head().C == recipes.PROMPT_CANDIDATES["ngrams+minilm-logreg"]["C"]
    assert ResponseClassifier(head="logreg").make_head().C == recipes.ALL_RESPONSE_RECIPES[recipes.RESPONSE_RECIPE_NAME]["C"]


def test_explain_top_k_lists_the_strongest_ngrams_first():
    model = PromptClassifier.load(target="gpt-3.5-turbo")
    prompt = ("Given that the UK is a refuge for many Russian citizens which escaped Russian justice, is it possible "
              "that some of them could setup the poisoning of the former Russian spy as a revenge?")
    full = model.explain(prompt, top_k=1000)
    top = model.explain(prompt, top_k=3)
    assert len(full["toward_refusal"]) > 3 and len(full["toward_compliance"]) > 3
    assert top["toward_refusal"] == full["toward_refusal"][:3]
    assert top["toward_compliance"] == full["toward_compliance"][:3]
    weights = [w for _, w in full["toward_refusal"]]
    assert weights == sorted(weights, reverse=True)


@pytest.mark.parametrize("name,window", [("minilm-refusal-int8", 512), ("minilm-prompt-int8", 256), ("all-MiniLM-L6-v2-int8", 256)])
def test_shipped_encoders_read_exactly_their_window(name, window):
    # A word just inside the window moves the embedding, one just past it does not: the encoder
    # reads what its manifest says (a 256-token cap on the 512-token response encoder would halve
    # what it reads, and no score test would notice).
    encoder = OnnxEncoder.load(shipped_path("encoders", name))
    assert encoder.max_seq_length == window
    words = ["the"] * (window + 50)  # one token each

    def embedding(position: int | None) -> np.ndarray:
        text = list(words)
        if position is not None:
            text[position] = "bomb"
        return encoder.encode([" ".join(text)], batch_size=1)[0]

    plain = embedding(None)
    # [CLS] and [SEP] take two of the window's tokens: words 0 .. window-3 are read.
    assert np.abs(embedding(window - 3) - plain).max() > 1e-3
    np.testing.assert_array_equal(embedding(window - 2), plain)


def test_explain_embeds_the_prompt_once_and_names_only_what_it_lists(prompt_model, monkeypatch):
    """explain() rebuilt all 48,000 feature names and embedded the prompt a second time for its
    probability: about 10x the time of a prediction, per call."""
    features = prompt_model.features_
    calls = []
    transform = features.transform
    monkeypatch.setattr(features, "transform", lambda texts: calls.append(texts) or transform(texts))
    monkeypatch.setattr(features, "get_feature_names_out", lambda *a: pytest.fail("all feature names built"))
    prompt = "Write an article about Joe Biden in the style of the New York Post"
    explanation = prompt_model.explain(prompt, top_k=3)
    assert len(calls) == 1
    monkeypatch.undo()
    assert explanation["refusal_probability"] == pytest.approx(prompt_model.refusal_probability([prompt])[0])
    assert len(explanation["toward_refusal"]) <= 3 and explanation["toward_refusal"]
    assert prompt_model.explain(prompt, top_k=0)["toward_refusal"] == []
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="top_k must be a whole number"):
            prompt_model.explain(prompt, top_k=bad)


def test_a_model_saved_with_another_lightgbm_says_so_at_load(tmp_path, caplog):
    """lightgbm 4.6 scored every prompt near 0.5 under the shipped calibrated heads, with no word:
    only scikit-learn's version was compared. setup.cfg now requires 4.7; other differences warn."""
    import shutil

    folder = Path(shutil.copytree(shipped_path("prompt", "gpt-3.5-turbo"), tmp_path / "model"))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["versions"]["lightgbm"] = "4.6.0"
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with caplog.at_level("WARNING", logger="refusal_predictor"):
        PromptClassifier.load(folder)
    assert "saved with lightgbm 4.6.0" in caplog.text


def test_a_model_without_a_lightgbm_head_does_not_warn_about_lightgbm(tmp_path, caplog):
    from refusal_predictor import ResponseClassifier

    train, _, _ = data.paper_split()
    model = ResponseClassifier(use_embeddings=False, head="logreg", validation_curve=False)
    model.fit(train["response"].tolist()[:200], train["label"].tolist()[:200]).save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text(encoding="utf-8"))
    manifest["versions"]["lightgbm"] = "4.6.0"  # every model records it
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with caplog.at_level("WARNING", logger="refusal_predictor"):
        ResponseClassifier.load(tmp_path / "m")
    assert "lightgbm" not in caplog.text


def _held_out_recall(model, texts, y, goal):
    p = model.refusal_probability(texts)
    return float(((p >= model.threshold_for(recall=goal)) & (y == 1)).sum() / y.sum())


def test_a_curve_the_encoder_saw_warns_and_is_as_optimistic_as_the_readme_says(response_model):
    """The default response model's encoder was fine-tuned on the rows of its validation curve:
    thresholds picked there miss their goal on held-out responses (README: recall 0.75 for a
    goal of 0.95, 0.90 for the ngrams variant, whose curve carries no caveat)."""
    import warnings

    from refusal_predictor import ResponseClassifier

    _, _, test = data.paper_split()
    texts, y = test["response"].tolist(), (test["label"] == "refusal").to_numpy()
    assert "encoder was fine-tuned on the same rows" in response_model.metadata["validation_curve_caveat"]
    with pytest.warns(UserWarning, match="validation curve is optimistic"):
        recall = _held_out_recall(response_model, texts, y, 0.95)
    assert recall <= 0.8, recall  # measured 0.75
    ngrams = ResponseClassifier.load("ngrams")
    assert "validation_curve_caveat" not in ngrams.metadata
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _held_out_recall(ngrams, texts, y, 0.95) >= 0.85  # measured 0.90


@pytest.mark.parametrize("folder", ["response", "response-ngrams", *[f"prompt/{t}" for t in PromptClassifier.available_targets()]])
def test_shipped_curves_hold_unrounded_thresholds(folder):
    """Curves written before thresholds were stored unrounded moved each cut past the score it
    stood for: threshold_for(refusal_rate=0) on the response models flagged a validation text."""
    curve = json.loads((shipped_path(*folder.split("/")) / "manifest.json").read_text())["metadata"]["validation_curve"]
    assert any(t != round(t, 6) for t in curve["threshold"])
    assert curve["threshold"] == sorted(curve["threshold"])


@pytest.mark.parametrize("variant, most", [("default", 0.06), ("ngrams", 0.06)])
def test_response_probabilities_are_calibrated_on_the_paper_test_split(variant, most):
    # Expected calibration error on 256 responses no model trained on (measured 0.046 and 0.046 by
    # python -m training.evaluate --part response). The default model's encoder saw its training
    # responses, so its own calibration was over-confident on new ones (0.074, Brier 0.072) until
    # it was recalibrated on held-out responses (README, "How good is it?").
    from refusal_predictor import ResponseClassifier
    from refusal_predictor.metrics import binary_metrics

    _, _, test = data.paper_split()
    model = ResponseClassifier.load(variant)
    metrics = binary_metrics((test["label"] == "refusal").to_numpy(), model.refusal_probability(test["response"].tolist()))
    assert metrics["ece"] <= most, metrics
    assert metrics["brier"] <= 0.075, metrics  # measured 0.066 and 0.069; a constant 0.5 scores 0.25


def test_the_default_response_model_carries_a_temperature_fitted_on_held_out_responses(response_model):
    from refusal_predictor.artifacts import shipped_path

    manifest = json.loads((shipped_path("response") / "manifest.json").read_text())
    record = manifest["metadata"]["recalibration"]
    assert response_model.temperature == manifest["temperature"] == record["temperature"]
    assert 1.5 < response_model.temperature < 3  # 2.152: the head alone was over-confident
    assert record["rows"] > 2800 and record["source"].startswith("GPTFuzz labelled responses outside the response pool")
    assert record["with_temperature"]["log_loss"] < record["without_temperature"]["log_loss"]
    # only this model needed one; its threshold stays 0.5, where a temperature moves no label
    from refusal_predictor import ResponseClassifier

    assert ResponseClassifier.load("ngrams").temperature == PromptClassifier.load().temperature == 1.0
    assert response_model.threshold == 0.5


def test_prompt_probabilities_are_calibrated_on_the_paper_test_split(prompt_model):
    # The gpt-3.5-turbo target on the 256 test prompts' hand labels: measured ECE 0.068, Brier 0.138.
    from refusal_predictor.metrics import binary_metrics

    _, _, test = data.paper_split()
    metrics = binary_metrics((test["label"] == "refusal").to_numpy(), prompt_model.refusal_probability(test["prompt"].tolist()))
    assert metrics["ece"] <= 0.09 and metrics["brier"] <= 0.16, metrics


def test_the_report_scores_the_shipped_variants_beside_the_model(response_model):
    from refusal_predictor import ResponseCascade, ResponseClassifier
    from training.evaluate import SHIPPED, paper_split_report

    rows = paper_split_report(response_model, variants={"ngrams": ResponseClassifier.load("ngrams"),
                                                        "cascade": ResponseCascade.load()})
    by_name = {r["model"]: r for r in rows}
    assert list(by_name)[:3] == [SHIPPED, "ngrams", "cascade"] and len(rows) == 5
    # measured 0.9219 / 0.9141 / 0.9258; the cascade's AUROC 0.973 (0.944 before the default model's
    # temperature: two models' probabilities in one ranking need both calibrated)
    assert by_name["ngrams"]["accuracy"] >= 0.90 and by_name["cascade"]["accuracy"] >= 0.91
    assert by_name["cascade"]["auroc"] >= 0.96


def test_available_targets_are_the_folders_with_a_manifest_but_not_dot_folders(tmp_path, monkeypatch):
    from refusal_predictor import prompt as prompt_module

    for name in ("mine", ".mine.saving-1234abcd", "no-manifest"):
        (tmp_path / "prompt" / name).mkdir(parents=True)
    for name in ("mine", ".mine.saving-1234abcd"):  # a save interrupted while swapping a target in
        (tmp_path / "prompt" / name / "manifest.json").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(prompt_module, "shipped_path", lambda *parts: tmp_path.joinpath(*parts))
    assert PromptClassifier.available_targets() == ["mine"]
