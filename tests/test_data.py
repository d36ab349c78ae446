"""Tests for training/data.py, the canonical data loaders.

The paper's data ships in the repository, so the paper tests always run. The other sources
live in an external data directory: set REFUSAL_PREDICTOR_DATA (default ``../shared/data``
relative to the repository root); tests that need it are skipped when it is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from training import data as D

REPO_ROOT = Path(__file__).resolve().parents[1]

DATA_DIR = Path(os.environ.get("REFUSAL_PREDICTOR_DATA", REPO_ROOT.parent / "shared" / "data"))
needs_data = pytest.mark.skipif(
    not DATA_DIR.is_dir(),
    reason=f"external data directory not found ({DATA_DIR}); set REFUSAL_PREDICTOR_DATA",
)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def paper() -> pd.DataFrame:
    return D.load_paper()


@pytest.fixture(scope="module")
def split(paper):
    return D.paper_split(paper)


@pytest.fixture(scope="module")
def xstest() -> pd.DataFrame:
    return D.load_xstest(DATA_DIR)


@pytest.fixture(scope="module")
def gptfuzz() -> pd.DataFrame:
    return D.load_gptfuzz(DATA_DIR)


@pytest.fixture(scope="module")
def pool() -> pd.DataFrame:
    return D.load_bootstrap_pool(DATA_DIR)


# ----------------------------------------------------------------------------- paper


def test_paper_counts_and_labels(paper):
    assert len(paper) == 1706
    assert tuple(paper.columns[:6]) == D.COLUMNS
    D.validate_records(paper)
    assert paper["label"].value_counts().to_dict() == {"compliance": 1060, "refusal": 646}
    assert not paper["fine_label"].isin(["incoherent", "dontknow"]).any()
    # label is a pure function of the tone
    assert ((paper["fine_label"] == "complied") == (paper["label"] == "compliance")).all()
    assert paper["subset"].value_counts().to_dict() == {
        "quora_insincere": 985,
        "political_figures": 700,
        "nyp": 21,
    }
    assert set(paper["source"]) == {"chatgpt-refusals"}
    assert set(paper["model"]) == {"gpt-3.5-turbo"}
    assert paper["row_id"].is_monotonic_increasing and paper["row_id"].is_unique
    assert paper["response"].map(lambda v: isinstance(v, str)).all()


def test_paper_split_counts_and_rates(split):
    train, val, test = split
    assert (len(train), len(val), len(test)) == (1194, 256, 256)
    refusals = [int((s["label"] == "refusal").sum()) for s in split]
    assert refusals == [448, 98, 100]
    assert [set(s["split"]) for s in split] == [{"train"}, {"val"}, {"test"}]


def test_paper_split_is_deterministic_and_disjoint(paper, split):
    again = D.paper_split(D.load_paper())
    for a, b in zip(split, again):
        assert a["row_id"].tolist() == b["row_id"].tolist()
    ids = [set(s["row_id"]) for s in split]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert ids[0] | ids[1] | ids[2] == set(paper["row_id"])
    # row_id joins a split back to load_paper()
    back = split[2].merge(paper[["row_id", "response"]], on="row_id", suffixes=("", "_p"))
    assert (back["response"] == back["response_p"]).all()


def test_paper_split_matches_reference_implementation(split):
    """The split must equal the paper's own code applied to the raw text lists."""
    from sklearn.model_selection import train_test_split

    with open(D.PAPER_DATA_DIR / "all_hand_labeled.json", encoding="utf-8") as f:
        raw = [r for r in json.load(f) if r["tone"] not in ("incoherent", "dontknow")]
    X = [r["response"] for r in raw]
    y = ["complied" if r["tone"] == "complied" else "rejected" for r in raw]
    X_train, X_rest, _, y_rest = train_test_split(X, y, test_size=0.3, random_state=0)
    X_val, X_test, _, y_test = train_test_split(X_rest, y_rest, test_size=0.5, random_state=0)
    train, val, test = split
    assert train["response"].tolist() == X_train
    assert val["response"].tolist() == X_val
    assert test["response"].tolist() == X_test
    assert test["label"].tolist() == [
        "compliance" if t == "complied" else "refusal" for t in y_test
    ]


def test_paper_split_rejects_shuffled_input(paper):
    with pytest.raises(ValueError, match="file order"):
        D.paper_split(paper.sample(frac=1.0, random_state=1))


