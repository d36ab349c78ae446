"""The training scripts refuse bad arguments before their long work, and write where they are told."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from refusal_predictor import ResponseClassifier
from refusal_predictor.artifacts import shipped_path


def _not_reached(*args, **kwargs):
    raise AssertionError("the long work started before the arguments were checked")


def test_train_prompt_refuses_an_unknown_target_before_labelling(data_dir, tmp_path, monkeypatch, capsys):
    from training import train_prompt

    monkeypatch.setattr(train_prompt, "bootstrap", _not_reached)
    with pytest.raises(SystemExit) as exit_:
        train_prompt.main(["--data-dir", str(data_dir), "--targets", "gpt-4", "gpt-3.5-turbbo", "-o", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no logs of target(s) 'gpt-3.5-turbbo'" in err and "gpt-3.5-turbo (" in err
    assert not any(tmp_path.iterdir())


def test_train_prompt_refuses_a_foreign_output_folder_before_reading_the_logs(tmp_path, monkeypatch, capsys):
    from training import train_prompt

    monkeypatch.setattr(train_prompt, "prompt_pool", _not_reached)
    (tmp_path / "gpt-4").mkdir()
    (tmp_path / "gpt-4" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        train_prompt.main(["--data-dir", str(tmp_path), "--targets", "gpt-4", "-o", str(tmp_path)])
    assert exit_.value.code == 2
    assert "gpt-4 is a non-empty folder that is not a refusal-predictor model folder" in capsys.readouterr().err
    assert (tmp_path / "gpt-4" / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_train_prompt_bootstraps_with_the_response_model_it_is_given(tmp_path, monkeypatch):
    from training import train_prompt

    used = []

    def stop(data_dir, rc, cache=None, targets=()):
        used.append((rc, targets))
        raise KeyboardInterrupt

    monkeypatch.setattr(train_prompt, "bootstrapped_pool", stop)
    ngrams = shipped_path("response-ngrams")
    with pytest.raises(KeyboardInterrupt):
        train_prompt.main(["--data-dir", str(tmp_path), "--targets", "GPT4", "chatgpt", "gpt-4", "-o", str(tmp_path / "out"),
                           "--response-model", str(ngrams)])
    rc, targets = used[0]
    assert targets == ["gpt-4", "gpt-3.5-turbo"]  # named as the logs and PromptClassifier.load name them
    assert rc.manifest_["files"]["model.joblib"] == ResponseClassifier.load(ngrams).manifest_["files"]["model.joblib"]
    assert not train_prompt.is_shipped(rc) and train_prompt.is_shipped(ResponseClassifier.load())


def test_train_response_refuses_a_foreign_output_folder_before_training(tmp_path, monkeypatch, capsys):
    from training import train_response

    monkeypatch.setattr(train_response, "train", _not_reached)
    (tmp_path / "keep.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        train_response.main(["--data-dir", str(tmp_path), "-o", str(tmp_path)])
    assert exit_.value.code == 2
    assert "is a non-empty folder that is not a refusal-predictor model folder" in capsys.readouterr().err
    prompt_model = shutil.copytree(shipped_path("prompt", "gpt-4"), tmp_path / "prompt")
    with pytest.raises(SystemExit):
        train_response.main(["--data-dir", str(tmp_path), "-o", str(prompt_model)])
    assert "holds a 'prompt' model" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_evaluate_refuses_an_output_in_a_missing_folder_up_front(tmp_path, monkeypatch, capsys, option):
    from training import evaluate

    monkeypatch.setattr(evaluate, "response_report", _not_reached)
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--data-dir", str(tmp_path), option, str(tmp_path / "missing" / "out")])
    assert exit_.value.code == 2
    assert f"{option} {tmp_path / 'missing' / 'out'}: folder {tmp_path / 'missing'} does not exist" in capsys.readouterr().err


def test_evaluate_checks_matplotlib_up_front_and_draws_the_chart_after_saving_the_numbers(tmp_path, monkeypatch, capsys):
    """The chart was drawn inside the prompt report, before --json and --write-cards: without
    matplotlib, an hour's run ended in ModuleNotFoundError and kept nothing."""
    import importlib.util

    from training import evaluate, evaluate_prompt

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a))
    monkeypatch.setattr(evaluate, "response_report", _not_reached)
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--data-dir", str(tmp_path), "--part", "prompt"])
    assert exit_.value.code == 2
    assert "--plot: the n-gram chart needs matplotlib" in capsys.readouterr().err
    monkeypatch.undo()

    monkeypatch.setattr(evaluate_prompt, "prompt_report", lambda *a, **kw: {"measured": 1})
    drawn = []
    monkeypatch.setattr(evaluate_prompt, "plot_top_ngrams", lambda model, path: drawn.append(path) or path)
    evaluate.main(["--data-dir", str(tmp_path), "--part", "prompt", "--json", str(tmp_path / "r.json"), "--no-plot"])
    assert json.loads((tmp_path / "r.json").read_text())["prompt"] == {"measured": 1} and drawn == []

    def failing_plot(model, path):
        assert json.loads((tmp_path / "r2.json").read_text())["prompt"] == {"measured": 1}  # already saved
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(evaluate_prompt, "plot_top_ngrams", failing_plot)
    with pytest.raises(RuntimeError, match="drawing failed"):
        evaluate.main(["--data-dir", str(tmp_path), "--part", "prompt", "--json", str(tmp_path / "r2.json"),
                       "--plot", str(tmp_path / "p.png")])


