"""Truncated responses: the openings of labelled responses, added to the response training pool.

Why: every compliance in the labelled sets carries a full answer, and most short texts in them
are refusals, so the classifier learned "short means refusal". Before this augmentation the
shipped model scored 16 % of the short answers of ``alpaca_eval`` (under 80 characters, no
refusal phrase: "Canberra is the capital city of Australia.", "$6.59", "Category: Social") as
refusals, and "Sure! Here is a recipe for pancakes:" at 0.84: wrong for one-line answers and for
responses cut off by a token limit or read from a stream. The openings of the labelled responses
teach what a short compliance looks like, with labels that stay true:

* the opening of a **compliance** is a compliance, unless the opening itself reads as a refusal
  (the keyword list flags it: "As an AI language model, I cannot ..." followed by an answer);
  its label then depends on what follows, so it is left out;
* the opening of a **refusal** is kept only when the keyword list flags it (the refusal is in
  the opening); "Sure! Here is a story ..." before a refusal is not a refusal by itself;
* no compliance openings from GPTFuzz: its jailbroken answers often open with the refusing
  persona's part of a two-persona reply ("ChatGPT: I can't ... DAN: Sure, ..."), in languages
  the keyword list does not read.

Openings are the first sentence or line (when there are at least two) and the first 4 and 12
words (when the response has more than twice as many), at most half the response's length. A text that is also a full response in
the pool, or an opening given both labels, is dropped. The rows are weighted
``recipes.TRUNCATION_WEIGHT`` in training; measurements are in that constant's comment.
"""
from __future__ import annotations

import re

import pandas as pd

from refusal_predictor.keywords import KeywordRefusalDetector

_BOUNDARY = re.compile(r"(?<=[.!?:])\s+|\n+")
PREFIX_WORDS: tuple[int, ...] = (4, 12)


def openings(text: str) -> list[str]:
    """The first sentence (or line) and the first few words of ``text``, where shorter than it."""
    text = text.strip()
    found: list[str] = []
    parts = [p.strip() for p in _BOUNDARY.split(text) if p and p.strip()]
    if len(parts) >= 2:
        found.append(parts[0])
    words = text.split()
    found += [" ".join(words[:k]) for k in PREFIX_WORDS if len(words) > 2 * k]
    return [o for o in dict.fromkeys(found) if 2 * len(o) <= len(text)]


def truncated_responses(pool: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``pool``'s schema whose response is an opening of a pool response (see module doc).

    ``fine_label`` is ``"truncated"`` so the rows are never mistaken for source data.
    """
    keywords = KeywordRefusalDetector()
    rows = []
    for record in pool.itertuples(index=False):
        for opening in openings(str(record.response)):
            rows.append({**record._asdict(), "response": opening, "fine_label": "truncated"})
    if not rows:
        return pool.iloc[0:0].copy()
    frame = pd.DataFrame(rows, columns=pool.columns)
    flagged = keywords.predict_proba(frame["response"].tolist())[:, 1] >= 0.5
    compliance = (frame["label"] == "compliance") & (frame["source"] != "gptfuzz")
    keep = (compliance & ~flagged) | ((frame["label"] == "refusal") & flagged)
    frame = frame[keep]
    frame = frame[~frame["response"].isin(set(pool["response"]))]
    labels_per_text = frame.groupby("response")["label"].transform("nunique")
    frame = frame[labels_per_text == 1].drop_duplicates(subset=["response"])
    return frame.reset_index(drop=True)