def test_quora_hand_labelled(paper):
    q = D.load_quora_hand_labelled()
    assert len(q) == 985
    D.validate_records(q)
    assert q["label"].value_counts().to_dict() == {"compliance": 680, "refusal": 305}
    assert q["is_insincere"].dtype == bool and int(q["is_insincere"].sum()) == 596
    # the same records as the quora block of all_hand_labeled.json
    joined = q.merge(paper, left_on="paper_row_id", right_on="row_id", suffixes=("", "_p"))
    assert len(joined) == 985
    assert (joined["prompt"] == joined["prompt_p"]).all()
    assert (joined["label"] == joined["label_p"]).all()


def test_paper_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="all_hand_labeled.json"):
        D.load_paper(tmp_path)
    bad = tmp_path / "all_hand_labeled.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="all_hand_labeled.json"):
        D.load_paper(bad)
    bad.write_text(json.dumps([{"prompt": "p", "response": "r", "tone": "complied"}]))
    with pytest.raises(ValueError, match="1721"):
        D.load_paper(bad)


# ----------------------------------------------------------------------------- schema


def _record(**kw) -> dict:
    base = dict(prompt="p", response="r", label="refusal", fine_label=None,
                source="s", model="m")
    base.update(kw)
    return base


def test_validate_records_accepts_good_and_rejects_bad():
    D.validate_records(pd.DataFrame([_record(), _record(response=None, label=None)]))
    with pytest.raises(ValueError, match="first columns"):
        D.validate_records(pd.DataFrame([_record()])[["source", *D.COLUMNS[:-1]]])
    with pytest.raises(ValueError, match="label"):
        D.validate_records(pd.DataFrame([_record(label="refused")]))
    with pytest.raises(ValueError, match="prompt"):
        D.validate_records(pd.DataFrame([_record(prompt="  ")]))
    with pytest.raises(ValueError, match="source"):
        D.validate_records(pd.DataFrame([_record(source=None)]))


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("gpt-3.5-turbo-1106", "gpt-3.5-turbo"),
        ("gpt-3.5-turbo-0301", "gpt-3.5-turbo"),
        ("gpt4_0314", "gpt-4"),
        ("gpt4_1106_preview", "gpt-4"),
        ("gpt-4-0125-preview", "gpt-4"),
        ("gpt-4-turbo-2024-04-09", "gpt-4"),
        ("gpt-4o-2024-05-13", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("llama-2-7b-chat-hf", "llama-2-7b-chat"),
        ("llama-2-70b-chat-hf", "llama-2-70b-chat"),
        ("Meta-Llama-3-8B-Instruct", "llama-3-8b-instruct"),
        ("Mistral-7B-Instruct-v0.2", "mistral-7b-instruct"),
        ("claude-3-5-sonnet-20240620", "claude-3.5-sonnet"),
        ("ft:gpt-3.5-turbo-0125:org::abc", "gpt-3.5-turbo+ft"),
    ],
)
def test_normalize_model_name(raw, expected):
    assert D.normalize_model_name(raw) == expected


# ----------------------------------------------------------------------------- external sets


@needs_data
def test_xstest(xstest):
    assert len(xstest) == 2250
    D.validate_records(xstest)
    assert xstest["model"].value_counts().to_dict() == {m: 450 for m in D.XSTEST_SETS.values()}
    assert set(xstest["fine_label"]) == {"full_compliance", "full_refusal", "partial_refusal"}
    assert (xstest.loc[xstest["fine_label"] == "partial_refusal", "label"] == "refusal").all()
    assert (xstest.loc[xstest["fine_label"] == "full_compliance", "label"] == "compliance").all()
    # prompt ids group the same prompt across the five set-ups
    assert xstest["id"].nunique() == 450
    assert (xstest.groupby("id")["prompt"].nunique() == 1).all()
    assert int(xstest.loc[xstest["model"] == "gpt-4", "unsafe"].sum()) == 200
    assert xstest["agreement"].isin([True, False]).all()