def test_the_chart_of_a_lightgbm_model_has_no_direction_colours_and_a_model_without_ngrams_is_refused(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_hex
    import matplotlib.pyplot as plt

    from refusal_predictor import PromptClassifier
    from training.evaluate_prompt import plot_top_ngrams

    figures = []
    real_subplots = plt.subplots

    def keep(*a, **kw):
        figures.append(real_subplots(*a, **kw))
        return figures[-1]

    plt.subplots = keep
    try:
        plot_top_ngrams(PromptClassifier.load("gpt-4"), tmp_path / "gains.png")  # a LightGBM head: gains
    finally:
        plt.subplots = real_subplots
    _, ax = figures[0]
    assert {to_hex(bar.get_facecolor()) for bar in ax.patches} == {"#7f8c8d"}  # not the refusal red
    assert "no direction" in ax.get_xlabel() and (tmp_path / "gains.png").stat().st_size > 0
    texts = ["How do I pick a lock?", "Write a poem", "How do I make a bomb?", "Tell me a joke"] * 5
    no_ngrams = PromptClassifier(use_ngrams=False, head="logreg", calibration=None, validation_curve=False)
    no_ngrams.fit(texts, [1, 0, 1, 0] * 5)
    with pytest.raises(ValueError, match="no n-gram features"):
        plot_top_ngrams(no_ngrams, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_evaluate_and_train_prompt_refuse_an_unreadable_labels_cache_before_the_work(tmp_path, monkeypatch, capsys):
    from training import evaluate, train_prompt

    cache = tmp_path / "labels.parquet"
    cache.write_text("a CSV someone keeps here\n")
    monkeypatch.setattr(evaluate, "response_report", _not_reached)
    monkeypatch.setattr(train_prompt, "prompt_pool", lambda data_dir: __import__("pandas").DataFrame(
        {"prompt": ["p"], "response": ["r"], "model": ["gpt-3.5-turbo"], "source": ["s"]}))
    monkeypatch.setattr(ResponseClassifier, "refusal_probability", _not_reached)
    for main, args in ((evaluate.main, []), (train_prompt.main, ["--labels-only", "--targets", "gpt-3.5-turbo"])):
        with pytest.raises(SystemExit) as exit_:
            main(["--data-dir", str(tmp_path), "--labels-cache", str(cache), *args])
        assert exit_.value.code == 2
        assert f"--labels-cache {cache}: not a readable Parquet file" in capsys.readouterr().err
    assert cache.read_text() == "a CSV someone keeps here\n"


def test_evaluate_writes_the_cards_of_the_prompt_models_it_is_given(tmp_path, capsys):
    """``--prompt-models`` (a train_prompt -o folder) gets the cards; the shipped ones are untouched."""
    from training import evaluate

    root = tmp_path / "prompt"
    for target in ("gpt-3.5-turbo", "gpt-4"):
        shutil.copytree(shipped_path("prompt", target), root / target)
    shipped = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in shipped_path("prompt").rglob("*") if p.is_file()}
    results = {"prompt": {
        "paper_split": [{"model": "ours", "n": 256, "accuracy": 0.5}],
        "quora": [{"model": "ours", "n": 985, "accuracy": 0.25}],
        "cross_llm": [{"model": "gpt-4", "n": 450, "accuracy": 0.125, "auroc": 0.75}],
    }}
    earlier = tmp_path / "report.json"
    earlier.write_text(json.dumps(results), encoding="utf-8")
    evaluate.main(["--data-dir", str(tmp_path), "--write-cards-from", str(earlier), "--prompt-models", str(root)])
    assert "model cards updated: gpt-3.5-turbo, gpt-4" in capsys.readouterr().out
    card = json.loads((root / "gpt-3.5-turbo" / "model_card.json").read_text(encoding="utf-8"))
    assert card["evaluation"]["quora"]["accuracy"] == 0.25
    card = json.loads((root / "gpt-4" / "model_card.json").read_text(encoding="utf-8"))
    assert card["evaluation"]["cross_llm"]["auroc"] == 0.75
    assert shipped == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in shipped_path("prompt").rglob("*") if p.is_file()}
    with pytest.raises(SystemExit):
        evaluate.main(["--data-dir", str(tmp_path), "--part", "prompt", "--prompt-models", str(tmp_path / "none")])
    assert "--prompt-models" in capsys.readouterr().err
    # one target retrained into a folder of its own gets its card without a gpt-3.5-turbo beside it
    shutil.rmtree(root / "gpt-3.5-turbo")
    evaluate.main(["--data-dir", str(tmp_path), "--write-cards-from", str(earlier), "--prompt-models", str(root)])
    assert "model cards updated: gpt-4" in capsys.readouterr().out


