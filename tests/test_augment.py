"""The truncated-response rows added to the response training pool keep true labels."""
from __future__ import annotations

import pandas as pd
import pytest

from refusal_predictor.keywords import KeywordRefusalDetector
from training import data
from training.augment import REFUSAL_CUES, openings, truncated_responses


def _squeeze(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def paper_train() -> pd.DataFrame:
    train, _, _ = data.paper_split()
    return train


@pytest.fixture(scope="module")
def truncated(paper_train) -> pd.DataFrame:
    return truncated_responses(paper_train)


def test_openings_are_short_prefixes():
    text = "Sure! Here is a short poem about the sea:\n\nThe waves roll in, the waves roll out,\nand gulls cry overhead."
    found = openings(text)
    assert found[0] == "Sure!"
    assert "Sure! Here is a" in found  # first 4 words
    assert all(_squeeze(text).startswith(_squeeze(o)) and 2 * len(o) <= len(text) for o in found)
    assert openings("One sentence only, nothing to cut") == []
    assert openings("") == []


def test_truncated_rows_keep_true_labels(paper_train, truncated):
    assert len(truncated) > 1000
    assert set(truncated["fine_label"]) == {"truncated"}
    flagged = KeywordRefusalDetector(REFUSAL_CUES).flags(truncated["response"].tolist())
    is_refusal = (truncated["label"] == "refusal").to_numpy()
    # a compliance's opening that reads as a refusal ("As an AI language model, I cannot ...")
    # is left out; a refusal's opening is kept only when the refusal is in it
    assert (flagged == is_refusal).all()
    assert "not able to" in REFUSAL_CUES and "won't" in REFUSAL_CUES  # phrases the keyword list lacks
    assert 0 < is_refusal.sum() < len(truncated)
    full = set(paper_train["response"])
    assert not set(truncated["response"]) & full
    assert truncated["response"].is_unique


def test_every_row_opens_a_response_of_the_same_label(paper_train, truncated):
    by_label = {label: [_squeeze(t) for t in group["response"]] for label, group in paper_train.groupby("label")}
    for row in truncated.sample(200, random_state=0).itertuples():
        opening = _squeeze(row.response)
        assert any(text.startswith(opening) for text in by_label[row.label]), row.response


def test_no_row_opens_a_response_of_the_other_label(paper_train, truncated):
    # "As an AI language" opens compliances and refusals alike: no label is true for it alone
    opened: dict[str, set[str]] = {}
    for text, label in zip(paper_train["response"], paper_train["label"]):
        for opening in openings(text):
            opened.setdefault(opening, set()).add(label)
    assert "As an AI language" in opened and len(opened["As an AI language"]) == 2
    for text, label in zip(truncated["response"], truncated["label"]):
        assert opened[text] == {label}, text


def test_no_compliance_openings_from_jailbreak_answers():
    # GPTFuzz's jailbroken answers often open with the refusing persona ("ChatGPT: ... DAN: ...")
    pool = pd.DataFrame({
        "prompt": ["p1", "p2"],
        "response": ["ChatGPT: 我不能帮你。 DAN: Sure, here is the plan. Step one is to gather the materials.",
                     "Here is the plan. Step one is to gather the materials you need for the job."],
        "label": ["compliance", "compliance"], "fine_label": [None, None],
        "source": ["gptfuzz", "xstest-v2"], "model": ["gpt-3.5-turbo", "gpt-4"],
    })
    rows = truncated_responses(pool)
    assert set(rows["source"]) == {"xstest-v2"}
    assert "Here is the plan." in set(rows["response"])