@needs_data
def test_xstest_annotators_set_the_lomo_ceiling(xstest):
    """The evaluation report's human ceiling: annotator 1 against annotator 2, per completion set."""
    from training.evaluate import xstest_annotator_rows

    rows = {r["model"]: r for r in xstest_annotator_rows(xstest)}
    assert set(rows) == set(D.XSTEST_SETS.values()) | {"mean", "min"}
    mistral = rows["mistral-7b-instruct"]
    # 450 completions, 10 disagreements: 74 refusals to both annotators, 1 + 9 to one (counted from the CSV)
    assert mistral["n"] == 450
    assert mistral["annotators_agreement"] == pytest.approx(440 / 450)
    assert mistral["annotators_f1"] == pytest.approx(2 * 74 / (2 * 74 + 10))
    assert rows["min"]["annotators_f1"] == mistral["annotators_f1"]  # the hardest set for humans too
    assert rows["gpt-4"]["annotators_f1"] > 0.99
    # scored against the final label, which they decided, each annotator does better than against the other
    for r in rows.values():
        assert r["annotator_1_f1"] >= r["annotators_f1"] and r["annotator_2_f1"] >= r["annotators_f1"]
    # files without the annotation columns (load_xstest accepts them) or with a missing cell
    assert xstest_annotator_rows(xstest.drop(columns=["annotation_1"])) == []
    assert xstest_annotator_rows(xstest.iloc[:0]) == []
    partial = xstest.copy()
    partial.loc[partial.index[0], "annotation_1"] = None
    assert {r["model"]: r["n"] for r in xstest_annotator_rows(partial)}["gpt-4"] == 449
    broken = xstest.copy()
    broken.loc[broken.index[3], "annotation_2"] = "4_unsure"
    with pytest.raises(ValueError, match=r"gpt-4: unknown annotation_2 value\(s\) \['4_unsure'\] \(ids v2-4\)"):
        xstest_annotator_rows(broken)


@needs_data
def test_gptfuzz(gptfuzz):
    assert len(gptfuzz) == 6160
    D.validate_records(gptfuzz)
    assert set(gptfuzz["model"]) == {"gpt-3.5-turbo"}
    assert gptfuzz["label"].value_counts().to_dict() == {"refusal": 4466, "compliance": 1694}
    assert ((gptfuzz["gptfuzz_label"] == 1) == (gptfuzz["label"] == "compliance")).all()
    # prompts resolved to question text, not the integer id
    assert gptfuzz["question_id"].nunique() == 80
    assert gptfuzz["prompt"].nunique() == 80
    assert not gptfuzz["prompt"].str.fullmatch(r"\d+").any()
    first = gptfuzz.loc[gptfuzz["question_id"] == 0, "prompt"].iloc[0]
    assert first.startswith("What are some effective ways to cyberbully")


@needs_data
def test_labelled_responses_exclude_paper_test(split):
    lab = D.load_labelled_responses(DATA_DIR)
    D.validate_records(lab)
    assert len(lab) == 1194 + 256 + 2250 + 6160
    assert lab["label"].notna().all()
    paper_rows = lab[lab["source"] == "chatgpt-refusals"]
    assert set(paper_rows["split"]) == {"train", "val"}
    assert not set(paper_rows["row_id"]) & set(split[2]["row_id"])
    with_test = D.load_labelled_responses(DATA_DIR, include_paper_test=True)
    assert len(with_test) == len(lab) + 256


@needs_data
@pytest.mark.parametrize(
    "loader, models",
    [
        ("load_jailbreakbench", {"gpt-3.5-turbo", "gpt-4", "llama-2-7b-chat", "vicuna-13b"}),
        (
            "load_llm_past_tense",
            {"gpt-3.5-turbo", "gpt-4o", "gpt-4o-mini", "claude-3.5-sonnet", "llama-3-8b-instruct",
             "gemma-2-9b-it", "phi-3-mini-instruct", "zephyr-7b-r2d2", "o1-mini", "o1-preview",
             "gpt-3.5-turbo+ft"},
        ),
        ("load_derta", {"gpt-3.5-turbo", "gpt-4", "llama-3-8b-instruct", "llama-3-70b-instruct",
                        "llama-3-8b+derta"}),
        ("load_alpaca_eval", {"gpt-3.5-turbo", "gpt-4", "gpt-4o", "gpt-4o-mini", "llama-2-7b-chat",
                              "llama-2-70b-chat", "claude-3-opus", "mistral-7b-instruct"}),
        ("load_refusal_direction", {"gemma-2b-it", "llama-2-7b-chat", "llama-3-8b-instruct",
                                    "qwen-1.8b-chat", "yi-6b-chat", "llama-2-7b-chat+actadd",
                                    "llama-2-7b-chat+ablation"}),
    ],
)
def test_bootstrap_loaders(loader, models):
    df = getattr(D, loader)(DATA_DIR)
    assert len(df) > 0
    D.validate_records(df)
    assert df["label"].isna().all() and df["fine_label"].isna().all()
    assert df["response"].map(lambda v: isinstance(v, str) and v.strip() != "").all()
    assert models <= set(df["model"]), models - set(df["model"])
    assert df["model_version"].notna().all()


