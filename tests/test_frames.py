"""Scoring tables: pandas DataFrames here, Dask DataFrames on a local cluster of worker processes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from refusal_predictor import frames
from refusal_predictor.frames import load_scorer, score_dask, score_frame

PAPER_TEST_ROWS = 60


@pytest.fixture
def dd():
    """Dask's DataFrame module (the [dask] extra, which the test extra includes)."""
    return pytest.importorskip("dask.dataframe")


@pytest.fixture(scope="module")
def paper_rows() -> pd.DataFrame:
    """Real responses and prompts (the paper's test split), under a shuffled string index."""
    from training import data

    _, _, test = data.paper_split()
    rows = test[["prompt", "response", "label"]].head(PAPER_TEST_ROWS).reset_index(drop=True)
    rows = rows.rename(columns={"label": "hand_label"})
    order = np.random.default_rng(0).permutation(len(rows))
    rows = rows.iloc[order]
    rows.index = [f"row-{i}" for i in order]
    return rows


def test_a_frame_gains_the_models_probability_and_label_with_every_row_and_column_kept(paper_rows, response_model):
    scored = score_frame(paper_rows)
    expected = response_model.refusal_probability(paper_rows["response"].tolist())
    assert list(scored.index) == list(paper_rows.index)
    pd.testing.assert_frame_equal(scored[list(paper_rows.columns)], paper_rows)
    np.testing.assert_allclose(scored["refusal_probability"].to_numpy(), expected, rtol=0, atol=1e-12)
    assert scored["label"].tolist() == ["refusal" if p >= 0.5 else "compliance" for p in expected]
    assert "refusal_probability" not in paper_rows.columns  # a copy: the caller's frame is untouched
    # the shipped model against the hand labels of these held-out responses
    assert (scored["label"] == paper_rows["hand_label"]).mean() >= 0.85


def test_prompts_are_scored_by_a_shipped_target_and_a_threshold_of_ones_own(paper_rows):
    from refusal_predictor import PromptClassifier

    gpt4 = PromptClassifier.load(target="gpt-4")
    expected = gpt4.refusal_probability(paper_rows["prompt"].tolist())
    cut = float(np.quantile(expected, 0.7))
    scored = score_frame(paper_rows, "prompt", "gpt-4", threshold=cut, probability_field="p", label_field="will_refuse")
    np.testing.assert_allclose(scored["p"].to_numpy(), expected, rtol=0, atol=1e-12)
    assert scored["will_refuse"].tolist() == ["refusal" if p >= cut else "compliance" for p in expected]
    assert (scored["will_refuse"] == "refusal").sum() == (expected >= cut).sum() < len(expected) / 2
    # a model already loaded is used as it is
    again = score_frame(paper_rows, "prompt", gpt4, threshold=cut, probability_field="p", label_field="will_refuse")
    pd.testing.assert_frame_equal(again, scored)


def test_texts_are_scored_in_chunks_to_the_same_result(paper_rows, monkeypatch):
    whole = score_frame(paper_rows, model="ngrams")
    monkeypatch.setattr(frames, "CHUNK_SIZE", 7)
    pd.testing.assert_frame_equal(score_frame(paper_rows, model="ngrams"), whole)


def test_rows_that_cannot_be_scored_stop_the_run_by_name_or_are_kept_unscored():
    table = pd.DataFrame({"response": ["I'm sorry, but I can't help with that.", None, 7, "Sure: 4.", "bad \udcff half",
                                       float("nan"), ""]},
                         index=["a", "b", "c", "d", "e", "f", "g"])
    with pytest.raises(ValueError, match=r"^row 'b': 'response' is missing; 4 of 7 rows cannot be scored"):
        score_frame(table, model="ngrams")
    with pytest.raises(ValueError, match=r"partition 3, row 'b'"):
        score_frame(table, model="ngrams", partition_info={"number": 3, "division": None})
    marked = score_frame(table, model="ngrams", errors="mark")
    assert list(marked.index) == list(table.index) and marked["response"].tolist()[:4] == [table["response"].iloc[0], None, 7, "Sure: 4."]
    unscored = marked["refusal_probability"].isna()
    assert unscored.tolist() == [False, True, True, False, True, True, False]
    assert marked["label"][unscored].isna().all() and marked["label"]["a"] == "refusal" and marked["label"]["d"] == "compliance"
    ngrams = load_scorer("response", "ngrams")
    expected = ngrams.refusal_probability([table["response"][k] for k in ("a", "d", "g")])
    np.testing.assert_allclose(marked.loc[["a", "d", "g"], "refusal_probability"].to_numpy(), expected, atol=1e-12)
    assert "lone UTF-16 surrogate at character 4" in frames._unscorable(table["response"]["e"])
    assert frames._unscorable(7) == "is int, expected a string" and frames._unscorable(pd.NA) == "is missing"