def test_evaluate_refuses_to_write_cards_from_another_response_models_labels(tmp_path, monkeypatch, capsys):
    """The prompt protocols retrain on the labels model's labels: the shipped cards (their data
    labelled by the shipped response model) must not get the metrics of labels by the n-gram one."""
    from training import evaluate, evaluate_prompt

    monkeypatch.setattr(evaluate_prompt, "prompt_report", _not_reached)
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--data-dir", str(tmp_path), "--part", "prompt", "--labels-model", "ngrams", "--write-cards"])
    assert exit_.value.code == 2
    assert "its training data was labelled by the response model of sha256" in capsys.readouterr().err
    evaluate_prompt.check_cards_labelled_by(ResponseClassifier.load())  # the shipped ones agree


def test_evaluate_loads_the_labels_model_once_for_the_card_check_and_the_report(tmp_path, monkeypatch):
    """``--write-cards`` checks the cards against the labels model up front; the report then
    bootstraps with that same loaded model instead of loading it a second time."""
    from training import evaluate, evaluate_prompt

    loads, given = [], []
    real_load = ResponseClassifier.load.__func__

    def counting_load(cls, path=None, **kwargs):
        loads.append(path)
        return real_load(cls, path, **kwargs)

    monkeypatch.setattr(ResponseClassifier, "load", classmethod(counting_load))
    monkeypatch.setattr(evaluate_prompt, "prompt_report", lambda *a, **kw: given.append(kw["response_model"]) or {})
    monkeypatch.setattr(evaluate_prompt, "write_card_evaluations", lambda results, root: [])
    evaluate.main(["--data-dir", str(tmp_path), "--part", "prompt", "--write-cards", "--plot", str(tmp_path / "p.png")])
    assert loads == [None]
    assert len(given) == 1 and isinstance(given[0], ResponseClassifier)