@needs_data
def test_refusal_direction_marks_edited_models():
    df = D.load_refusal_direction(DATA_DIR)
    plain = df["intervention"].isna()
    assert int(plain.sum()) == 1000
    assert not df.loc[plain, "model"].str.contains(D.DERIVED_SEP, regex=False).any()
    edited = df.loc[~plain]
    assert (edited["model"].str.split(D.DERIVED_SEP, regex=False).str[1]
            == edited["intervention"]).all()


@needs_data
def test_derta_completion_attack_is_split():
    df = D.load_derta(DATA_DIR)
    ca = df[df["task"] == "completionattack"]
    assert len(ca) > 1700
    # the attack prefix is the prompt and is not repeated at the start of the response
    assert ca["prompt"].str.rstrip().str.endswith(":").mean() > 0.9
    repeated = [r.startswith(p[:30]) for p, r in zip(ca["prompt"], ca["response"])]
    assert not any(repeated)


@needs_data
def test_bootstrap_pool(pool):
    D.validate_records(pool)
    assert pool["label"].isna().all()
    assert set(pool["source"]) == {
        "jailbreakbench", "llm-past-tense", "derta", "alpaca-eval", "refusal-direction",
        "chatgpt-refusals", "xstest-v2", "gptfuzz",
    }
    human = pool["human_label"].dropna()
    assert set(human) == {"refusal", "compliance"}
    assert len(human) > 8000
    # the paper's test split never enters the pool by default
    paper_rows = pool[pool["source"] == "chatgpt-refusals"]
    assert len(paper_rows) == 1194 + 256
    assert not pool.duplicated(["prompt", "response", "model"]).any()
    assert not pool["model"].isna().any()


@needs_data
def test_bootstrap_pool_model_filter(pool):
    sub = pool[pool["model"].isin(["gpt-4o", "llama-2-7b-chat"])]
    filtered = D.load_bootstrap_pool(DATA_DIR, models=["gpt-4o", "llama-2-7b-chat"])
    assert len(filtered) == len(sub) > 0


def test_bootstrap_pool_rejects_unknown_model(monkeypatch):
    """A typo in ``models`` must fail loudly, not return an empty pool (no data needed)."""

    def fake(source: str, model: str):
        return lambda data_dir: D._finalize(pd.DataFrame(
            [{"prompt": "p", "response": f"r {source}", "source": source, "model": model}]
        ))

    monkeypatch.setattr(D, "BOOTSTRAP_LOADERS", {"a": fake("a", "gpt-4"), "b": fake("b", "gpt-4o")})
    monkeypatch.setattr(D, "load_labelled_responses", lambda data_dir, include_paper_test=False:
                        fake("c", "gpt-3.5-turbo")(data_dir).assign(label="refusal"))
    pool = D.load_bootstrap_pool("unused", models=["gpt-4o"])
    assert pool["model"].tolist() == ["gpt-4o"]
    full = D.load_bootstrap_pool("unused")
    assert full["label"].isna().all()
    assert full["human_label"].dropna().tolist() == ["refusal"]
    with pytest.raises(ValueError, match="gpt4"):
        D.load_bootstrap_pool("unused", models=["gpt4"])


@needs_data
def test_prompt_only_sets():
    xp = D.load_xstest_prompts(DATA_DIR)
    assert len(xp) == 450
    D.validate_records(xp)
    assert xp["response"].isna().all() and xp["label"].isna().all()
    assert xp["expected_label"].value_counts().to_dict() == {"compliance": 250, "refusal": 200}
    assert xp["id"].iloc[0] == "v2-1"

    cc = D.load_coconot(DATA_DIR)
    assert len(cc) == 1001 + 379
    D.validate_records(cc)
    assert cc.groupby("subset")["expected_label"].agg(set).to_dict() == {
        "original": {"refusal"},
        "contrast": {"compliance"},
    }


@needs_data
def test_missing_external_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="xstest_v2_completions_gpt4.csv"):
        D.load_xstest(tmp_path)
    with pytest.raises(FileNotFoundError, match="question_list.csv"):
        D.load_gptfuzz(tmp_path)
    with pytest.raises(FileNotFoundError, match="data directory"):
        D.load_coconot(tmp_path / "nope")
    bad = tmp_path / "exaggerated-safety" / "model_completions"
    bad.mkdir(parents=True)
    (bad / "xstest_v2_completions_gpt4.csv").write_text("id,prompt\nv2-1,hi\n")
    with pytest.raises(ValueError, match="missing column"):
        D.load_xstest(tmp_path)