def test_pyarrow_strings_and_their_missing_values_are_read_as_text_and_missing():
    table = pd.DataFrame({"response": pd.array(["I cannot help with that request.", None], dtype="string[pyarrow]")})
    marked = score_frame(table, model="ngrams", errors="mark")
    assert marked["label"].tolist()[0] == "refusal" and np.isnan(marked["refusal_probability"].iloc[1])


def test_bad_options_are_refused_before_any_model_is_loaded(monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(frames, "load_scorer", no_loading)
    table = pd.DataFrame({"text": ["hello"], "label": ["x"]})
    with pytest.raises(ValueError, match=r"no column 'response' to score \(columns: \['text', 'label'\]\); name the text column"):
        score_frame(table)
    with pytest.raises(ValueError, match="already has a column 'label'"):
        score_frame(table, text_field="text")
    with pytest.raises(ValueError, match="both 'x'"):
        score_frame(table, text_field="text", probability_field="x", label_field="x")
    with pytest.raises(ValueError, match="kind must be one of"):
        score_frame(table, "responses", text_field="text")
    with pytest.raises(ValueError, match="errors must be 'raise' or 'mark'"):
        score_frame(table, text_field="text", label_field="y", errors="skip")
    with pytest.raises(TypeError, match="expected a pandas DataFrame, got list"):
        score_frame([{"response": "x"}])
    # an empty table needs no model loaded (its name is still checked)
    empty = score_frame(pd.DataFrame({"response": pd.Series([], dtype=object)}), model="ngrams")
    assert list(empty.columns) == ["response", "refusal_probability", "label"] and empty.empty


def test_models_are_loaded_by_name_once_per_process_and_again_once_saved_over(tmp_path, monkeypatch):
    frames.clear_cache()
    first = load_scorer("prompt", "gpt-4")
    assert load_scorer("prompt", "gpt-4") is first and first.target == "gpt-4"
    folder = tmp_path / "mine"
    load_scorer("response", "ngrams").save(folder)
    monkeypatch.chdir(tmp_path)
    mine = load_scorer("response", str(folder))
    # one folder however it is named: relative, absolute, through ~
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_scorer("response", "mine") is mine is load_scorer("response", "~/mine") is load_scorer("response", "./mine/")
    assert mine.threshold == 0.5
    mine.threshold = 0.7
    mine.save(folder)  # saved over: the next partition scores the new model, not the cached one
    again = load_scorer("response", "mine")
    assert again is not mine and again.threshold == 0.7
    assert sum(key[1].name == str(folder) for key in frames._cache) == 1  # replaced, not kept beside
    assert load_scorer("response", "cascade").__class__.__name__ == "ResponseCascade"
    with pytest.raises(TypeError, match="a shipped name or a folder path as str"):
        load_scorer("prompt", 4)
    with pytest.raises(ValueError, match=r"'no-such-llm' is neither a model folder nor a shipped prompt model; "
                                         r"available names: \['gpt-3.5-turbo', 'gpt-4'"):
        load_scorer("prompt", "no-such-llm")
    with pytest.raises(ValueError, match="'ngram' is neither a model folder nor a shipped response model"):
        load_scorer("response", "ngram")


def test_shipped_names_are_the_installed_models_whatever_the_spelling_or_the_directory(tmp_path, monkeypatch):
    """A shipped name reached each worker as typed, and a worker whose directory held a folder of
    that name scored with it; 'NGRAMS', 'ngrams/' and None beside 'default' were separate models."""
    from refusal_predictor.frames import ModelRef, model_reference

    frames.clear_cache()
    assert load_scorer("response", "NGRAMS") is load_scorer("response", "ngrams/") is load_scorer("response", " ngrams")
    assert load_scorer("response") is load_scorer("response", "default")
    assert load_scorer("prompt", "chatgpt") is load_scorer("prompt") is load_scorer("prompt", "GPT-3.5-turbo")
    assert len(frames._cache) == 3
    assert model_reference("response", "Cascade") == ModelRef("shipped", "cascade")
    shipped = load_scorer("response", "ngrams")
    # a folder named like a shipped model, in a worker's directory: the reference says which was meant
    impostor = tmp_path / "ngrams"
    shipped.save(impostor)
    ref = model_reference("response", "ngrams")  # decided here: no folder of that name in this directory
    monkeypatch.chdir(tmp_path)
    assert load_scorer("response", ref) is shipped
    assert model_reference("response", "ngrams") == ModelRef("folder", str(impostor))  # here the folder wins, as on the command line
    (tmp_path / "cascade").mkdir()
    with pytest.raises(ValueError, match=r"manifest missing; the folder 'cascade' is taken before the shipped model"):
        model_reference("response", "cascade")
    (tmp_path / "outputs").mkdir()
    with pytest.raises(ValueError, match=r"outputs/manifest.json: manifest missing; is this a refusal-predictor model folder"):
        model_reference("prompt", "outputs")
    # a path only the workers may mount travels as given, for them to load
    assert model_reference("response", "/cluster/models/mine") == ModelRef("folder", "/cluster/models/mine")
    assert model_reference("prompt", "models/mine") == ModelRef("folder", str(tmp_path / "models" / "mine"))
    with pytest.raises(ValueError, match="neither a model folder nor a shipped response model"):
        model_reference("response", "mine")


def test_one_load_at_a_time_per_model_even_after_a_save_during_a_load(tmp_path, monkeypatch):
    """The per-model lock was dropped by the first load's end while a second thread still loaded
    under it (the folder saved over meanwhile), so a third started a load of its own beside it."""
    import threading

    frames.clear_cache()
    folder = tmp_path / "mine"
    load_scorer("response", "ngrams").save(folder)
    real_load = frames._load
    running, peak, lock = [0], [0], threading.Lock()
    started = [threading.Event(), threading.Event()]
    release = [threading.Event(), threading.Event()]
    loads = []

    def counted_load(*args):
        with lock:
            number = len(loads)
            loads.append(number)
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        if number < 2:  # the first two loads wait to be let go
            started[number].set()
            release[number].wait(10)
        try:
            return real_load(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(frames, "_load", counted_load)
    got = {}

    def ask(name):
        got[name] = load_scorer("response", str(folder))

    a = threading.Thread(target=ask, args=("a",))
    a.start()
    assert started[0].wait(10)
    manifest = folder / "manifest.json"
    manifest.write_text(manifest.read_text(encoding="utf-8"), encoding="utf-8")  # saved over meanwhile
    b = threading.Thread(target=ask, args=("b",))
    b.start()
    b.join(0.5)  # b misses (a new stamp) and waits for a's load
    release[0].set()
    a.join(30)
    assert started[1].wait(10)  # b loads the saved-over model, under the lock a took
    c = threading.Thread(target=ask, args=("c",))
    c.start()
    c.join(0.5)
    assert c.is_alive() and peak[0] == 1  # c waits for b's load instead of loading beside it
    release[1].set()
    for thread in (b, c):
        thread.join(30)
    assert len(loads) == 2 and got["b"] is got["c"] is not got["a"] and not frames._loading


def _paused_loads(monkeypatch):
    """frames._load made to wait: (set when a load has begun, set to let it go on)."""
    import threading

    real_load, started, release = frames._load, threading.Event(), threading.Event()

    def paused_load(*args):
        started.set()
        release.wait(10)
        return real_load(*args)

    monkeypatch.setattr(frames, "_load", paused_load)
    return started, release


def test_failed_loads_leave_nothing_behind_and_a_cleared_cache_stays_empty(tmp_path, monkeypatch):
    import threading

    frames.clear_cache()
    for i in range(20):
        with pytest.raises(ValueError):
            load_scorer("response", str(tmp_path / f"missing-{i}"))
    assert not frames._loading and not frames._cache
    started, release = _paused_loads(monkeypatch)
    loader = threading.Thread(target=load_scorer, args=("response", "ngrams"))
    loader.start()
    assert started.wait(10)
    frames.clear_cache()  # during the load: the model it returns is not kept
    release.set()
    loader.join(30)
    assert not frames._cache and not frames._loading


def test_model_references_are_checked_whoever_builds_them(tmp_path, dd):
    from refusal_predictor.frames import ModelRef, model_reference

    with pytest.raises(ValueError, match=r"ModelRef\(source='shipped', name='NGRAMS'\) is not a response model"):
        load_scorer("response", ModelRef("shipped", "NGRAMS"))
    with pytest.raises(ValueError, match="is not a response model"):
        model_reference("response", ModelRef("shipped", "gpt-4"))
    with pytest.raises(ValueError, match="is not a prompt model"):
        model_reference("prompt", ModelRef("folder", "relative/path"))
    assert model_reference("prompt", ModelRef("shipped", "gpt-4")) == ModelRef("shipped", "gpt-4")
    with pytest.raises(ValueError, match="'~no-such-user-here/models/mine': "):
        model_reference("response", "~no-such-user-here/models/mine")
    folder = tmp_path / "mine"
    load_scorer("response", "ngrams").save(folder)
    with pytest.raises(ValueError, match=r"this is a 'response' model, not a 'prompt' model; give kind='response'"):
        score_dask(dd.from_pandas(pd.DataFrame({"prompt": ["x"]}), npartitions=1), "prompt", str(folder))


def test_a_model_loading_does_not_hold_up_another_models_partitions(monkeypatch):
    import threading

    frames.clear_cache()
    ngrams = load_scorer("response", "ngrams")
    started, release = _paused_loads(monkeypatch)
    loader = threading.Thread(target=load_scorer, args=("prompt", "gpt-4"))
    loader.start()
    assert started.wait(10)
    hit = []
    reader = threading.Thread(target=lambda: hit.append(load_scorer("response", "ngrams")))
    reader.start()
    reader.join(5)  # a cached model while another loads: at once, not after that load
    assert hit == [ngrams]
    release.set()
    loader.join(30)
    assert not loader.is_alive()


def test_threads_meeting_an_uncached_model_load_it_once():
    """lru_cache ran the loader in each thread that missed: four threads, four models and encoders."""
    import threading

    frames.clear_cache()
    barrier, got = threading.Barrier(4), []

    def first_partition():
        barrier.wait()
        got.append(load_scorer("prompt", "gpt-4", 1))

    threads = [threading.Thread(target=first_partition) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 4 and len({id(model) for model in got}) == 1 and len(frames._cache) == 1


def test_a_loaded_model_must_match_the_kind_and_carries_its_own_threads(paper_rows, response_model, prompt_model):
    with pytest.raises(ValueError, match="a PromptClassifier scores prompts, but kind is 'response'"):
        score_frame(paper_rows, "response", prompt_model)
    with pytest.raises(ValueError, match="a ResponseClassifier scores responses, but kind is 'prompt'"):
        score_frame(paper_rows, "prompt", response_model)
    with pytest.raises(ValueError, match="num_threads applies to a model loaded by name"):
        score_frame(paper_rows, "response", response_model, num_threads=1)


def test_a_duplicated_text_column_and_bad_numbers_are_refused_even_with_nothing_to_score():
    twice = pd.DataFrame([["a", "b"]], columns=["response", "response"])
    with pytest.raises(ValueError, match="2 columns are named 'response'"):
        score_frame(twice, model="ngrams")
    nothing = pd.DataFrame({"response": [None]})
    with pytest.raises(ValueError, match="threshold must be a probability"):
        score_frame(nothing, model="ngrams", threshold=5, errors="mark")
    with pytest.raises(ValueError, match="num_threads must be a whole number"):
        score_frame(nothing, model="ngrams", num_threads=0, errors="mark")




def test_dask_options_are_checked_on_the_client_before_any_work(dd):
    table = dd.from_pandas(pd.DataFrame({"text": ["hello", "no"]}), npartitions=2)
    with pytest.raises(ValueError, match="no column 'response' to score"):
        score_dask(table)
    with pytest.raises(TypeError, match="a shipped name or a folder path as str"):
        score_dask(table, model=object(), text_field="text")
    with pytest.raises(ValueError, match="'ngram' is neither a model folder nor a shipped response model"):
        score_dask(table, model="ngram", text_field="text")
    with pytest.raises(ValueError, match="threshold must be a probability"):
        score_dask(table, text_field="text", threshold=1.5)
    with pytest.raises(ValueError, match="num_threads must be a whole number"):  # not on a worker at compute
        score_dask(table, text_field="text", num_threads=0)
    with pytest.raises(TypeError, match="for a pandas DataFrame use score_frame"):
        score_dask(pd.DataFrame({"text": ["x"]}))
    with pytest.raises(TypeError, match="for a Dask DataFrame use score_dask"):
        score_frame(table)


def test_a_dask_frame_is_scored_on_worker_processes_as_pandas_scores_it(paper_rows, tmp_path, dd):
    distributed = pytest.importorskip("distributed")

    expected = score_frame(paper_rows, model="ngrams")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, local_directory=str(tmp_path / "dask")) as cluster, \
            distributed.Client(cluster) as client:
        table = dd.from_pandas(paper_rows, npartitions=4)
        lazy = score_dask(table, model="ngrams", num_threads=1)
        assert list(lazy.columns) == [*paper_rows.columns, "refusal_probability", "label"]
        scored = lazy.compute()
        pd.testing.assert_frame_equal(scored.loc[expected.index], expected, check_dtype=False, check_index_type=False)  # Dask reads text as pyarrow strings
        assert scored["label"].tolist() == expected.loc[scored.index, "label"].tolist()
        # the workers loaded the model themselves (the graph carries its name, not the model)
        workers = client.run(lambda: len(frames._cache))
        assert len(workers) == 2 and sum(workers.values()) >= 1
        # written straight to Parquet from the workers, read back whole
        lazy.to_parquet(tmp_path / "scored")
        back = pd.read_parquet(tmp_path / "scored")
        assert len(back) == len(paper_rows) and back["label"].tolist() == scored["label"].tolist()
        bad = dd.from_pandas(pd.DataFrame({"response": ["fine", "fine too", None, "ok"]}), npartitions=2)
        with pytest.raises(ValueError, match=r"partition 1, row 2: 'response' is missing; 1 of 2 rows of this partition"):
            score_dask(bad, model="ngrams").compute()
        odd = dd.from_pandas(pd.DataFrame({"response": ["fine", None]}, index=[30, 31]), npartitions=1)
        with pytest.raises(ValueError, match=r"partition 0, row 31: "):  # not np.int64(31)
            score_dask(odd, model="ngrams").compute()

        # a result persisted on the cluster is not handed back for a model saved over its folder since
        folder = tmp_path / "mine"
        load_scorer("response", "ngrams").save(folder)
        persisted = score_dask(table, model=str(folder)).persist()
        before = persisted["label"].compute().tolist()
        mine = load_scorer("response", str(folder))
        mine.threshold = 0.999
        mine.save(folder)
        after = score_dask(table, model=str(folder))["label"].compute().tolist()
        assert before == expected.loc[persisted.index.compute(), "label"].tolist() and "refusal" in before
        order = persisted.index.compute()
        assert after == ["refusal" if q >= 0.999 else "compliance" for q in expected.loc[order, "refusal_probability"]]
        assert after != before


def test_a_probability_equal_to_the_threshold_is_a_refusal(paper_rows):
    """A label computed with > instead of >= passed, since no row's probability met the cut."""
    expected = load_scorer("response", "ngrams").refusal_probability(paper_rows["response"].tolist())
    cut = float(np.sort(expected)[len(expected) // 2])  # one real row's probability, exactly
    scored = score_frame(paper_rows, model="ngrams", threshold=cut)
    at = scored["refusal_probability"] == cut
    assert at.any() and (scored.loc[at, "label"] == "refusal").all()
    assert scored["label"].tolist() == ["refusal" if p >= cut else "compliance" for p in expected]


def test_encoder_threads_are_applied_and_models_with_other_threads_are_cached_apart():
    """num_threads left out of the cache key, or never applied to the encoder, passed."""
    frames.clear_cache()
    one = load_scorer("prompt", "gpt-4", 1)
    two = load_scorer("prompt", "gpt-4", 2)
    default = load_scorer("prompt", "gpt-4")
    assert one.features_._encoder_options["num_threads"] == 1 and two.features_._encoder_options["num_threads"] == 2
    assert getattr(default.features_, "_encoder_options", {}).get("num_threads") is None
    assert len({id(one), id(two), id(default)}) == 3 and len(frames._cache) == 3
    assert load_scorer("prompt", "gpt-4", 1) is one


def test_the_cache_keeps_the_most_recently_used_models(monkeypatch):
    """popitem() evicted the model just loaded, and a hit that did not refresh its place passed."""
    frames.clear_cache()
    monkeypatch.setattr(frames, "_CACHE_SIZE", 2)
    ngrams = load_scorer("response", "ngrams")
    load_scorer("prompt", "gpt-4")
    assert load_scorer("response", "ngrams") is ngrams  # used again: gpt-4 is now the least recent
    chatgpt = load_scorer("prompt", "gpt-3.5-turbo")
    assert [key[1].name for key in frames._cache] == ["ngrams", "gpt-3.5-turbo"]
    assert load_scorer("response", "ngrams") is ngrams and load_scorer("prompt", "gpt-3.5-turbo") is chatgpt


def test_a_model_returning_the_wrong_number_of_scores_is_an_error(paper_rows, response_model):
    """A count check of < let a model returning too many scores through to a numpy shape error."""
    class OneTooMany:
        threshold = 0.5

        def refusal_probability(self, texts):
            return np.append(response_model.refusal_probability(texts), 0.5)

    with pytest.raises(ValueError, match=rf"^the model returned {PAPER_TEST_ROWS + 1} scores for {PAPER_TEST_ROWS} texts$"):
        score_frame(paper_rows, model=OneTooMany())