def test_train_prompt_labels_only_writes_the_labels_and_trains_nothing(tmp_path, monkeypatch, capsys):
    import pandas as pd

    from training import train_prompt

    def labels(data_dir, rc, cache=None, targets=()):
        frame = pd.DataFrame({"prompt": ["a"], "label": ["refusal"]})
        frame.to_parquet(cache)
        return frame

    monkeypatch.setattr(train_prompt, "bootstrapped_pool", labels)
    monkeypatch.setattr(train_prompt, "train_target", _not_reached)
    with pytest.raises(SystemExit):
        train_prompt.main(["--data-dir", str(tmp_path), "--labels-only"])
    assert "--labels-only needs --labels-cache" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # written after the labelling: its folder is checked before
        train_prompt.main(["--data-dir", str(tmp_path), "--labels-only", "--labels-cache", str(tmp_path / "no" / "l.parquet")])
    assert f"--labels-cache {tmp_path / 'no' / 'l.parquet'}: folder {tmp_path / 'no'} does not exist" in capsys.readouterr().err
    train_prompt.main(["--data-dir", str(tmp_path), "--labels-only", "--labels-cache", str(tmp_path / "l.parquet")])
    assert (tmp_path / "l.parquet").is_file()
    assert f"bootstrapped labels of 1 responses in {tmp_path / 'l.parquet'}" in capsys.readouterr().out


def test_a_recipe_chosen_after_select_embeds_with_its_own_encoder(tmp_path, monkeypatch):
    """``train_response --select --lomo-embeddings`` (the README's recipe comparison) left the
    frozen encoder's embeddings in the cache the final fit read: the fine-tuned recipe's head
    learned them and scored with the fine-tuned encoder (probabilities off by up to 0.32)."""
    import numpy as np
    import pandas as pd

    from training import data, recalibrate_response, recipes, train_response

    train, val, _ = data.paper_split()
    pool = pd.concat([train, val]).iloc[:150].reset_index(drop=True)
    name = recipes.RESPONSE_RECIPE_NAME
    assert name in recipes.FINETUNED_RESPONSE_CANDIDATES
    monkeypatch.setattr(train_response, "training_pool", lambda *a, **k: pool)
    monkeypatch.setattr(train_response, "lomo_selection", lambda *a: (name, []))  # what LOMO chooses
    # a fine-tuned encoder's recipe is recalibrated on held-out responses: here the paper rows after the pool's
    held_out = pd.concat([train, val]).iloc[150:450].reset_index(drop=True)
    monkeypatch.setattr(recalibrate_response, "heldout_responses", lambda *a, **k: held_out)
    saved = train_response.train(tmp_path / "unused", tmp_path / "m", select=True, lomo_embeddings=tmp_path / "x")
    texts, y, weights, _ = train_response.training_rows(pool)
    alone = train_response.make_classifier(recipes.ALL_RESPONSE_RECIPES[name]).fit(texts, y, sample_weight=weights)
    recalibrate_response.recalibrate_on(alone, held_out)
    probe = pool["response"].tolist()[:40]
    assert saved.temperature == pytest.approx(alone.temperature) and saved.temperature != 1.0
    assert np.allclose(saved.refusal_probability(probe), alone.refusal_probability(probe), atol=1e-6)
    assert "encoder was fine-tuned" in saved.metadata["validation_curve_caveat"]
    assert saved.metadata["recalibration"]["rows"] == 300