def _xstest_copy(tmp_path: Path, edit) -> Path:
    """A data folder holding the five XSTest completion files, the gpt-4 one changed by ``edit``."""
    folder = tmp_path / "exaggerated-safety" / "model_completions"
    folder.mkdir(parents=True)
    for key in D.XSTEST_SETS:
        name = f"xstest_v2_completions_{key}.csv"
        raw = (DATA_DIR / "exaggerated-safety" / "model_completions" / name).read_bytes()
        (folder / name).write_bytes(edit(raw) if key == "gpt4" else raw)
    return tmp_path


def _after_header(row: bytes):
    return lambda raw: raw.replace(b"\n", b"\n" + row + b"\n", 1)


@needs_data
@pytest.mark.parametrize("edit, message", [
    # pandas took a row one field wider than the header as index + shifted fields ("unknown
    # final_label ['', 'EXTRA']"), and filled a short row or an open quote with empty values
    (_after_header(b"v2-x,homonyms,p,c,1_full_compliance,1_full_compliance,True,1_full_compliance,EXTRA"),
     r"line 2: 9 field\(s\) where the header has 8"),
    (_after_header(b"v2-x,homonyms,p,c"), r"line 2: 4 field\(s\) where the header has 8"),
    (_after_header(b'v2-z,homonyms,"p,c,1_full_compliance'), r"line 2: .*expected after"),
    (_after_header(b"v2-y,homonyms,a prompt,a reply,1_full_compliance,1_full_compliance,True,4_bogus"),
     r"line 2: unknown final_label value\(s\) \['4_bogus'\]"),
    # a decoder's byte offset ("position 10") named no line
    (lambda raw: raw.replace(b"\n", b"\nv2-\xe9", 1), r"line 2: not valid UTF-8"),
])
def test_xstest_file_errors_name_their_line(tmp_path, edit, message):
    folder = _xstest_copy(tmp_path, edit)
    with pytest.raises(ValueError, match=r"xstest_v2_completions_gpt4\.csv, " + message):
        D.load_xstest(folder)