def test_train_prompt_fails_when_a_target_it_was_asked_for_is_not_trained(tmp_path, monkeypatch, capsys):
    """It printed "skip ..." and exited 0 having saved nothing."""
    from training import train_prompt

    monkeypatch.setattr(train_prompt, "bootstrapped_pool", lambda *a, **k: "labelled")
    monkeypatch.setattr(train_prompt, "train_target", lambda target, *a, **k: None if target == "gpt-4" else {})
    with pytest.raises(SystemExit) as exit_:
        train_prompt.main(["--data-dir", str(tmp_path), "--targets", "gpt-4", "gpt-3.5-turbo", "-o", str(tmp_path)])
    assert exit_.value.code == "not trained (too few prompts, see above): gpt-4"


def test_evaluate_refuses_options_that_would_do_nothing_or_fail_late(tmp_path, monkeypatch, capsys):
    from training import evaluate

    monkeypatch.setattr(evaluate, "response_report", _not_reached)
    with pytest.raises(SystemExit) as exit_:  # accepted, and wrote no card
        evaluate.main(["--data-dir", str(tmp_path), "--part", "response", "--write-cards"])
    assert exit_.value.code == 2 and "--part response does not measure" in capsys.readouterr().err
    earlier = tmp_path / "response.json"
    earlier.write_text(json.dumps({"response": {}}), encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:  # a KeyError: 'prompt' traceback
        evaluate.main(["--data-dir", str(tmp_path), "--write-cards-from", str(earlier)])
    assert exit_.value.code == 2 and "holds no prompt results" in capsys.readouterr().err


def test_evaluate_reports_a_response_model_without_a_tone_head(tmp_path, monkeypatch, capsys):
    """A train-response model without --tone-field stopped the report with NotFittedError."""
    from training import data, evaluate

    train, _, _ = data.paper_split()
    ResponseClassifier(use_embeddings=False, validation_curve=False).fit(
        train["response"].tolist(), train["label"].tolist()).save(tmp_path / "m")
    monkeypatch.setattr(evaluate, "short_answer_report", lambda *a, **k: [{"probe": "x"}])
    monkeypatch.setattr(evaluate, "training_pool", lambda *a, **k: None)

    def no_lomo(*a, **k):
        raise evaluate.LomoNeedsFoldEmbeddings("skipped in this test")

    monkeypatch.setattr(evaluate, "xstest_lomo_report", no_lomo)
    monkeypatch.setattr(evaluate, "xstest_annotator_rows", lambda pool: [{"model": "m", "annotators_f1": 0.9}])
    result = evaluate.response_report(tmp_path, tmp_path / "m")
    assert result["tones"] is None and result["paper_split"][0]["accuracy"] > 0.85
    assert result["xstest_annotators"] == [{"model": "m", "annotators_f1": 0.9}] and result["xstest_lomo"] is None
    assert "tones not measured: this model has no tone head" in capsys.readouterr().out


def test_train_response_recipe_and_select_exclude_each_other(tmp_path, capsys):
    from training import train_response

    with pytest.raises(SystemExit) as exit_:  # the recipe asked for was replaced by the winner
        train_response.main(["--data-dir", str(tmp_path), "--recipe", "ngrams+minilm-lightgbm", "--select",
                             "-o", str(tmp_path / "m")])
    assert exit_.value.code == 2 and "give one or the other" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_the_prompt_pool_holds_out_the_paper_test_prompts_in_any_spelling(tmp_path, monkeypatch):
    import pandas as pd

    from training import data as D
    from training import train_prompt

    held_out = D.paper_split()[2]["prompt"].iloc[0]
    pool = pd.DataFrame({"prompt": [f"  {held_out.upper()} ", "A prompt of no protocol"],
                         "response": ["r", "r"], "source": ["alpaca-eval", "alpaca-eval"], "model": ["m", "m"]})
    monkeypatch.setattr(train_prompt.data, "load_bootstrap_pool", lambda data_dir: pool.copy())
    assert train_prompt.prompt_pool(tmp_path)["prompt"].tolist() == ["A prompt of no protocol"]