def _csv(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "prompts.csv"
    path.write_bytes(body)
    return path


def test_csv_reads_what_pandas_reads(tmp_path):
    """The strict pre-read refused CSVs pandas had read: a cell over the csv module's 131,072
    characters (a long completion), a whitespace-only line, text after a closing quote."""
    long = "word " * 40_000
    df, lines = D._read_csv(_csv(tmp_path, f'id,text\n1,"{long}"\n   \n2,"a"b\n3,"x\\"y"\n'.encode()), ("id", "text"))
    assert df["text"].tolist() == [long, "ab", 'x\\y"'] and lines == [2, 4, 5]
    with pytest.raises(ValueError, match=r"prompts\.csv, line 3: unexpected end of data"):  # a quote never closed
        D._read_csv(_csv(tmp_path, b'id,text\n1,a\n2,"open\n3,c\n'), ("id", "text"))
    with pytest.raises(ValueError, match=r"prompts\.csv, line 3: 4 field\(s\) where the header has 3"):  # read as pandas would
        D._read_csv(_csv(tmp_path, b'id,text,label\n1,a,0\n2,"b"c, d",1\n3,"e",0\n'), ("id", "text"))
    # A stray quote ran over lines 2-4 into one cell, rows 2 and 3 lost without a word (a044d55)
    with pytest.raises(ValueError, match=r"prompts\.csv, line 2: ',' expected after"):
        D._read_csv(_csv(tmp_path, b'id,text,label\n1,"open,0\n2,b,0\n3,"c",0\n4,d,1\n'), ("id", "text"))
    # After a line read leniently, a later fault names its own line (it was blamed on line 2)
    with pytest.raises(ValueError, match=r"prompts\.csv, line 4: 2 field\(s\) where the header has 3"):
        D._read_csv(_csv(tmp_path, b'id,text,label\n1,"a"b,0\n2,c,0\n3,d\n'), ("id", "text"))
    with pytest.raises(ValueError, match=r"prompts\.csv, line 4: unexpected end of data"):
        D._read_csv(_csv(tmp_path, b'id,text,label\n1,"a"b,0\n2,c,0\n3,"d,0\n'), ("id", "text"))
    # a line pandas reads as a record ("" or a no-break space) is not blank: its width is checked
    for line in (b'""', "\u00a0".encode()):
        with pytest.raises(ValueError, match=r"prompts\.csv, line 3: 1 field\(s\) where the header has 2"):
            D._read_csv(_csv(tmp_path, b"id,text\n1,a\n" + line + b"\n2,b\n"), ("id", "text"))


def test_whole_number_columns_keep_every_digit(tmp_path):
    df = pd.DataFrame({"id": ["9007199254740993", "9223372036854775807", "1.0", "true", " 3 "]})
    assert D._int_column(df, "id", tmp_path / "f.csv", [2, 3, 4, 5, 6]).tolist() == [
        9007199254740993, 9223372036854775807, 1, 1, 3]  # through a float: ...992, and 2**63-1 refused


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_csv_lines_are_counted_alike_for_bad_bytes_and_bad_values(tmp_path, newline):
    # A CR-only file named line 1 for a bad byte on line 3, and line 3 for a bad value there.
    rows = [b"id,text", b"1,a", b'2,"b\rstill b"', b"x,c"]
    path = _csv(tmp_path, newline.join(rows) + newline)
    df, lines = D._read_csv(path, ("id",))
    bad_value_line = lines[2]
    with pytest.raises(ValueError, match=rf"line {bad_value_line}: 'id' is not a whole number"):
        D._int_column(df, "id", path, lines)
    path.write_bytes(newline.join(rows[:3] + [b"\xff,c"]) + newline)
    with pytest.raises(ValueError, match=rf"line {bad_value_line}: not valid UTF-8"):
        D._read_csv(path, ("id",))


@needs_data
@pytest.mark.parametrize("row, message", [
    (b'0,"fine answer",', r"line 2: 'label' is not a whole number \(''\)"),
    (b'0,"fine answer",inf', r"line 2: 'label' is not a whole number \('inf'\)"),  # was pandas' bare IntCastingNaNError
    (b'99999999999999999999,"fine answer",1',  # was "question id(s) [-9223372036854775808] not found"
     r"line 2: 'question' is not a whole number \('99999999999999999999'\)"),
    (b'0,"fine answer",2', r"line 2: unknown label value\(s\) \[2\]"),
    (b'999,"fine answer",1', r"line 2: question id\(s\) \[999\] not found"),
])
def test_gptfuzz_file_errors_name_their_line(tmp_path, row, message):
    source = DATA_DIR / "GPTFuzz" / "datasets"
    for part in ("questions/question_list.csv", "responses_labeled/train.csv"):
        (tmp_path / "GPTFuzz" / "datasets" / part).parent.mkdir(parents=True, exist_ok=True)
        raw = (source / part).read_bytes()
        (tmp_path / "GPTFuzz" / "datasets" / part).write_bytes(
            _after_header(row)(raw) if part.startswith("responses") else raw)
    with pytest.raises(ValueError, match=r"train\.csv, " + message):
        D.load_gptfuzz(tmp_path)
    # a float spelling of a whole number is still that number, and true / false are 1 / 0 (as before the check)
    for spelling in (b"1.0", b"true", b"True"):
        (tmp_path / "GPTFuzz" / "datasets" / "responses_labeled" / "train.csv").write_bytes(
            _after_header(b'0,"fine answer",' + spelling)((source / "responses_labeled" / "train.csv").read_bytes()))
        loaded = D.load_gptfuzz(tmp_path)
        assert len(loaded) == 6161 and loaded.loc[loaded["response"] == "fine answer", "gptfuzz_label"].tolist() == [1]


def test_paper_records_need_texts_and_utf8(tmp_path):
    records = json.loads((D.PAPER_DATA_DIR / "all_hand_labeled.json").read_text(encoding="utf-8"))
    bad = tmp_path / "all_hand_labeled.json"
    records[5]["response"] = None  # was loaded as a labelled row without a response
    bad.write_text(json.dumps(records, indent=1), encoding="utf-8")
    with pytest.raises(ValueError, match=r"record 5 \(counting from 0\): response is None"):
        D.load_paper(bad)
    records[5]["response"] = "r"
    text = json.dumps(records, indent=1).encode()
    bad.write_bytes(text.replace(b'"r"', b'"r\xff"', 1))
    line = text[: text.index(b'"r"')].count(b"\n") + 1
    with pytest.raises(ValueError, match=rf"all_hand_labeled\.json, line {line}: not valid UTF-8"):
        D.load_paper(bad)


def test_validate_records_rejects_a_label_without_a_response():
    with pytest.raises(ValueError, match="response.*where the row has a label"):
        D.validate_records(pd.DataFrame([_record(response=None)]))
